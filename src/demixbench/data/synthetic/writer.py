"""Write a synthetic MUSDB18 to disk, atomically.

The dataset is written either in the MUSDB18-HQ layout
(``ROOT/{train,test}/<name>/{mixture,drums,bass,other,vocals}.wav``, 16-bit PCM like the real
MUSDB18-HQ; stems are quantised to the 16-bit grid first, so the mixture is *exactly* the sum of
the stems, also after musdb decodes them) or in the MUSDB18 layout
(``ROOT/{train,test}/<name>.stem.mp4``, AAC, via stempeg).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from tqdm import tqdm

from demixbench.data.layout import STEMS, track_files
from demixbench.data.synthetic.render import PCM_SCALE, generate_track
from demixbench.data.synthetic.spec import SPLITS, SyntheticSpec, track_names
from demixbench.fileio import atomic_directory

log = logging.getLogger(__name__)


def write_dataset(spec: SyntheticSpec, root: Path) -> dict[str, list[str]]:
    """Write the whole dataset under ``root`` and return ``track_names(spec)``.

    Layout for ``format="wav"``: ``root/{split}/<name>/{mixture,drums,bass,other,vocals}.wav``
    (16-bit PCM, stereo); for ``format="stem.mp4"``: ``root/{split}/<name>.stem.mp4`` with
    streams (mixture, drums, bass, other, vocals), AAC (stempeg's NIStemsWriter, or its
    StreamsWriter when MP4Box is missing). Everything is written into the hidden sibling
    ``.<root name>.partial-<pid>`` (fileio.atomic_directory) and renamed to ``root`` at the end,
    so an interrupted run never leaves a half-written dataset at ``root``.

    Raises FileExistsError if ``root`` already exists (or appears while the dataset is written).
    """
    root = Path(root)
    if root.exists():
        raise FileExistsError(f"refusing to overwrite existing dataset root: {root}")
    with atomic_directory(root) as tmp:
        names = write_tracks(spec, tmp)
    log.info("wrote %d tracks to %s", spec.n_train + spec.n_test, root)
    return names


def write_tracks(spec: SyntheticSpec, directory: Path) -> dict[str, list[str]]:
    """Write every track of ``spec`` into the existing, empty ``directory`` (the layout of
    write_dataset) and return ``track_names(spec)``. Not atomic: see write_dataset."""
    directory = Path(directory)
    names = track_names(spec)
    jobs = [(split, i, name) for split in SPLITS for i, name in enumerate(names[split])]
    log.info(
        "writing synthetic MUSDB18 (%d train + %d test tracks, %.1f s, seed %d, %s) to %s",
        spec.n_train,
        spec.n_test,
        spec.duration,
        spec.seed,
        spec.format,
        directory,
    )
    for split in SPLITS:
        (directory / split).mkdir(parents=True)
    for split, index, name in tqdm(jobs, desc="synthetic tracks", unit="track"):
        stems = generate_track(spec, split, index)
        _write_track(spec, directory / split, name, stems)
        log.debug("wrote %s/%s", split, name)
    return names


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _write_track(spec: SyntheticSpec, split_dir: Path, name: str, stems: dict[str, np.ndarray]) -> None:
    """Write one track's stems (each (samples, 2) float32 on the 16-bit grid) in ``spec.format``."""
    files = track_files(spec.format, split_dir.parent, split_dir.name, name)
    if spec.format == "wav":
        files[0].parent.mkdir()
        for stem, path in zip(STEMS, files):
            # 16-bit PCM as in MUSDB18-HQ (musdb decodes every file as s16le anyway). The
            # samples are already on the 16-bit grid, so this is lossless. scipy rather than
            # soundfile writes them so that two runs of the same spec are byte-identical.
            pcm = np.round(stems[stem] * PCM_SCALE).astype(np.int16)
            wavfile.write(path, spec.sample_rate, pcm)
    else:
        _write_stem_mp4(files[0], stems, spec.sample_rate)


def _write_stem_mp4(path: Path, stems: dict[str, np.ndarray], sample_rate: int) -> None:
    """Write a 5-stream AAC ``.stem.mp4`` (mixture, drums, bass, other, vocals)."""
    import stempeg  # imported lazily: it probes for ffmpeg at import time

    data = np.stack([stems[s] for s in STEMS])  # (5, samples, 2), in musdb's stream order
    if _mp4box_available():
        writer = stempeg.NIStemsWriter(output_sample_rate=sample_rate)
    else:
        writer = stempeg.StreamsWriter(
            codec=stempeg.cmds.get_aac_codec(),
            bitrate=256000,
            output_sample_rate=sample_rate,
            stem_names=list(STEMS),
        )
    stempeg.write_stems(str(path), data, sample_rate=sample_rate, writer=writer)


@functools.cache
def _mp4box_available() -> bool:
    """Whether stempeg's NIStemsWriter can run (it needs GPAC's MP4Box); warn once if not."""
    import stempeg  # imported lazily: it probes for ffmpeg at import time

    if stempeg.cmds.mp4box_exists():
        return True
    # MP4Box only adds the Traktor (NI stems) metadata; the AAC streams, which are all that
    # musdb reads, are the same with stempeg's plain ffmpeg StreamsWriter.
    log.warning("MP4Box not found: writing .stem.mp4 files with stempeg.StreamsWriter (no NI metadata)")
    return False
