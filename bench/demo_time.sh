#!/usr/bin/env bash
# Wall time of the offline demo pipeline from a clean results/demo/ (set-up excluded), on CORES cores.
# Usage: bench/demo_time.sh [CORES]   (default 2). Prints the time and the table.
set -euo pipefail
cd "$(dirname "$0")/.."
cores="${1:-2}"
make venv ffmpeg >/dev/null
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
start=$(date +%s)
.venv/bin/snakemake -s "$PWD/Snakefile" --directory "$scratch" --configfile "$PWD/config/demo.yaml" --cores "$cores" --quiet
end=$(date +%s)
echo "demo pipeline: $((end - start)) s on $cores cores ($(nproc) available), $(uname -m)"
cat "$scratch/results/demo/tables/sdr.md"
