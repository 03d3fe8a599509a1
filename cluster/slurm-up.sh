#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine, for CI and for trying profiles/slurm locally.
#
#   cluster/slurm-up.sh [STATE_DIR]        (default: $DEMIXBENCH_SLURM_STATE or /tmp/demixbench-slurm)
#   cluster/slurm-down.sh [STATE_DIR]      stops it again (by the PIDs recorded here)
#
# What it does (Debian 12, Slurm 22.05; see docs/cluster.md):
#   - installs the Debian packages if a command is missing (needs root and apt-get);
#   - writes slurm.conf, gres.conf and slurmdbd.conf into STATE_DIR/etc and links them from
#     /etc/slurm (the jobstep plugin's inner srun only finds the config there);
#   - starts munged (unless one already runs), a private MariaDB (datadir and socket in
#     STATE_DIR, TCP on 127.0.0.1 only), slurmdbd (accounting, so `sacct` works), slurmctld and
#     slurmd, and records the PID of each daemon it started in STATE_DIR/pids/;
#   - waits until the node is idle and runs one smoke job through sbatch and sacct.
# It starts from a clean state every time (old Slurm state and accounting are deleted), except
# when the cluster of STATE_DIR is already up: then it says so and exits 0.
#
# The node: the machine's CPUs and memory (from `slurmd -C`, minus 1 GiB), and FAKE_GPUS fake
# GPUs (default 2; GRES backed by /dev/null, /dev/zero, ...) so that jobs asking for --gpus
# are scheduled on a machine without GPUs. Partitions: `debug` (the default) and `gpu`, both on
# the one node. Accounts: `root` (the default) and `demixbench`.
#
# Environment: FAKE_GPUS (0-5), SLURM_UP_DB_PORT (MariaDB's TCP port, default 3307),
# SLURM_UP_SMOKE=0 to skip the smoke job.
set -euo pipefail

STATE=${1:-${DEMIXBENCH_SLURM_STATE:-/tmp/demixbench-slurm}}
FAKE_GPUS=${FAKE_GPUS:-2}
DB_PORT=${SLURM_UP_DB_PORT:-3307}
SMOKE=${SLURM_UP_SMOKE:-1}
CLUSTER=ci
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
COMMANDS=(slurmctld slurmd sbatch srun sacct sacctmgr slurmdbd munged munge mariadbd mariadb mariadb-install-db)
HERE=$(cd "$(dirname "$0")" && pwd)
T0=$EPOCHREALTIME

say() { printf '[slurm-up %5.1fs] %s\n' "$(awk -v a="$EPOCHREALTIME" -v b="$T0" 'BEGIN { print a - b }')" "$*"; }
die() { echo "slurm-up: error: $*" >&2; exit 1; }
alive() { [ -n "${1:-}" ] && [ -e "/proc/$1" ]; }
recorded() { cat "$STATE/pids/$1.pid" 2>/dev/null || true; }
# wait_for SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds; 1 if it never does.
wait_for() {
    local limit=$1 i
    shift
    for ((i = 0; i < limit * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac
export PATH="$PATH:/usr/sbin:/sbin"

# ---- already up? -------------------------------------------------------------------------------
if alive "$(recorded slurmctld)" && alive "$(recorded slurmd)" && alive "$(recorded slurmdbd)" \
    && sinfo -h -N -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
    say "already running (state in $STATE)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    die "must run as root: it installs Debian packages, writes /etc/slurm and starts the Slurm daemons (CI runs as root; locally: sudo $0 $*)"
fi

# ---- packages ----------------------------------------------------------------------------------
missing=()
for command in "${COMMANDS[@]}"; do
    command -v "$command" >/dev/null || missing+=("$command")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them (this script targets Debian 12)"
    say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    # policy-rc.d (where present) keeps the packages' init scripts from starting the daemons.
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null \
        || die "apt-get install ${PACKAGES[*]} failed"
    say "packages installed"
fi

# ---- a partial earlier start? ------------------------------------------------------------------
if [ -d "$STATE/pids" ]; then
    say "stopping the rest of an earlier start in $STATE"
    "$HERE/slurm-down.sh" "$STATE"
fi
for daemon in slurmctld slurmd slurmdbd; do
    if pgrep -x "$daemon" >/dev/null; then
        die "a $daemon not started from $STATE is running (PID $(pgrep -x "$daemon" | tr '\n' ' ')); stop it first (cluster/slurm-down.sh with its state directory)"
    fi
done
for name in slurm.conf slurmdbd.conf gres.conf; do
    if [ -e "/etc/slurm/$name" ] && [ ! -L "/etc/slurm/$name" ]; then
        die "/etc/slurm/$name is a regular file, not one of this script's links; move it away to use this test cluster"
    fi
done

# ---- a clean state directory -------------------------------------------------------------------
if [ -e "$STATE" ] && [ -n "$(ls -A "$STATE")" ] && [ ! -e "$STATE/etc/slurm.conf" ]; then
    die "$STATE exists and is not a state directory of this script; it would be deleted: pick another"
fi
rm -rf "$STATE"
mkdir -p "$STATE"/{etc,log,run,pids,state/ctld,state/slurmd,mysql}
chmod 755 "$STATE"
chown mysql:mysql "$STATE/mysql"
runuser -u mysql -- test -x "$STATE" || die "$STATE is not reachable by the mysql user (a parent directory is private); pick a state directory such as /tmp/demixbench-slurm"

HOST=$(hostname -s)
read -r CPUS MEMORY < <(slurmd -C | head -1 | tr ' ' '\n' | awk -F= '$1=="CPUs"{c=$2} $1=="RealMemory"{m=$2} END{print c, m}')
SOCKETS=$(slurmd -C | head -1 | tr ' ' '\n' | awk -F= '$1=="SocketsPerBoard"{print $2}')
CORES=$(slurmd -C | head -1 | tr ' ' '\n' | awk -F= '$1=="CoresPerSocket"{print $2}')
THREADS=$(slurmd -C | head -1 | tr ' ' '\n' | awk -F= '$1=="ThreadsPerCore"{print $2}')
MEMORY=$((MEMORY > 2048 ? MEMORY - 1024 : MEMORY))  # RealMemory above what slurmd sees makes the node INVAL

# ---- munge -------------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running; using it"
else
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 sh -c 'munge -n | unmunge' || die "munged did not start; see /var/log/munge/munged.log"
    cp /run/munge/munged.pid "$STATE/pids/munged.pid"
    say "munged up (PID $(recorded munged))"
fi

# ---- configuration -----------------------------------------------------------------------------
GRES_NODE=""
GRES_TYPES=""
if [ "$FAKE_GPUS" -gt 0 ]; then
    devices=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
    [ "$FAKE_GPUS" -le ${#devices[@]} ] || die "FAKE_GPUS=$FAKE_GPUS: at most ${#devices[@]} fake GPUs (one character device each)"
    GRES_NODE="Gres=gpu:fake:$FAKE_GPUS"
    GRES_TYPES="GresTypes=gpu"
    {
        echo "# Fake GPUs: slurmd 22.05 drops GPUs without a File=, so each one is an existing character device."
        echo "AutoDetect=off"
        for ((i = 0; i < FAKE_GPUS; i++)); do echo "NodeName=$HOST Name=gpu Type=fake File=${devices[$i]}"; done
    } >"$STATE/etc/gres.conf"
else
    echo "AutoDetect=off" >"$STATE/etc/gres.conf"
fi

cat >"$STATE/etc/slurm.conf" <<EOF
# Written by cluster/slurm-up.sh: a one-node test cluster; state in $STATE.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
StateSaveLocation=$STATE/state/ctld
SlurmdSpoolDir=$STATE/state/slurmd
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Jobs without --mem get 1 GB per CPU, not the whole node.
DefMemPerCPU=1000
MinJobAge=300
KillWait=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
# Keep sbatch --comment (the executor plugin puts the rule name there) in the accounting database.
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
$GRES_TYPES
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS SocketsPerBoard=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEMORY $GRES_NODE State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP
EOF

DB_PASSWORD=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$STATE/etc/slurmdbd.conf" <<EOF
# Written by cluster/slurm-up.sh. slurmdbd refuses to start unless this file is mode 600.
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
chmod 600 "$STATE/etc/slurmdbd.conf"

mkdir -p /etc/slurm
for name in slurm.conf slurmdbd.conf gres.conf; do
    ln -sfn "$STATE/etc/$name" "/etc/slurm/$name"
done
say "configuration written: node $HOST, $CPUS CPUs, ${MEMORY} MB, $FAKE_GPUS fake GPUs"

# ---- MariaDB (private instance) and slurmdbd ---------------------------------------------------
mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
    --skip-test-db --innodb-log-file-size=8M >"$STATE/log/mariadb-install.log" 2>&1 \
    || die "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
SOCKET="$STATE/run/mysqld.sock"
chown mysql:mysql "$STATE/run"
nohup /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" --socket="$SOCKET" \
    --bind-address=127.0.0.1 --port="$DB_PORT" --innodb-log-file-size=8M \
    --log-error="$STATE/log/mariadbd.log" >/dev/null 2>&1 &
echo $! >"$STATE/pids/mariadbd.pid"
wait_for 30 mariadb --no-defaults --socket="$SOCKET" -e 'select 1' \
    || die "MariaDB did not start (is port $DB_PORT free? set SLURM_UP_DB_PORT); see $STATE/log/mariadbd.log"
mariadb --no-defaults --socket="$SOCKET" <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
say "MariaDB up (PID $(recorded mariadbd), 127.0.0.1:$DB_PORT)"

/usr/sbin/slurmdbd
wait_for 30 sacctmgr -n list cluster || die "slurmdbd did not answer; see $STATE/log/slurmdbd.log"
cp "$STATE/run/slurmdbd.pid" "$STATE/pids/slurmdbd.pid"
sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -i add account demixbench Description=demixbench Organization=demixbench >/dev/null
sacctmgr -i add user root account=demixbench >/dev/null
say "slurmdbd up (PID $(recorded slurmdbd)); cluster $CLUSTER, accounts root and demixbench"

# ---- slurmctld and slurmd ----------------------------------------------------------------------
/usr/sbin/slurmctld
/usr/sbin/slurmd
node_idle() { sinfo -h -N -o %T | grep -qx idle; }
wait_for 60 node_idle \
    || die "the node is not idle after 60 s (sinfo: $(sinfo -h -N -o '%T %E' 2>&1)); see $STATE/log/slurmctld.log and slurmd.log"
cp "$STATE/run/slurmctld.pid" "$STATE/pids/slurmctld.pid"
cp "$STATE/run/slurmd.pid" "$STATE/pids/slurmd.pid"
say "slurmctld (PID $(recorded slurmctld)) and slurmd (PID $(recorded slurmd)) up; node $HOST idle"

# ---- smoke job ---------------------------------------------------------------------------------
if [ "$SMOKE" = 1 ]; then
    job=$(sbatch --parsable --job-name slurm-up-smoke --output=/dev/null --mem 100 --wrap true)
    completed() { sacct -n -X -j "$job" -o State | grep -q COMPLETED; }
    wait_for 60 completed || die "smoke job $job did not complete (sacct: $(sacct -n -X -j "$job" -o State 2>&1 | tr -s ' '))"
    say "smoke job $job COMPLETED in sacct"
fi
say "Slurm is up: cluster $CLUSTER, partitions debug (default) and gpu; stop it with: cluster/slurm-down.sh $STATE"
