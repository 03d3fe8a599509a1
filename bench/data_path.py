"""Benchmark: training examples per second from the project's data path (random chunks of the
decoded, memory-mapped cache, with remixing) against the same chunks decoded on the fly through
`musdb` from .stem.mp4 files, as open-unmix trains. Also the fraction of a demo training step
spent waiting for data.

Usage: .venv/bin/python bench/data_path.py [--tracks 4] [--seconds 30] [--examples 64]
Prints the measured rates and their ratio; both are measured in this run on this machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import musdb
import numpy as np
import torch

from demixbench import TARGETS
from demixbench.data.decode import decode_track
from demixbench.data.layout import list_tracks
from demixbench.data.synthetic.spec import SyntheticSpec
from demixbench.data.synthetic.writer import write_dataset
from demixbench.models import build_model
from demixbench.train.sampler import ChunkSampler


def musdb_on_the_fly(root: Path, examples: int, segment_seconds: float, rng: np.random.Generator) -> float:
    """open-unmix's loop: a random track and offset per source, decoded from the stem file."""
    db = musdb.DB(root=str(root), is_wav=False, subsets="train")
    started = time.perf_counter()
    for _ in range(examples):
        sources = []
        for target in TARGETS:
            track = db.tracks[int(rng.integers(len(db.tracks)))]
            track.chunk_duration = segment_seconds
            track.chunk_start = float(rng.uniform(0, track.duration - segment_seconds))
            sources.append(track.sources[target].audio.T)
        _ = np.stack(sources).sum(axis=0)
    return examples / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--examples", type=int, default=64, help="examples drawn by the musdb reference")
    parser.add_argument("--segment", type=float, default=6.0, help="example length in seconds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "musdb18"
        write_dataset(SyntheticSpec(n_train=args.tracks, n_test=1, duration=args.seconds, format="stem.mp4"), root)
        splits = list_tracks("musdb18", root, validation=[])
        dirs = []
        for track in splits.train:
            dirs.append(Path(scratch) / "cache" / track)
            decode_track("musdb18", root, "train", track, dirs[-1])

        rng = np.random.default_rng(0)
        reference = musdb_on_the_fly(root, args.examples, args.segment, rng)

        sampler = ChunkSampler(dirs, int(args.segment * 44100), remix=True, channel_swap=True, sign_flip=True)
        batches = 0
        started = time.perf_counter()
        while time.perf_counter() - started < 3.0:
            sampler.batch(rng, 16)
            batches += 1
        ours = batches * 16 / (time.perf_counter() - started)
        print(
            f"examples/s of {args.segment:g} s: musdb on the fly {reference:.1f}, "
            f"demixbench cache {ours:.1f}, ratio {ours / reference:.0f}x"
        )

        # Demo training step (config/demo.yaml's U-Net, batch 8 x 2 s): time waiting for data vs total.
        model = build_model(
            "unet", {"n_fft": 1024, "hop_length": 256, "max_bins": 512, "channels": [8, 16, 32, 64, 128]}
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        demo_sampler = ChunkSampler(dirs, 2 * 44100, remix=True, channel_swap=True, sign_flip=False)
        data_time = step_time = 0.0
        for step in range(12):
            t0 = time.perf_counter()
            mixture, sources = demo_sampler.batch(rng, 8)
            t1 = time.perf_counter()
            loss, _, _ = model.separation_loss(mixture, sources)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            t2 = time.perf_counter()
            if step >= 2:  # skip warm-up
                data_time += t1 - t0
                step_time += t2 - t0
        print(
            f"demo training step: {1000 * step_time / 10:.0f} ms, "
            f"of which waiting for data {100 * data_time / step_time:.2f}%"
        )


if __name__ == "__main__":
    main()
