"""Estimates on disk: ``<out_dir>/<target>.wav``, 32-bit float, one file per target.

Separation writes them (:func:`stream_estimates` block by block for models,
:func:`write_estimates` in one go for the oracles) and scoring reads them back
(:func:`read_estimates`). numpy and soundfile only: a scoring job imports this module, and must
not pay for torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import soundfile as sf

from demixbench.fileio import atomic_path


def write_estimates(out_dir: Path, estimates: np.ndarray, targets: Sequence[str], sample_rate: int) -> list[Path]:
    """Write (targets, channels, samples) as out_dir/<target>.wav, 32-bit float so scoring sees
    exactly what the model produced (16-bit PCM would add quantisation noise to the scores)."""
    return stream_estimates(out_dir, iter([estimates]), targets, sample_rate)


def stream_estimates(
    out_dir: Path, blocks: Iterator[np.ndarray], targets: Sequence[str], sample_rate: int
) -> list[Path]:
    """Write consecutive blocks (targets, channels, n) as out_dir/<target>.wav (32-bit float), each
    file appearing only once complete."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{target}.wav" for target in targets]
    with ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_path(path, suffix=".wav")) for path in paths]
        writers = None
        for block in blocks:
            if writers is None:
                channels = block.shape[1]
                writers = [
                    stack.enter_context(sf.SoundFile(t, "w", sample_rate, channels, subtype="FLOAT"))
                    for t in temporaries
                ]
            for writer, audio in zip(writers, block, strict=True):
                writer.write(audio.T)
        if writers is None:
            raise ValueError("no audio to write")
        # Leaving the stack closes the writers first (entered last), then renames the files.
    return paths


def read_estimates(out_dir: Path, targets: Sequence[str]) -> np.ndarray:
    """Read estimates written by write_estimates -> (targets, channels, samples) float32."""
    return np.stack([sf.read(Path(out_dir) / f"{t}.wav", dtype="float32", always_2d=True)[0].T for t in targets])
