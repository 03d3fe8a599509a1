"""Command line interface: ``demixbench <command> ...``.

Commands
--------
table
    Build a leaderboard from directories of per-track museval score files, without Snakemake::

        demixbench table --row IRM2=scores/IRM2 --row unet=runs/s0/scores,runs/s1/scores \\
            --compare unet:IRM2 --note "IRM2=SiSEC 2018 submission, sigsep-mus-2018" \\
            --metric SDR --out results/table

    Each ``--row NAME=DIR[,DIR...]`` is one table row (kind "imported"); several directories are
    that method's seeds. ``--compare VARIANT:BASELINE`` adds a difference row: paired by seed when
    both rows have the same seed directory names, a t interval and test counting seeds and tracks
    (tracks resampled ``--resamples`` times from ``--bootstrap-seed``), Holm-adjusted p-values and
    the minimum detectable difference;
    ``--note NAME=TEXT`` records a row's provenance. ``--metric`` is one of SDR, ISR, SIR, SAR.
    Writes ``<stem>.md``, ``.csv``, ``.json``, ``.tex``, ``.html`` and ``.metrics.json`` (the
    headline numbers) into ``--out`` (the stem
    defaults to the metric in lower case: ``sdr``, ``sar``, ...) and prints the Markdown. See
    :mod:`demixbench.table` for the aggregations and statistics.

plan
    How many seeds does a comparison need? The minimum detectable difference per number of seeds
    per method, from existing score directories of a baseline (and optionally a variant)::

        demixbench plan --baseline runs/unet/seed1,runs/unet/seed2,runs/unet/seed3 \
            --variant runs/unet_gan/seed1,runs/unet_gan/seed2,runs/unet_gan/seed3 --difference 0.3

    Prints a Markdown report (``--json FILE`` also writes it as JSON). See
    :mod:`demixbench.table.plan`.

score
    Score any directory of estimates (``DIR/<track>/<target>.wav``, or museval's
    ``DIR/test/<track>/<target>.wav``) against a MUSDB18-HQ root, a MUSDB18 root or the pipeline's
    decoded cache, writing ``OUT/<track>.json.gz`` as the pipeline does, in parallel and resumable::

        demixbench score --references data/musdb18hq --estimates my_estimates --out scores/mine \
            --backend fast --metrics all --jobs 8

    Exit 1, listing every problem, when inputs are missing or do not match the references. See
    :mod:`demixbench.score.batch`.

separate
    Separate audio files (wav, flac, mp3, the mixture stream of a .stem.mp4, anything ffmpeg reads)
    with a trained run directory or checkpoint, into ``OUT/<name>/<target>.wav``, streaming (memory
    does not grow with the track's length), on CPU or GPU::

        demixbench separate results/paper/models/unet/seed1 song.mp3 other.flac -o separated \
            --segment 30 --device auto

    Refuses output directories that already hold estimates unless ``--overwrite``. See
    :mod:`demixbench.separate.files`.

runs
    One table of every training run of an experiment, read from its files while the pipeline
    runs (locally or on Slurm): model, seed, state (waiting, training, done, failed; stalled or
    unreadable when the files say so), epoch, step, steps per second, ETA, best validation nSDR
    and the log to read::

        demixbench runs --config config/demo.yaml --watch 30

    ``--experiment NAME`` or ``--results DIR [--logs DIR]`` instead of a config lists the run
    directories that exist; ``--json`` prints JSON. Exit 1 when a run failed or is unreadable.
    See :mod:`demixbench.runs`.

check-yaml
    Check that YAML files parse, naming file, line and column of a syntax error (Snakemake's own
    message names neither): ``demixbench check-yaml config.yaml``.

New commands register a subparser in :func:`build_parser` with a ``handler`` default taking
``(args, parser)`` and returning an exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from demixbench import TARGETS, __version__
from demixbench.data.layout import SUBSETS
from demixbench.devices import DEVICES
from demixbench.score.scorefile import METRICS

log = logging.getLogger(__name__)

__all__ = ["build_parser", "main"]


def _parse_row(value: str) -> tuple[str, tuple[Path, ...]]:
    """``NAME=DIR[,DIR...]`` -> (name, dirs); malformed values raise ArgumentTypeError."""
    name, sep, dirs = value.partition("=")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR[,DIR...], got {value!r}")
    paths = [part.strip() for part in dirs.split(",")]
    if not dirs.strip() or any(not part for part in paths):
        raise argparse.ArgumentTypeError(f"row {name!r}: empty directory in {value!r} (expected NAME=DIR[,DIR...])")
    return name, tuple(Path(part) for part in paths)


def _parse_compare(value: str) -> tuple[str, str]:
    """``VARIANT:BASELINE`` -> (variant, baseline); malformed values raise ArgumentTypeError."""
    variant, sep, baseline = value.partition(":")
    variant, baseline = variant.strip(), baseline.strip()
    if not sep or not variant or not baseline or ":" in baseline:
        raise argparse.ArgumentTypeError(f"expected VARIANT:BASELINE, got {value!r}")
    return variant, baseline


def _parse_note(value: str) -> tuple[str, str]:
    """``NAME=TEXT`` -> (name, text); malformed values raise ArgumentTypeError."""
    name, sep, text = value.partition("=")
    name, text = name.strip(), text.strip()
    if not sep or not name or not text:
        raise argparse.ArgumentTypeError(f"expected NAME=TEXT, got {value!r}")
    return name, text


def _number(convert: Callable[[str], float], accept: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse type: `convert` the value, keep it when `accept`s it, else "expected <expected>, got ..."."""

    def parse(value: str) -> float:
        try:
            number = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
        if not accept(number):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
        return number

    return parse


_positive_int = _number(int, lambda n: n >= 1, "a positive integer")
_probability = _number(float, lambda x: 0.0 < x < 1.0, "a number in (0, 1)")
_positive_float = _number(float, lambda x: x > 0, "a positive number")
_overlap = _number(float, lambda x: 0 <= x < 1, "a number in [0, 1)")
_non_negative_int = _number(int, lambda n: n >= 0, "an integer >= 0")


def _run_table(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Handler of ``demixbench table``."""
    # Imported here, not at the top: the table stage needs pandas and scipy, which ``demixbench
    # --help`` and the parser's usage errors should not wait for.
    from demixbench.table.build import build_table
    from demixbench.table.model import TRAINED_ON, Comparison, MethodRuns

    rows: list[tuple[str, tuple[Path, ...]]] = args.row
    names = [name for name, _ in rows]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        parser.error(f"--row: duplicate row name(s) {duplicates}")
    for name, dirs in rows:
        for directory in dirs:
            if not directory.is_dir():
                parser.error(f"--row {name}: {directory} is not a directory")
    for variant, baseline in args.compare:
        unknown = [n for n in (variant, baseline) if n not in names]
        if unknown:
            parser.error(f"--compare {variant}:{baseline}: unknown row name(s) {unknown}; rows are {names}")
    notes: dict[str, str] = {}
    for name, text in args.note:
        if name not in names:
            parser.error(f"--note {name}=...: unknown row name {name!r}; rows are {names}")
        if name in notes:
            parser.error(f"--note: row {name!r} has two notes")
        notes[name] = text
    trained_on: dict[str, str] = {}
    for name, value in args.trained_on:
        if name not in names:
            parser.error(f"--trained-on {name}=...: unknown row name {name!r}; rows are {names}")
        if value not in TRAINED_ON:
            parser.error(f"--trained-on {name}={value}: unknown value; one of {', '.join(TRAINED_ON)}")
        trained_on[name] = value
    targets = tuple(args.targets) if args.targets else TARGETS

    try:
        table = build_table(
            [
                MethodRuns(name, dirs, kind="imported", note=notes.get(name, ""), trained_on=trained_on.get(name))
                for name, dirs in rows
            ],
            [Comparison(variant=variant, baseline=baseline) for variant, baseline in args.compare],
            targets=targets,
            metric=args.metric,
            n_resamples=args.resamples,
            bootstrap_seed=args.bootstrap_seed,
        )
        table.write(args.out, stem=args.stem or args.metric.lower())
    except ValueError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    print(table.to_markdown(), end="")
    return 0


def _parse_dirs(value: str) -> tuple[Path, ...]:
    """``DIR[,DIR...]`` -> directories; empty parts raise ArgumentTypeError."""
    parts = [part.strip() for part in value.split(",")]
    if any(not part for part in parts):
        raise argparse.ArgumentTypeError(f"empty directory in {value!r} (expected DIR[,DIR...])")
    return tuple(Path(part) for part in parts)


def _run_plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Handler of ``demixbench plan``."""
    # Imported here for the same reason as in _run_table.
    from demixbench.fileio import atomic_write_text
    from demixbench.table.plan import plan_seeds

    for option, dirs in (("--baseline", args.baseline), ("--variant", args.variant or ())):
        for directory in dirs:
            if not directory.is_dir():
                parser.error(f"{option}: {directory} is not a directory of per-track score files")
    if args.difference is not None and args.difference <= 0:
        parser.error(f"--difference must be positive, got {args.difference}")
    try:
        plan = plan_seeds(
            args.baseline,
            args.variant or (),
            targets=tuple(args.targets) if args.targets else TARGETS,
            metric=args.metric,
            over_tracks_statistic=args.over_tracks,
            n_resamples=args.resamples,
            confidence=1.0 - args.alpha,
            power=args.power,
        )
    except ValueError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    if args.json is not None:
        document = plan.to_dict(args.max_seeds, args.difference)
        atomic_write_text(args.json, json.dumps(document, indent=2, allow_nan=False) + "\n")
    print(plan.to_markdown(args.max_seeds, args.difference), end="")
    return 0


def _run_score(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Handler of ``demixbench score``: 0 when every track is scored (or already was), else 1
    with every problem listed."""
    # Imported here, not at the top: scoring needs numpy, scipy and soundfile, which ``demixbench
    # --help`` and the parser's usage errors should not wait for.
    from demixbench.score.batch import ScoreInputError, score_directory
    from demixbench.score.track import ScoringConfig

    if args.metrics == "sdr-only" and args.backend != "fast":
        parser.error("--metrics sdr-only is the fast backend's SDR-only path; use --backend fast")
    if args.verbose == 0:  # the detected layouts and the summary are worth seeing by default
        logging.getLogger("demixbench.score.batch").setLevel(logging.INFO)
    try:
        config = ScoringConfig(backend=args.backend, win_seconds=args.win, hop_seconds=args.hop)
        summary = score_directory(
            args.references,
            args.estimates,
            args.out,
            subset=args.subset,
            targets=tuple(args.targets) if args.targets else TARGETS,
            config=config,
            metrics=args.metrics,
            jobs=args.jobs,
            tracks=args.tracks,
            sample_rate=args.sample_rate,
        )
    except ScoreInputError as error:
        for problem in error.problems:
            print(f"{parser.prog}: error: {problem}", file=sys.stderr)
        print(f"{parser.prog}: {len(error.problems)} problem(s); nothing was scored", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    for message in summary.failed.values():
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0


def _run_separate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Handler of ``demixbench separate``: 0 when every input is separated, else 1 with the error
    (naming the input, checkpoint or output directory)."""
    # Imported here, not at the top: separation needs torch, which ``demixbench --help`` and the
    # parser's usage errors should not wait for.
    from demixbench.separate.files import separate_files
    from demixbench.separate.track import SeparationConfig

    if args.verbose == 0:  # one line per separated file is worth seeing by default
        for name in ("demixbench.separate.files", "demixbench.data.audiofile"):  # mono, resampling
            logging.getLogger(name).setLevel(logging.INFO)
    config = SeparationConfig(
        segment_seconds=args.segment,
        overlap=args.overlap,
        device=args.device,
        shifts=args.shifts,
        wiener_iterations=args.wiener,
    )
    try:
        outputs = separate_files(args.inputs, args.checkpoint, args.out, config, overwrite=args.overwrite)
    except ValueError as error:  # DatasetError, CheckpointError, OutputExistsError are ValueErrors
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    for directory in outputs:
        print(directory)
    return 0


def _config_runs(path: Path) -> tuple[str, list[tuple[str, int]]]:
    """The experiment and the (model, seed) runs a workflow config trains: its ``experiment``, its
    ``models`` times its ``seeds``. Raises ValueError naming the file and the key."""
    from demixbench.yamlfile import load_yaml

    config = load_yaml(path)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a workflow config (expected a mapping with experiment, models and seeds)")
    experiment, models, seeds = config.get("experiment"), config.get("models"), config.get("seeds")
    if not isinstance(experiment, str) or not experiment or "/" in experiment or experiment in (".", ".."):
        raise ValueError(f"{path}: 'experiment' must name the experiment (results/<experiment>), got {experiment!r}")
    if not isinstance(models, dict) or not models:
        raise ValueError(f"{path}: 'models' must map model names to their settings, got {models!r}")
    if not isinstance(seeds, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        raise ValueError(f"{path}: 'seeds' must be a list of integers, got {seeds!r}")
    return experiment, [(str(model), seed) for model in models for seed in seeds]


def _run_runs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Handler of ``demixbench runs``: 0 when no run failed, else 1; with --watch, refreshes
    until every run is done or failed (Ctrl-C stops it: 130)."""
    from demixbench.runs import FAILED, UNREADABLE, RunsError, collect_runs, finished, format_runs, runs_to_json

    expected = None
    if args.results is not None:
        results, logs = args.results, args.logs
        if logs is None:
            if args.results.resolve().parent.name != "results":
                parser.error(f"--results {args.results}: give --logs DIR too (the job logs, logs/<experiment>)")
            logs = args.results.resolve().parent.parent / "logs" / args.results.resolve().name
    elif args.experiment is not None:
        results, logs = Path("results") / args.experiment, args.logs or Path("logs") / args.experiment
    else:
        config = args.config or Path("config.yaml")
        if not config.is_file():
            parser.error(
                f"{config}: no such config; give --config FILE, --experiment NAME or --results DIR "
                "(run from the repository root, where Snakemake runs)"
            )
        try:
            experiment, expected = _config_runs(config)
        except ValueError as error:  # YAMLFileError too
            print(f"{parser.prog}: error: {error}", file=sys.stderr)
            return 1
        results, logs = Path("results") / experiment, args.logs or Path("logs") / experiment
    try:
        while True:
            try:
                statuses = collect_runs(results, logs, expected)
            except RunsError as error:
                print(f"{parser.prog}: error: {error}", file=sys.stderr)
                return 1
            if args.watch is not None and sys.stdout.isatty():
                print("\033[H\033[2J", end="")  # clear the terminal before each refresh
            if args.json:
                print(runs_to_json(statuses, indent=None if args.watch is not None else 2))
            else:
                if args.watch is not None:
                    print(f"{results}  {time.strftime('%H:%M:%S')}  (every {args.watch:g} s; Ctrl-C to stop)\n")
                print(format_runs(statuses), end="")
            sys.stdout.flush()
            if args.watch is None or finished(statuses):
                break
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 130
    return 1 if any(status.state in (FAILED, UNREADABLE) for status in statuses) else 0


def _run_check_yaml(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Handler of ``demixbench check-yaml``: 0 when every file parses, else 1 with each error."""
    from demixbench.yamlfile import YAMLFileError, load_yaml

    status = 0
    for path in args.files:
        try:
            load_yaml(path)
        except YAMLFileError as error:
            print(f"{parser.prog}: error: {error}", file=sys.stderr)
            status = 1
    return status


def build_parser() -> argparse.ArgumentParser:
    """The ``demixbench`` argument parser, one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="demixbench",
        description="demixbench: reproduce music source separation results, MUSDB18 to an SDR leaderboard.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    table = commands.add_parser(
        "table",
        help="build a leaderboard (SDR, ISR, SIR or SAR) from per-track museval score directories",
        description="Build a leaderboard from directories of per-track museval score files "
        "(*.json / *.json.gz): median over frames then median over tracks (SiSEC 2018), median over "
        "frames then mean over tracks, and for SDR the MDX nSDR where the files carry it; mean ± s.e. "
        "over seeds; difference rows paired by seed where the seeds match, with a t interval and test "
        "counting seeds and tracks, Holm-adjusted p-values and minimum detectable differences "
        "(docs/statistics.md). Writes Markdown, CSV, JSON, LaTeX and HTML.",
    )
    table.add_argument(
        "--row",
        action="append",
        type=_parse_row,
        required=True,
        metavar="NAME=DIR[,DIR...]",
        help="a table row; several comma-separated directories are the method's seeds (repeatable)",
    )
    table.add_argument(
        "--compare",
        action="append",
        type=_parse_compare,
        default=[],
        metavar="VARIANT:BASELINE",
        help="add a difference row VARIANT - BASELINE (repeatable)",
    )
    table.add_argument(
        "--note",
        action="append",
        type=_parse_note,
        default=[],
        metavar="NAME=TEXT",
        help="provenance of a row, listed under the tables and in the JSON (repeatable)",
    )
    table.add_argument(
        "--trained-on",
        action="append",
        type=_parse_note,
        default=[],
        metavar="NAME=DATA",
        help="what a row was trained on: musdb18-train, extra-data (marked *), test-seen (marked †, not "
        "comparable, its differences untested), oracle; rows not declared are marked ? (repeatable)",
    )
    table.add_argument("--metric", default="SDR", choices=METRICS, help="museval metric to aggregate (default: SDR)")
    table.add_argument(
        "--targets",
        nargs="+",
        default=None,
        metavar="TARGET",
        help=f"target columns (default: {' '.join(TARGETS)})",
    )
    table.add_argument("--out", type=Path, required=True, metavar="OUTDIR", help="directory for the output files")
    table.add_argument(
        "--stem", default=None, help="output file name stem (default: the metric in lower case, e.g. sdr)"
    )
    table.add_argument(
        "--resamples",
        type=_positive_int,
        default=2000,
        metavar="N",
        help="bootstrap resamples of the test tracks for the difference rows (default: 2000)",
    )
    table.add_argument(
        "--bootstrap-seed", type=int, default=0, metavar="SEED", help="random seed of the bootstrap (default: 0)"
    )
    table.set_defaults(handler=_run_table, subparser=table)

    plan = commands.add_parser(
        "plan",
        help="how many seeds a comparison needs: minimum detectable differences from existing score files",
        description="Measure the seed variance (and, given a variant, the paired seed variance and the "
        "test tracks' share) from existing per-track score directories, one per seed, and print the "
        "minimum detectable difference per number of seeds per method at the given power and alpha, "
        "and with --difference the seeds needed to detect it (docs/statistics.md).",
    )
    plan.add_argument(
        "--baseline", type=_parse_dirs, required=True, metavar="DIR[,DIR...]", help="the baseline's seed directories"
    )
    plan.add_argument(
        "--variant", type=_parse_dirs, default=None, metavar="DIR[,DIR...]", help="the variant's seed directories"
    )
    plan.add_argument("--difference", type=float, default=None, metavar="DB", help="the difference to detect, in dB")
    plan.add_argument(
        "--max-seeds", type=_positive_int, default=10, metavar="N", help="seeds per method listed (default: 10)"
    )
    plan.add_argument("--metric", default="SDR", choices=METRICS, help="museval metric (default: SDR)")
    plan.add_argument(
        "--over-tracks", default="median", choices=("median", "mean"), help="aggregate over tracks (default: median)"
    )
    plan.add_argument(
        "--targets", nargs="+", default=None, metavar="TARGET", help=f"targets (default: {' '.join(TARGETS)})"
    )
    plan.add_argument("--alpha", type=_probability, default=0.05, help="significance level (default: 0.05)")
    plan.add_argument("--power", type=_probability, default=0.8, help="power (default: 0.8)")
    plan.add_argument(
        "--resamples",
        type=_positive_int,
        default=2000,
        metavar="N",
        help="bootstrap resamples of the tracks (default: 2000)",
    )
    plan.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the plan as JSON")
    plan.set_defaults(handler=_run_plan, subparser=plan)

    score = commands.add_parser(
        "score",
        help="score a directory of estimates against MUSDB18(-HQ) or the decoded cache (museval JSON per track)",
        description="Score estimates (DIR/<track>/<target>.wav, or museval's DIR/<subset>/<track>/<target>.wav) "
        "against references: a MUSDB18-HQ root (wav), a MUSDB18 root (.stem.mp4) or the pipeline's decoded "
        "cache (<track>/<stem>.npy), detected from the files. Writes OUT/<track>.json.gz (museval/SiSEC JSON "
        "with the MDX nSDR), the same bytes the pipeline writes, in parallel over tracks; tracks already "
        "scored are skipped. Every problem with the inputs is listed before anything is scored (exit 1).",
    )
    score.add_argument(
        "--references",
        type=Path,
        required=True,
        metavar="ROOT",
        help="MUSDB18-HQ or MUSDB18 root (ROOT/<subset>/...) or the pipeline's decoded cache",
    )
    score.add_argument("--estimates", type=Path, required=True, metavar="DIR", help="DIR/<track>/<target>.wav")
    score.add_argument("--out", type=Path, required=True, metavar="OUTDIR", help="directory for <track>.json.gz")
    score.add_argument("--subset", default="test", choices=SUBSETS, help="the references' subset (default: test)")
    score.add_argument(
        "--targets", nargs="+", default=None, metavar="TARGET", help=f"targets (default: {' '.join(TARGETS)})"
    )
    score.add_argument(
        "--backend",
        default="fast",
        choices=("fast", "museval"),
        help="BSS Eval v4: the project's exact fast scorer or museval itself (default: fast)",
    )
    score.add_argument(
        "--metrics",
        default="all",
        choices=("all", "sdr-only"),
        help="SDR, ISR, SIR and SAR, or SDR only (the fast scorer's SDR-only path; tables read SDR from "
        "such files) (default: all)",
    )
    score.add_argument(
        "--jobs", type=_positive_int, default=None, metavar="N", help="tracks scored at once (default: the CPUs)"
    )
    score.add_argument("--win", type=_positive_float, default=1.0, metavar="SECONDS", help="frame length (default: 1)")
    score.add_argument("--hop", type=_positive_float, default=1.0, metavar="SECONDS", help="frame hop (default: 1)")
    score.add_argument(
        "--tracks", nargs="+", default=None, metavar="NAME", help="score these tracks only (default: all)"
    )
    score.add_argument(
        "--sample-rate",
        type=_positive_int,
        default=None,
        metavar="HZ",
        help="scoring rate (default: the decoded cache's, or 44100 for MUSDB18 files, which are resampled to it)",
    )
    score.set_defaults(handler=_run_score, subparser=score)

    separate = commands.add_parser(
        "separate",
        help="separate audio files with a trained model into one wav per target (streaming, CPU or GPU)",
        description="Separate audio files (wav, flac, mp3, the mixture stream of a .stem.mp4, anything "
        "ffmpeg reads) with a trained model into OUT/<name>/<target>.wav (32-bit float, the model's sample "
        "rate). Mono input is duplicated to stereo, other sample rates are resampled (ffmpeg). Each file is "
        "decoded to a scratch copy on disk and separated in overlapping segments, so memory does not grow "
        "with the track's length; an output directory appears only once all its targets are written.",
    )
    separate.add_argument(
        "checkpoint",
        type=Path,
        metavar="CHECKPOINT",
        help="a trained run directory (results/<experiment>/models/<model>/seed<N>), a model.safetensors "
        "or a legacy model.pt (model.json beside it)",
    )
    separate.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="audio files to separate")
    separate.add_argument(
        "-o", "--out", type=Path, required=True, metavar="OUTDIR", help="directory for OUTDIR/<name>/<target>.wav"
    )
    separate.add_argument(
        "--segment",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="separate in overlapping segments of this length; memory grows with it (default: 30)",
    )
    separate.add_argument(
        "--overlap",
        type=_overlap,
        default=0.25,
        metavar="FRACTION",
        help="fraction of a segment cross-faded with the next, in [0, 1) (default: 0.25)",
    )
    separate.add_argument(
        "--shifts",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="test-time shifts: average over N randomly shifted copies, N times slower; 0: off (default: 0)",
    )
    separate.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA when available (default)")
    separate.add_argument(
        "--wiener",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="multichannel Wiener EM iterations, spectrogram models only; 0: off (default: 0)",
    )
    separate.add_argument(
        "--overwrite", action="store_true", help="replace output directories that already hold estimates"
    )
    separate.set_defaults(handler=_run_separate, subparser=separate)

    runs = commands.add_parser(
        "runs",
        help="the state of every training run of an experiment: progress, ETA, best nSDR, log",
        description="One table of every training run (model x seed) of an experiment, read from "
        "results/<experiment>/models/<model>/seed<N>/ (progress.json, model.json, history.csv) and "
        "logs/<experiment>/train_model/<model>/seed<N>.log, while the pipeline runs locally or on Slurm: "
        "state (waiting, training, done, failed; stalled when a run on another host has been silent "
        "for 10 minutes; unreadable for a malformed progress.json), epoch, step, steps per second, ETA "
        "(training steps left at the current rate, validation not counted), best validation nSDR, the "
        "log to read. Exit 1 when a run failed or is unreadable.",
    )
    source = runs.add_mutually_exclusive_group()
    source.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a workflow config: its experiment, and its models x seeds as the runs, those not started "
        "listed as waiting (default: config.yaml)",
    )
    source.add_argument(
        "--experiment", default=None, metavar="NAME", help="results/NAME and logs/NAME: the runs started so far"
    )
    source.add_argument(
        "--results", type=Path, default=None, metavar="DIR", help="an experiment's results directory: the runs in it"
    )
    runs.add_argument(
        "--logs",
        type=Path,
        default=None,
        metavar="DIR",
        help="the experiment's job logs (default: logs/<experiment> beside results/<experiment>)",
    )
    runs.add_argument("--json", action="store_true", help="print JSON (one line per refresh with --watch)")
    runs.add_argument(
        "--watch",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS until every run is done or failed (Ctrl-C stops)",
    )
    runs.set_defaults(handler=_run_runs, subparser=runs)

    check_yaml = commands.add_parser(
        "check-yaml",
        help="check that YAML files (e.g. a workflow config) parse; errors name file, line and column",
        description="Parse each YAML file and report syntax errors with the file, line and column, "
        "which Snakemake's own message omits. `make` runs it on the config before the workflow.",
    )
    check_yaml.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML files to check")
    check_yaml.set_defaults(handler=_run_check_yaml, subparser=check_yaml)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``demixbench`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return int(args.handler(args, args.subparser))


if __name__ == "__main__":
    sys.exit(main())
