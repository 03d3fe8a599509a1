"""Guards of the package layout: the one-way import order of the stage subpackages, the map from
rules to the code that decides their outputs (workflow/rules/*.smk `code()` and dvc.yaml `deps`),
and the light modules the workflow imports when it builds the DAG."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SRC = REPO / "src"
PACKAGE = SRC / "demixbench"

#: Allowed imports run one way along the DAG: a subpackage may import the core (top-level modules)
#: and the subpackages before it, never one after it. `cli.py` is an entry point and exempt.
ORDER = ("core", "data", "models", "separate", "score", "train", "table", "report")

#: Modules reached from an adapter that do not decide the rule's outputs, so they are not declared
#: in its code(): logging, atomic file placement, device choice, run metadata, what a job cost. Training also uses
#: separation and scoring for its validation metrics (the best epoch is chosen on the validation
#: loss), so editing the scorer does not retrain the models. constraints.py only refuses settings
#: (the config check and the classes share it): it changes no output of a run it lets through.
NOT_DECIDING = {"logs.py", "fileio.py", "devices.py", "provenance.py", "constraints.py", "costs.py"}
NOT_DECIDING_PER_RULE = {
    # the dataset report (an input) already identifies the data; verify only copies its summary
    # into the checkpoint's provenance
    "train_model": {"separate/apply.py", "score/track.py", "data/verify.py"},
    "record_provenance": set(),  # the run's provenance is its output: provenance.py decides it
}
#: Modules of NOT_DECIDING that do decide one rule's output: the run's provenance and costs.
DECIDING_PER_RULE = {"record_provenance": {"provenance.py", "costs.py"}}


# ---- reading the package and the workflow ---------------------------------------------------


def module_file(name: str) -> Path | None:
    """demixbench.a.b -> src/demixbench/a/b.py or src/demixbench/a/b/__init__.py (None if neither)."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


@cache
def direct_imports(path: Path) -> frozenset[Path]:
    """The demixbench modules `path` imports anywhere in the file (functions included), with the
    packages Python runs on the way (a package's __init__ runs before its submodules)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] != "demixbench":
                continue
            parts = name.split(".")
            for end in range(1, len(parts) + 1):
                target = module_file(".".join(parts[:end]))
                if target is not None:
                    found.add(target)
    found.discard(path)
    return frozenset(found)


def stage(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "core"


def is_docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def reached(start: Path, skip: set[str]) -> set[str]:
    """Modules (relative to src/demixbench) reached from `start` through demixbench imports,
    not following imports out of the modules in `skip`."""
    seen, todo = set(), list(direct_imports(start))
    while todo:
        path = todo.pop()
        name = relative(path)
        if name in seen:
            continue
        seen.add(name)
        if name not in skip:
            todo += direct_imports(path)
    return seen


def rules(smk_files: list[Path] | None = None) -> dict[str, dict]:
    """rule name -> {"smk": file, "script": adapter path or None, "code": the arguments of code()}."""
    found = {}
    for smk in smk_files or sorted((REPO / "workflow/rules").glob("*.smk")):
        blocks = re.split(r"^\s*(?:rule|checkpoint) (\w+):", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            code = re.search(r"\bcode=code\(([^)]*)\)", body)
            script = re.search(r'^\s*script:\s*\n\s*"\.\./scripts/(\w+\.py)"', body, flags=re.M)
            found[name] = {
                "smk": smk,
                "script": REPO / "workflow/scripts" / script.group(1) if script else None,
                "code": re.findall(r'"([^"]+)"', code.group(1)) if code else [],
            }
    return found


def expand_code(paths: list[str]) -> set[str]:
    """code()'s arguments as source files relative to src/demixbench (folders: every module and C
    file under them)."""
    files = set()
    for path in paths:
        full = PACKAGE / path
        assert full.exists(), f"code({path!r}): {full} does not exist"
        files |= {relative(p) for p in full.rglob("*") if p.suffix in (".py", ".c")} if full.is_dir() else {path}
    return files


def package_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


# ---- layering ---------------------------------------------------------------------------------


def back_imports(path: Path, name: str) -> list[str]:
    """The imports of module `path` (at `name` in the package) that point later in ORDER."""
    rank = ORDER.index(stage(PACKAGE / name))
    return [
        f"{name} imports {relative(target)} ({stage(PACKAGE / name)} comes before {stage(target)})"
        for target in sorted(direct_imports(path))
        if relative(target) != "__init__.py"  # the package's constants (TARGETS, SAMPLE_RATE, __version__)
        and ORDER.index(stage(target)) > rank
    ]


def test_every_module_belongs_to_a_known_stage():
    for path in package_modules():
        assert stage(path) in ORDER or relative(path) == "cli.py", f"{relative(path)}: add its folder to ORDER"


def test_subpackages_import_one_way_along_the_dag():
    errors = [
        error
        for path in package_modules()
        if relative(path) != "cli.py"
        for error in back_imports(path, relative(path))
    ]
    assert errors == []


def test_the_layering_guard_catches_a_back_import(tmp_path):
    """A data module that imports the table stage is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from demixbench.table.build import build_table\n")
    assert back_imports(probe, "data/probe_module.py") == [
        "data/probe_module.py imports table/__init__.py (data comes before table)",
        "data/probe_module.py imports table/build.py (data comes before table)",
    ]


# ---- the rule-to-code map ---------------------------------------------------------------------


def undeclared(rule: str, entry: dict) -> tuple[set[str], set[str]]:
    """(modules the rule's adapter reaches that its code() does not declare, file entries of its
    code() that the adapter does not reach)."""
    skip = (NOT_DECIDING - DECIDING_PER_RULE.get(rule, set())) | NOT_DECIDING_PER_RULE.get(rule, set())
    uses = {
        name
        for name in reached(entry["script"], skip)
        if name not in skip and name != "__init__.py" and not is_docstring_only(PACKAGE / name)
    }
    declared = expand_code(entry["code"])
    stale = {path for path in entry["code"] if path.endswith(".py") and path not in uses}
    return uses - declared, stale


def job_rules() -> dict[str, dict]:
    return {name: entry for name, entry in rules().items() if entry["script"] is not None}


def test_every_job_rule_has_an_adapter_named_after_it():
    for name, entry in job_rules().items():
        assert entry["script"].name == f"{name}.py" and entry["script"].is_file(), name
    assert {p.stem for p in (REPO / "workflow/scripts").glob("*.py")} == set(job_rules())


@pytest.mark.parametrize("rule", sorted(job_rules()))
def test_each_rule_declares_the_code_that_decides_its_outputs(rule):
    missing, stale = undeclared(rule, job_rules()[rule])
    assert not missing, f"rule {rule}: add {sorted(missing)} to its code() in {job_rules()[rule]['smk'].name}"
    assert not stale, f"rule {rule}: code() lists {sorted(stale)}, which its adapter does not use"


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def deciding(files: set[str]) -> set[str]:
    """Without the packages' docstring-only __init__ files, which a folder in code() includes."""
    return {name for name in files if not (name.endswith(".py") and is_docstring_only(PACKAGE / name))}


def dvc_code(stage_name: str) -> set[str]:
    deps = dvc_stages()[stage_name]["deps"]
    return deciding(expand_code([d.removeprefix("src/demixbench/") for d in deps if d.startswith("src/demixbench/")]))


def rules_code(stage_name: str) -> set[str]:
    """The union of code() of the rules in the .smk files the DVC stage depends on."""
    smk = [
        REPO / d
        for d in dvc_stages()[stage_name]["deps"]
        if d.startswith("workflow/rules/") and d != "workflow/rules/common.smk"
    ]
    return deciding(set().union(*(expand_code(entry["code"]) for entry in rules(smk).values())))


@pytest.mark.parametrize("stage_name", ["data", "train", "score", "table"])
def test_dvc_stage_deps_equal_the_code_of_its_rules(stage_name):
    assert dvc_code(stage_name) == rules_code(stage_name), (
        f"dvc.yaml stage {stage_name}: deps under src/demixbench must be the union of its rules' code(); "
        f"missing {sorted(rules_code(stage_name) - dvc_code(stage_name))}, "
        f"extra {sorted(dvc_code(stage_name) - rules_code(stage_name))}"
    )


def test_the_rule_guard_catches_a_module_removed_from_code():
    entry = dict(job_rules()["separate_track"])
    entry["code"] = [path for path in entry["code"] if path != "separate/wiener.py"]
    assert undeclared("separate_track", entry)[0] == {"separate/wiener.py"}


# ---- what the DAG imports ---------------------------------------------------------------------


def test_the_modules_the_workflow_imports_at_dag_build_are_light():
    """common.smk imports these when Snakemake builds the DAG (every `snakemake` start, every
    cluster job); importing scipy or torch would cost seconds each time."""
    imported = re.findall(
        r"^from (demixbench[\w.]*) import", (REPO / "workflow/rules/common.smk").read_text(), flags=re.M
    )
    assert {"demixbench.data.layout", "demixbench.data.synthetic", "demixbench.data.verify"} <= set(imported)
    code = f"import sys; import {', '.join(imported)}; print(sorted(m for m in ('scipy', 'torch') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---- one default per setting --------------------------------------------------------------------


def schema_section(*path: str) -> dict:
    """The `properties` of a section of workflow/schemas/config.schema.yaml: a top-level key or a
    definition (train, gan), then nested keys."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    node = {"properties": {**schema["definitions"], **schema["properties"]}}
    for key in path:
        node = node["properties"][key]
    return node["properties"]


#: Settings whose workflow default differs from the library's on purpose.
DIFFERENT_ON_PURPOSE = {
    # the workflow records archive checksums in the repository's lock file; a library call
    # records none unless it names a file
    ("AcquireSpec", "lock_file"),
}


def settings_classes():
    """(schema section, the dataclass that mirrors it, keys the adapter renames: schema -> field)."""
    from demixbench.data.acquire.http import DownloadOptions
    from demixbench.data.acquire.ingest import AcquireSpec
    from demixbench.data.decode import DecodeOptions
    from demixbench.data.synthetic import SyntheticSpec
    from demixbench.data.verify import VerifySpec
    from demixbench.score.track import ScoringConfig
    from demixbench.separate.track import SeparationConfig
    from demixbench.train.config import GANConfig, TrainConfig
    from demixbench.train.tracking import TrackingConfig

    return [
        (("train",), TrainConfig),
        (("gan",), GANConfig),
        (("separation",), SeparationConfig),
        (("scoring",), ScoringConfig),
        (("data", "synthetic"), SyntheticSpec),
        (("data", "download"), DownloadOptions),
        (("data",), AcquireSpec),
        (("data",), VerifySpec),
        (("data",), DecodeOptions),
        (("tracking",), TrackingConfig),
    ]


@pytest.mark.parametrize("index", range(10))
def test_schema_defaults_equal_the_dataclass_defaults(index):
    """A setting left out of the config gets the same value in the workflow (the schema fills it in)
    as in a direct library call (the dataclass's default)."""
    import dataclasses

    path, cls = settings_classes()[index]
    properties = schema_section(*path)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    compared = 0
    for key, spec in properties.items():
        if key not in fields or "default" not in spec or (cls.__name__, key) in DIFFERENT_ON_PURPOSE:
            continue
        if spec.get("type") == "object" and "properties" in spec:
            continue  # a nested section (data.download, data.synthetic): compared with its own class
        field = fields[key]
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            pytest.fail(
                f"{cls.__name__}.{key} has no default, the schema's {'.'.join(path)}.{key} has {spec['default']!r}"
            )
        expected = spec["default"]
        if isinstance(default, tuple):
            expected = tuple(expected)
        assert default == expected, (
            f"{'.'.join(path)}.{key}: schema default {expected!r}, {cls.__name__} default {default!r}"
        )
        compared += 1
    assert compared, f"no shared setting between {'.'.join(path)} and {cls.__name__}"
