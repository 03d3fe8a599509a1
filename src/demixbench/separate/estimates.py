"""Estimates on disk: ``<out_dir>/<target>.wav``, 32-bit float, one file per target.

Separation writes them (:func:`stream_estimates` block by block for models,
:func:`write_estimates` in one go for the oracles) and scoring reads them back
(:func:`read_estimates`). Estimates made outside the pipeline (a folder of someone else's
estimates, an external separator's output) are checked and copied into that layout by
:func:`import_estimates`; :func:`export_mixture` writes a mixture for such a separator to read.
numpy and soundfile only: a scoring job imports this module, and must not pay for torch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import soundfile as sf

from demixbench.data.cache import NpyReader
from demixbench.fileio import atomic_path

log = logging.getLogger(__name__)


def non_finite(audio: np.ndarray, sample_rate: int, offset: int = 0) -> str | None:
    """None when every sample of `audio` (channels, samples) is finite, else what is wrong and
    where: "N samples are NaN or infinite, the first at T s (channel c)"; `offset`: the samples
    before `audio` (for a block of a longer signal). A sum first, so finite audio costs one pass."""
    with np.errstate(over="ignore"):  # NaN and inf propagate; an overflow of huge samples falls through
        if np.isfinite(np.sum(audio)):
            return None
    bad = ~np.isfinite(audio)
    if not bad.any():
        return None
    first = int(np.argmax(bad.any(axis=0)))
    return (
        f"{int(bad.sum())} samples are NaN or infinite, the first at {(offset + first) / sample_rate:.3f} s "
        f"(channel {int(np.argmax(bad[:, first]))})"
    )


def write_estimates(out_dir: Path, estimates: np.ndarray, targets: Sequence[str], sample_rate: int) -> list[Path]:
    """Write (targets, channels, samples) as out_dir/<target>.wav, 32-bit float so scoring sees
    exactly what the model produced (16-bit PCM would add quantisation noise to the scores)."""
    return stream_estimates(out_dir, iter([estimates]), targets, sample_rate)


def stream_estimates(
    out_dir: Path,
    blocks: Iterator[np.ndarray],
    targets: Sequence[str],
    sample_rate: int,
    origins: Sequence[Path] | None = None,
) -> list[Path]:
    """Write consecutive blocks (targets, channels, n) as out_dir/<target>.wav (32-bit float), each
    file appearing only once complete. EstimatesError, and no file, when a block is not finite (a
    diverged model: museval would score its estimates as NaN, and tables would quietly leave
    them out), naming the files written or, given `origins` (one per target), the files copied."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{target}.wav" for target in targets]
    named = list(origins) if origins is not None else paths
    written = 0
    with ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_path(path, suffix=".wav")) for path in paths]
        writers = None
        for block in blocks:
            problems = [
                f"{path}: {problem}"
                for path, audio in zip(named, block, strict=True)
                if (problem := non_finite(audio, sample_rate, written)) is not None
            ]
            if problems:
                cause = (
                    "Estimates with NaN or infinite samples have no scores: re-create them"
                    if origins is not None
                    else "The separator's output is not audio: a model whose training diverged (see the run's "
                    "training log and checkpoint) or NaN in its input"
                )
                raise EstimatesError("\n".join([*problems, f"{cause}. Nothing was written."]))
            written += block.shape[-1]
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


# --------------------------------------------------------------------------------------------------
# Estimates made elsewhere: checked, then copied into the pipeline's layout
# --------------------------------------------------------------------------------------------------


class EstimatesError(ValueError):
    """Estimates that cannot be scored; the message lists every problem, each naming its file."""


def samples_message(path: Path, got: int, expected: int) -> str:
    """'<path>: N samples, k more/fewer than the reference (M samples); ...'"""
    difference = got - expected
    return (
        f"{path}: {got} samples, {abs(difference)} {'more' if difference > 0 else 'fewer'} than the reference "
        f"({expected} samples); estimates must have the reference's length"
    )


def check_estimate_files(
    folder: Path, targets: Sequence[str], sample_rate: int, channels: int, samples: int | None
) -> list[str]:
    """Every problem with ``folder/<target>.wav`` against a reference of `channels` x `samples`
    (None: length unknown yet) at `sample_rate`, read from the headers only: a missing or
    unreadable file, another sample rate, channel count or length. Each message names the file."""
    problems = []
    for target in targets:
        path = Path(folder) / f"{target}.wav"
        if not path.is_file():
            problems.append(f"missing estimate {path}")
            continue
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError) as error:
            problems.append(f"{path}: unreadable wav ({error})")
            continue
        if info.samplerate != sample_rate:
            problems.append(f"{path}: sample rate {info.samplerate} Hz, the references are scored at {sample_rate} Hz")
        if info.channels != channels:
            problems.append(f"{path}: {info.channels} channel(s), the reference has {channels}")
        if samples is not None and info.frames != samples:
            problems.append(samples_message(path, info.frames, samples))
    return problems


def extra_estimates(folder: Path, targets: Sequence[str]) -> list[str]:
    """The wav files in `folder` that are not estimates of `targets` (e.g. ``accompaniment.wav``):
    never scored, since BSS Eval v4 scores the targets jointly and an extra source would change
    the problem (museval's track evaluation scores vocals against an accompaniment separately)."""
    return sorted(path.name for path in Path(folder).glob("*.wav") if path.stem not in targets)


def import_estimates(
    source: Path, mixture: Path, out_dir: Path, targets: Sequence[str], sample_rate: int, block: int = 1 << 18
) -> list[Path]:
    """Check the estimates ``source/<target>.wav`` made outside the pipeline against the decoded
    mixture (a (channels, samples) .npy: its shape is the references') and copy them into
    ``out_dir/<target>.wav`` as 32-bit float, block by block (memory flat in track length), each
    file appearing only once complete.

    Only `targets` are read: any other file in `source` (an ``accompaniment.wav``, say) is left out
    with a log line, so the scores are always those of the targets jointly. Raises EstimatesError
    listing every problem (see check_estimate_files) before anything is written.
    """
    source = Path(source)
    if not source.is_dir():
        raise EstimatesError(
            f"{source}: no such folder of estimates (expected one wav per target: {', '.join(targets)})"
        )
    channels, samples = NpyReader(mixture).shape
    problems = check_estimate_files(source, targets, sample_rate, channels, samples)
    if problems:
        raise EstimatesError(f"{source}: estimates cannot be scored:\n  " + "\n  ".join(problems))
    extra = extra_estimates(source, targets)
    if extra:
        log.warning("%s: %s left out: only the targets %s are scored, jointly", source, ", ".join(extra), targets)

    def blocks() -> Iterator[np.ndarray]:
        with ExitStack() as stack:
            files = [stack.enter_context(sf.SoundFile(source / f"{target}.wav")) for target in targets]
            for start in range(0, samples, block):
                parts = [f.read(min(block, samples - start), dtype="float32", always_2d=True).T for f in files]
                yield np.stack(parts)

    return stream_estimates(out_dir, blocks(), targets, sample_rate, [source / f"{target}.wav" for target in targets])


def export_mixture(mixture: Path, out: Path, sample_rate: int, block: int = 1 << 18) -> Path:
    """The decoded mixture (a (channels, samples) .npy) as a 32-bit float wav, for a separator
    outside the pipeline to read; written block by block, appearing only once complete."""
    reader = NpyReader(mixture)
    channels, samples = reader.shape
    with atomic_path(Path(out), suffix=".wav") as temporary:
        with sf.SoundFile(temporary, "w", sample_rate, channels, subtype="FLOAT") as writer:
            for start in range(0, samples, block):
                writer.write(reader[:, start : start + block].T)
    return Path(out)
