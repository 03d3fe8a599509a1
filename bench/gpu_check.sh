#!/usr/bin/env bash
# The GPU measurements of issue 16 (parts 3 and 4) as one prepared command for a lent GPU machine
# (the workplace's device tool), whose python3 has torch, numpy, scipy, pandas, tqdm and pyyaml
# but nothing else that demixbench's benchmarks need, and no network:
#
#   here:   bash bench/gpu_check.sh fetch   # wheels for its Python 3.12 into .gpu-wheels/ (ignored)
#   there:  bash bench/gpu_check.sh         # device run: carry [".gpu-wheels"], timeout_s 590
#
# There it installs the wheels into a scratch directory, builds the scorer's C loops in place,
# puts stand-ins for ffmpeg and ffprobe on PATH where there are none (stempeg, which museval
# imports through musdb, refuses to import without them; museval.evaluate never runs them), then
# runs, each log written to $OUT (the device tool's output folder; bench-gpu/ elsewhere):
#   1. bench/scoring.py --long --device cuda: the torch backend on the GPU, the CPU scorer and
#      museval on the same 4-minute track, in one run (part 3: seconds per track, the ratio to
#      museval, the largest differences);
#   2. bench/gpu_training.py: the paper-scale demucs_v1 and unet, fp32 against bf16 autocast, and
#      demucs_v1 trained as the authors' Demucs v1 loop does, as the reference (part 4).
# Each step has its own time limit, so a slow one still leaves the other's figures.
# SMOKE=1 runs both on the CPU with tiny sizes: a check of this script where there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=.gpu-wheels
# What museval needs that the device's image lacks, pinned as in requirements.lock.
PACKAGES=(
    museval==0.4.1 musdb==0.4.3 stempeg==0.2.6 ffmpeg-python==0.2.0 future==1.0.0 pyaml==26.7.0
    soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
    referencing==0.37.0 rpds-py==2026.9.1
)

if [[ "${1:-}" == "fetch" ]]; then
    rm -rf "$WHEELS"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d "$WHEELS" "${PACKAGES[@]}"
    # The C loops built here for Python 3.12 too (PY312: a Python 3.12 with setuptools), in case the
    # device cannot build them (no headers there)
    py312=${PY312:-python3.12}
    if "$py312" -c 'import setuptools' 2>/dev/null; then
        build=$(mktemp -d)
        "$py312" setup.py -q build_ext --build-lib "$build/lib" --build-temp "$build/tmp" >/dev/null 2>&1 &&
            cp "$build"/lib/demixbench/score/_kernels.cpython-312-*.so "$WHEELS/" || echo "fetch: the Python 3.12 build failed"
        rm -rf "$build"
    else
        echo "fetch: no Python 3.12 with setuptools (PY312): the device will have to build the C loops"
    fi
    du -sh "$WHEELS"
    exit 0
fi

PYTHON=${PYTHON:-python3}
OUT=${OUT:-bench-gpu}
mkdir -p "$OUT"
SITE=$(mktemp -d)
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl
fi
export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    mkdir -p "$SITE/bin"
    for tool in ffmpeg ffprobe; do
        printf '#!/bin/sh\necho "%s: a stand-in for the benchmark (museval imports need it on PATH)" >&2\nexit 1\n' \
            "$tool" >"$SITE/bin/$tool"
        chmod +x "$SITE/bin/$tool"
    done
    export PATH="$SITE/bin:$PATH"
fi
if ! "$PYTHON" setup.py -q build_ext --inplace >"$OUT/build.txt" 2>&1; then
    if compgen -G "$WHEELS/_kernels.cpython-*.so" >/dev/null; then
        echo "gpu_check: building the scorer's C loops failed ($OUT/build.txt); using the build carried in $WHEELS"
        cp "$WHEELS"/_kernels.cpython-*.so src/demixbench/score/
    else
        cat "$OUT/build.txt"
        echo "gpu_check: building the scorer's C loops failed (above)" >&2
        exit 1
    fi
fi
{  # what ran where; none of it is needed for the steps below
    nvidia-smi || true
    "$PYTHON" -c 'import sys, numpy; print(sys.version, "numpy", numpy.__version__)' || true
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")' || true
} 2>&1 | tee "$OUT/machine.txt"

if [[ "${SMOKE:-0}" == 1 ]]; then
    scoring=(--seconds 5 --device cpu --repeats 1)
    training=(--device cpu --batch 1 --segment 1 --steps 1 --warmup 0 --skip-peak)
else
    scoring=(--long --device cuda --repeats "${REPEATS:-1}")
    training=()
fi
status=0
timeout "${SCORING_LIMIT:-330}" "$PYTHON" bench/scoring.py "${scoring[@]}" 2>&1 | tee "$OUT/scoring.txt" || status=1
timeout "${TRAINING_LIMIT:-220}" "$PYTHON" bench/gpu_training.py "${training[@]}" --json "$OUT/gpu_training.json" 2>&1 |
    tee "$OUT/gpu_training.txt" || status=1
exit "$status"
