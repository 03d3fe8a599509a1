"""Run provenance: config hash, wall times per stage from Snakemake benchmark files, JSON + HTML."""

import json

import pytest

from demixbench.provenance import config_hash
from demixbench.report.run import stage_wall_times, write_run_provenance

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(path, seconds, rss):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t1\n")


def test_config_hash_ignores_key_order_but_not_values():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_stage_wall_times_sum_per_rule(tmp_path):
    _bench(tmp_path / "train_model/unet/seed1.tsv", 10.5, 100.0)
    _bench(tmp_path / "train_model/unet/seed2.tsv", 4.5, 300.0)
    _bench(tmp_path / "score_run/unet/seed1/Track 'A'.tsv", 2.0, "NA")  # a per-track job's path
    stages = stage_wall_times(tmp_path)
    assert stages["train_model"] == {"jobs": 2, "wall_s": 15.0, "max_job_wall_s": 10.5, "max_rss_mb": 300.0}
    assert stages["score_run"]["jobs"] == 1 and stages["score_run"]["wall_s"] == 2.0


def test_write_run_provenance(tmp_path):
    _bench(tmp_path / "bench/decode_track/x.tsv", 1.25, 50.0)
    config = {"seeds": [1, 2], "models": {"m<1>": {}}}
    from demixbench.data.synthetic.spec import SyntheticSpec
    from demixbench.data.synthetic.writer import write_dataset
    from demixbench.data.verify import VerifySpec, verify_dataset

    spec = SyntheticSpec(n_train=2, n_test=1, duration=0.5, seed=3)
    write_dataset(spec, tmp_path / "data")
    report = verify_dataset(tmp_path / "data", VerifySpec.for_synthetic(spec), progress=False)
    report.write(tmp_path / "report.json")
    record = write_run_provenance(
        tmp_path / "p.json", tmp_path / "p.html", config, tmp_path / "report.json", tmp_path / "bench"
    )
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["config_hash"] == config_hash(config) == record["config_hash"]
    assert saved["stages"]["decode_track"]["wall_s"] == pytest.approx(1.25)
    assert saved["dataset_fingerprint"]["fingerprint"] == report.fingerprint
    assert saved["dataset_fingerprint"]["counts"] == {"train": 2, "test": 1}
    assert {"git", "packages", "python", "host", "cuda", "gpu"} <= set(saved)
    page = (tmp_path / "p.html").read_text()
    assert report.fingerprint in page and "decode_track" in page and "m&lt;1&gt;" in page and "<script" not in page


def test_checkpoint_provenance_has_the_config_hash_and_what_the_caller_adds(tmp_path):
    from torch import nn

    from demixbench.models.checkpoint import metadata_path, save_checkpoint

    config = {"model": {"arch": "x"}, "train": {"seed": 3}}
    fingerprint = {"fingerprint": "abc", "source": "musdb18hq", "counts": {"train": 100, "test": 50}}
    save_checkpoint(
        nn.Linear(2, 2),
        tmp_path / "model.safetensors",
        "x",
        {},
        config,
        provenance_extra={"dataset_fingerprint": fingerprint},
    )
    record = json.loads(metadata_path(tmp_path / "model.safetensors").read_text())["provenance"]
    assert record["config_hash"] == config_hash(config)
    assert record["dataset_fingerprint"] == fingerprint
    assert record["git"] and record["packages"]
