#!/usr/bin/env bash
# Stop the test cluster that cluster/slurm-up.sh started, by the PIDs it recorded.
#
#   cluster/slurm-down.sh [STATE_DIR] [--purge]   (default: $DEMIXBENCH_SLURM_STATE or /tmp/demixbench-slurm)
#
# Order: slurmd and slurmctld, then slurmdbd, then MariaDB and munged (munged only if slurm-up
# started it). Each gets SIGTERM and up to 30 s to exit, then SIGKILL. A recorded PID is
# signalled only while it still belongs to the daemon of that name. The /etc/slurm links into STATE_DIR are removed;
# --purge also deletes STATE_DIR (logs, state and the accounting database).
set -euo pipefail

STATE=""
PURGE=0
for arg in "$@"; do
    case "$arg" in
        --purge) PURGE=1 ;;
        *) STATE=$arg ;;
    esac
done
STATE=${STATE:-${DEMIXBENCH_SLURM_STATE:-/tmp/demixbench-slurm}}
case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac

# stop NAME...: SIGTERM to each recorded daemon of NAMES at once, then wait for all of them.
stop() {
    local name file pid i
    local -a pids=() names=()
    for name in "$@"; do
        file="$STATE/pids/$name.pid"
        [ -f "$file" ] || continue
        pid=$(cat "$file")
        # /proc/PID/comm is cut to 15 characters; all these names are shorter.
        if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$name")
        fi
        rm -f "$file"
    done
    for i in "${!pids[@]}"; do
        for ((t = 0; t < 300; t++)); do
            [ -e "/proc/${pids[$i]}" ] || break
            sleep 0.1
        done
        if [ -e "/proc/${pids[$i]}" ]; then
            echo "slurm-down: ${names[$i]} (PID ${pids[$i]}) still running after 30 s; sending SIGKILL"
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
        echo "slurm-down: stopped ${names[$i]} (PID ${pids[$i]})"
    done
}

if [ ! -d "$STATE/pids" ]; then
    echo "slurm-down: nothing recorded in $STATE/pids; nothing to stop"
else
    stop slurmd slurmctld
    stop slurmdbd
    stop mariadbd munged
fi

for name in slurm.conf slurmdbd.conf gres.conf; do
    if [ -L "/etc/slurm/$name" ] && [ "$(readlink "/etc/slurm/$name")" = "$STATE/etc/$name" ]; then
        rm -f "/etc/slurm/$name"
    fi
done
if [ "$PURGE" = 1 ] && [ -e "$STATE/etc/slurm.conf" ]; then
    rm -rf "$STATE"
    echo "slurm-down: deleted $STATE"
fi
