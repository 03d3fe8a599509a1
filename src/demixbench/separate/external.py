"""Methods the pipeline does not train, as the workflow sees them when it builds the DAG.

Three kinds of entry in the config's ``external:`` section are scored and tabled like the trained
models (docs/leaderboard.md):

``estimates``
    folders of estimates someone else made (``<folder>/<track>/<target>.wav``, or museval's
    ``<folder>/test/<track>/<target>.wav``); a glob matching several folders is several seeds.
``command``
    an external separator run on every test track through a command template:
    :func:`format_command` fills in the mixture file and the output folder.
``checkpoint``
    released weights of a registered architecture, converted once and separated like a trained run.

This module is light (standard library only): the workflow imports it when it builds the DAG. The
checks and copies of the estimates themselves are in :mod:`demixbench.separate.estimates`.
"""

from __future__ import annotations

import glob
import shlex
import string
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "KINDS",
    "PLACEHOLDERS",
    "RUNS",
    "check_template",
    "estimate_dirs",
    "estimates_root",
    "format_command",
    "template_fields",
]

#: The kinds of external method, as written in config (``external.<name>.kind``).
KINDS: tuple[str, ...] = ("estimates", "command", "checkpoint")

#: The run directory of a single-run external method (a folder of estimates has one per seed:
#: ``seed1``, ``seed2``, ... in the sorted order of its folders).
RUNS: dict[str, str] = {"command": "command", "checkpoint": "checkpoint"}

#: What a command template may name, and what each is replaced by (quoted for the shell).
PLACEHOLDERS: dict[str, str] = {
    "mixture": "the test track's mixture: a stereo 32-bit float wav at the pipeline's sample rate",
    "outdir": "the folder the command must write <target>.wav into, one per target",
    "track": "the test track's name",
    "sample_rate": "the pipeline's sample rate in Hz (the estimates' required rate)",
    "threads": "the CPU threads the job was given",
}
_REQUIRED = ("mixture", "outdir")


def template_fields(template: str) -> list[str]:
    """The placeholders a command template names, in order; ValueError for a malformed template."""
    try:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as err:
        raise ValueError(f"command template {template!r}: {err} (write a literal brace as {{{{ or }}}})") from None


def check_template(template: str) -> None:
    """ValueError naming the problem unless `template` names {mixture} and {outdir} and nothing
    but PLACEHOLDERS (without format specs)."""
    fields = template_fields(template)
    unknown = sorted({field for field in fields if field not in PLACEHOLDERS})
    if unknown:
        raise ValueError(
            f"command template {template!r}: unknown placeholder(s) {', '.join('{' + f + '}' for f in unknown)}; "
            f"allowed: {', '.join('{' + p + '}' for p in PLACEHOLDERS)} (a literal brace is {{{{ or }}}})"
        )
    missing = [field for field in _REQUIRED if field not in fields]
    if missing:
        raise ValueError(
            f"command template {template!r}: it must name {', '.join('{' + f + '}' for f in missing)} "
            "(where to read the mixture and where to write the estimates)"
        )


def format_command(template: str, *, mixture: str, outdir: str, track: str, sample_rate: int, threads: int) -> str:
    """The shell command for one track: `template` with every placeholder replaced by its value,
    quoted for the shell (track names hold spaces and apostrophes), e.g.
    ``"python sep.py {mixture} -o {outdir}"`` -> ``"python sep.py 'mix.wav' -o 'out/Track A'"``."""
    check_template(template)
    values = {
        "mixture": mixture,
        "outdir": outdir,
        "track": track,
        "sample_rate": str(int(sample_rate)),
        "threads": str(int(threads)),
    }
    return template.format(**{key: shlex.quote(value) for key, value in values.items()})


def estimate_dirs(pattern: str) -> list[Path]:
    """The folders a config's ``dirs`` glob matches, sorted (seed 1 is the first); ValueError when
    it matches no folder."""
    folders = sorted(Path(match) for match in glob.glob(str(Path(pattern).expanduser())) if Path(match).is_dir())
    if not folders:
        raise ValueError(f"{pattern}: matches no folder of estimates (<folder>/<track>/<target>.wav)")
    return folders


def estimates_root(estimates: Path, subset: str, tracks: Sequence[str]) -> Path:
    """The folder holding ``<track>/<target>.wav``: `estimates` itself, or ``estimates/<subset>``
    (museval's layout) when that exists and `estimates` holds none of the tracks directly."""
    estimates = Path(estimates)
    nested = estimates / subset
    if nested.is_dir() and not any((estimates / track).is_dir() for track in tracks):
        return nested
    return estimates
