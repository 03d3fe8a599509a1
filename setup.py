"""The one compiled part of demixbench: the fast scorer's inner loops (src/demixbench/score/_kernels.c).
Everything else is in pyproject.toml. Needs a C compiler and Python's headers (Debian:
build-essential python3-dev; `make venv` checks)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "demixbench.score._kernels",
            ["src/demixbench/score/_kernels.c"],
            # no fused multiply-add contraction, no fast-math: every sum in the order the C states
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math"],
        )
    ]
)
