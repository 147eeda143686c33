"""The package's structure: layers import only downward and never in a loop, planning and `--help`
never import torch, every registry is consistent, a run's identity survives new keys and old records."""

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import rdml
from rdml.config import KEYS, config_from_mapping, config_sha256, method_keys, resolve
from rdml.data.catalog import DATASETS, KINDS, STORAGES, TASKS
from rdml.keys import ConfigError, Key
from rdml.methods import METHODS, Method
from rdml.models.catalog import ARCHITECTURES
from rdml.audit import audit_cell
from rdml.study.layouts import LAYOUTS

PACKAGE = Path(rdml.__file__).parent
REPO = Path(__file__).resolve().parents[1]
# Bottom to top. A module may import its own layer (within its own package) and any layer below.
LAYERS = [
    {"rdml", "rdml.keys", "rdml.registry", "rdml.io", "rdml.paths", "rdml.code", "rdml.metrics", "rdml.gpus"},
    {"rdml.core"},
    {"rdml.divergences", "rdml.losses"},  # public import paths of rdml.core's functions
    {"rdml.data"},
    {"rdml.models"},
    {"rdml.methods"},
    {"rdml.config", "rdml.dependencies"},
    {"rdml.train"},
    {"rdml.analysis"},
    {"rdml.study"},
    {"rdml.report"},
    {"rdml.audit"},
    {"rdml.pipeline"},
    {"rdml.cli"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> tuple[int, str]:
    """The layer of the longest layer name that `module` is or lies under, across all layers (`rdml`
    itself lies under none of the others: checked first, it would claim every module)."""
    matches = [(len(name), rank, name) for rank, names in enumerate(LAYERS) for name in names
               if module == name or module.startswith(name + ".")]
    if not matches:
        raise AssertionError(f"{module} is in no layer of this test: add it")
    _, rank, name = max(matches)
    return rank, name


def test_layer_of_takes_the_longest_name():
    """A module under a higher layer is placed there, not in the bottom layer that holds `rdml`."""
    assert layer_of("rdml.pipeline.slots") == (len(LAYERS) - 2, "rdml.pipeline")
    assert layer_of("rdml.keys") == (0, "rdml.keys")
    assert layer_of("rdml") == (0, "rdml")


def imports(path: Path) -> set[str]:
    """The rdml modules `path` imports, anywhere in the file (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rdml"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if (PACKAGE.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").is_file())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rdml"))
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_import_runs_down_the_layers():
    wrong = []
    for module, path in MODULES.items():
        rank, home = layer_of(module)
        for target in imports(path):
            target_rank, target_home = layer_of(target)
            if target_rank > rank or (target_rank == rank and target_home != home and rank > 0):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_loop():
    """Imports inside functions count: deferring one hides a loop from import time, not from the design."""
    graph = {m: {t for t in imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for target in graph[node]:
            if state.get(target) == 1:
                raise AssertionError("import loop: " + " → ".join([*trail[trail.index(target):], target]))
            if target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_no_method_module_imports_another():
    """What two methods share lives below them (rdml.methods.base, rdml.core), so that a method is read, changed
    and reruns on its own; the package, which imports every method, counts as all of them."""
    shared = {"rdml.methods.base"}
    method_modules = {m for m in MODULES if m.startswith("rdml.methods.")} - shared
    wrong = [f"{module} imports {target}" for module in sorted(method_modules) for target in sorted(imports(MODULES[module]))
             if target != module and (target == "rdml.methods" or target in method_modules)]
    assert not wrong, "\n".join(wrong)


def test_package_init_files_only_re_export():
    """A package's `__init__.py` holds imports (those of a registry, which register its entries, included),
    `__all__` (rdml's also `__version__`) and its docstring: a name it offers is defined in a module of its own,
    so the module a name comes from is the one that defines it."""
    wrong = []
    for module, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text()).body:
            docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            names = [t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)]
            exported = isinstance(node, (ast.Assign, ast.AnnAssign)) and names and set(names) <= {"__all__", "__version__"}
            if not (docstring or exported or isinstance(node, (ast.Import, ast.ImportFrom))):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {type(node).__name__}")
    assert not wrong, "\n".join(wrong)


PROBE = "import sys; {code}; print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"


@pytest.mark.parametrize("code", [
    "import rdml.study.plan, rdml.pipeline.dvc, rdml.code, rdml.config",
    "from rdml.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass",
    "from rdml.cli import main\ntry: main(['train', '--help'])\nexcept SystemExit: pass",
])
def test_planning_and_help_do_not_import_torch(code):
    result = subprocess.run([sys.executable, "-c", PROBE.format(code=code).replace("; ", "\n", 1)],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_registries_are_consistent():
    for name, method in METHODS.items():
        assert issubclass(method, Method) and method.name == name and method.description
        assert isinstance(method.label({}), str) and isinstance(method.label({"alpha": 1.5}), str)
        assert method.min_students >= 1 and set(method.defaults) >= {"arch", "temperature"}
        for key in method.keys:
            assert method_keys(name)[key.name] is key and key.name not in KEYS  # its own namespace
    for name, key in KEYS.items():
        assert isinstance(key, Key) and key.name == name and key.help
        if key.check is not None and key.default is not None:
            key.check(key.default)  # every default passes its own check
    for name, source in DATASETS.items():
        assert source.name == name and source.spec.kind in KINDS
        assert source.task in TASKS and source.storage in STORAGES
        module = __import__(f"rdml.data.{source.module}", fromlist=["load"])
        assert callable(module.load) and (not source.downloaded or callable(module.prepare))
        if source.smoke is not None:  # a retrieval stand-in trains fewer identities, a streamed one (tiny_imagenet's
            # generated archives) fewer classes; everything else is the same
            smoke = DATASETS[source.smoke]
            assert smoke.task == source.task and (smoke.spec.kind, smoke.spec.input_shape) == (source.spec.kind, source.spec.input_shape)
            assert source.task == "retrieval" or source.storage == "stream" or smoke.spec == source.spec
    for name, arch in ARCHITECTURES.items():
        module, function = arch.builder.split(":")
        assert arch.name == name and callable(getattr(__import__(f"rdml.models.{module}", fromlist=[function]), function))
        assert set(arch.kinds) <= set(KINDS)
    schema = yaml.safe_load((REPO / "workflow/schemas/params.schema.yaml").read_text())
    assert set(LAYOUTS) == {k for k in schema["properties"]["studies"]["additionalProperties"]["properties"] if k.endswith("_table")}


@pytest.mark.parametrize("registry,name,what", [(METHODS, "distill", "method"), (DATASETS, "imagenet21k", "dataset"),
                                                (ARCHITECTURES, "resnet9000", "arch"), (LAYOUTS, "nope_table", "table layout")])
@pytest.mark.bad_input
def test_unknown_names_are_refused_with_the_allowed_ones(registry, name, what):
    with pytest.raises(ConfigError, match=f"{what}='{name}' is not allowed; allowed: " + ", ".join(sorted(registry))):
        registry[name]


@pytest.mark.parametrize("name", ["synthetic", "tiny_cifar10", "tiny_fashion_mnist"])
def test_generated_data_fits_its_declared_spec(name):
    from rdml.data.base import load_dataset

    data = load_dataset(name, split_seed=0, test_fraction=0.25)
    spec = DATASETS[name].spec
    assert tuple(data.x_train.shape[1:]) == spec.input_shape
    assert int(max(data.y_train.max(), data.y_test.max())) + 1 == spec.num_classes


def test_a_new_key_at_its_default_keeps_every_run_identity(monkeypatch):
    values = {k: v for k, v in vars(resolve(config_from_mapping({"dataset": "synthetic"}))).items()}
    before = config_sha256(values)
    monkeypatch.setitem(KEYS, "future_key", Key("future_key", 0, "int", "a key a later rdml adds"))
    assert config_sha256({**values, "future_key": 0}) == before
    assert config_sha256({**values, "future_key": 3}) != before


def legacy_project(tmp_path: Path, config_extra: dict | None = None) -> Path:
    """The run written by rdml before the layered package (tests/fixtures/legacy_run), in a table sidecar
    of the study (in params.yaml) that plans it."""
    run = "results/legacy/runs/synthetic/dml-mlp+mlp-a1-s0"
    shutil.copytree(Path(__file__).parent / "fixtures/legacy_run", tmp_path / run)
    record = json.loads((tmp_path / run / "record.json").read_text())
    if config_extra:
        record["config"].update(config_extra)
        record["config_sha256"] = config_sha256(record["config"])
        (tmp_path / run / "record.json").write_text(json.dumps(record))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"studies": {"legacy": LEGACY_STUDY}}))
    value = record["summary"]["student_0"]["final_acc"]
    sidecar = {"table": "pair_table", "study": "legacy", "metric": "final", "caption": "", "spec": LEGACY_STUDY,
               "cells": {LEGACY_CELL: {"mean": value, "std": 0.0, "n": 1, "diverged": 0,
                                       "runs": [{"run": run, "student": "student_0", "value": value, "status": "ok"}]}}}
    (tmp_path / "t.cells.json").write_text(json.dumps(sidecar))
    return tmp_path


# the study whose pair table plans the legacy run (its keys hash as the run's config), and its cell
LEGACY_STUDY = {"datasets": ["synthetic"], "seeds": [0], "metric": "final",
                "train": {"epochs": 1, "batch_size": 64, "lr": 0.05}, "pair_table": {"pairs": [["mlp", "mlp"]]}}
LEGACY_CELL = "synthetic: mlp, mlp|DML Net 1"


def test_a_record_of_the_earlier_layout_still_audits(tmp_path):
    root = legacy_project(tmp_path)
    assert json.loads((root / "results/legacy/runs/synthetic/dml-mlp+mlp-a1-s0/record.json").read_text())["code"]["git_commit"].startswith("c9bde29")
    lines = []
    assert audit_cell(root / "t.cells.json", LEGACY_CELL, root, out=lines.append) == []
    assert lines[-1] == "OK: every hash matches the files on disk"


def test_a_record_with_a_key_this_version_does_not_know_audits(tmp_path):
    root = legacy_project(tmp_path, {"future_key": 3})  # the record holds; the study does not plan such a run
    assert audit_cell(root / "t.cells.json", LEGACY_CELL, root, out=lambda _: None) == [
        "results/legacy/runs/synthetic/dml-mlp+mlp-a1-s0/record.json: the run there was trained with other keys "
        "than study legacy plans"]


def test_an_epoch_cell_of_a_run_that_stopped_earlier_audits(tmp_path):
    root = legacy_project(tmp_path)
    cells = json.loads((root / "t.cells.json").read_text())
    cells["cells"][LEGACY_CELL]["runs"][0].update(epoch=25, value=float("nan"))  # the table's NaN: never reached
    cells["cells"][LEGACY_CELL].update(mean=None, std=None, n=0)  # what the table makes of it: no value
    (root / "t.cells.json").write_text(json.dumps(cells))
    assert audit_cell(root / "t.cells.json", LEGACY_CELL, root, out=lambda _: None) == []


@pytest.mark.tamper
def test_a_tampered_legacy_record_fails_the_audit(tmp_path):
    root = legacy_project(tmp_path)
    path = root / "results/legacy/runs/synthetic/dml-mlp+mlp-a1-s0/record.json"
    record = json.loads(path.read_text())
    record["config"]["lr"] = 0.5
    path.write_text(json.dumps(record))
    assert any("config does not hash" in p for p in audit_cell(root / "t.cells.json", LEGACY_CELL, root, out=lambda _: None))


@pytest.mark.tamper
def test_the_audit_catches_forged_numbers_and_damaged_files(tmp_path):
    root = legacy_project(tmp_path)
    path = root / "results/legacy/runs/synthetic/dml-mlp+mlp-a1-s0/record.json"
    sidecar = root / "t.cells.json"
    audit = lambda **kw: audit_cell(sidecar, LEGACY_CELL, root, out=lambda _: None, **kw)
    assert audit(evaluate=True) == []  # the saved model evaluates to the recorded accuracies
    record = json.loads(path.read_text())
    forged = json.loads(json.dumps(record))
    forged["epochs"][-1]["test"]["student_0"]["acc"] = 0.99  # epoch, summary and sidecar forged alike
    forged["summary"]["student_0"].update(final_acc=0.99, best_acc=0.99)
    path.write_text(json.dumps(forged))
    cells = json.loads(sidecar.read_text())
    cells["cells"][LEGACY_CELL]["runs"][0]["value"] = cells["cells"][LEGACY_CELL]["mean"] = 0.99
    sidecar.write_text(json.dumps(cells))
    assert audit() == []  # consistent numbers, and a record of rdml.run/1 has no hash of its own …
    assert any("evaluates to accuracy" in p for p in audit(evaluate=True))  # … but the model does not say 0.99
    path.write_text(json.dumps({**record, "summary": forged["summary"]}))
    assert any("summary does not follow from the recorded epochs" in p for p in audit())
    path.write_text(path.read_text()[:100])
    assert any("is not a readable run record" in p for p in audit())
    sidecar.write_text(sidecar.read_text()[:50])
    with pytest.raises(ConfigError, match="is not a readable table sidecar"):
        audit()
