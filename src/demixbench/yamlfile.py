"""Reading YAML files with errors a person can act on: a syntax error names the file, line and
column (PyYAML counts from 0; people and editors from 1) and what the parser expected there.

Snakemake reports a config file it cannot parse only as "not valid JSON or YAML", without the
file or the place; ``make`` targets and the workflow check config files with :func:`load_yaml`
first (``demixbench check-yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["YAMLFileError", "load_yaml"]


class YAMLFileError(ValueError):
    """A YAML file that cannot be read; the message starts with ``path:line:column:``."""


def load_yaml(path: Path) -> Any:
    """Parse the YAML file at ``path`` (safe loader). Raises YAMLFileError naming the file, and for
    a syntax error the 1-based line and column with the parser's description and the offending
    line; a tab in the indentation is named as such."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YAMLFileError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise YAMLFileError(f"{path}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = " ".join(part for part in (error.context, error.problem) if part)
        if mark is None:
            raise YAMLFileError(f"{path}: not valid YAML: {problem}") from None
        line = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
        hint = "; YAML indents with spaces, not tabs" if "\t" in line[: mark.column + 1] else ""
        context = error.context_mark
        if context is not None and error.problem_mark is not None and context.line != mark.line:
            opened = error.context.removeprefix("while parsing ").removeprefix("a ")
            hint += f" (the {opened} started at line {context.line + 1}, column {context.column + 1})"
        raise YAMLFileError(
            f"{path}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {problem}{hint}\n"
            f"    {line}\n    {' ' * mark.column}^"
        ) from None
    except yaml.YAMLError as error:
        raise YAMLFileError(f"{path}: not valid YAML: {error}") from None
