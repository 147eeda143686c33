"""A run depends on the code it runs (rdml.code, rdml.dependencies): each edit below is made in a copy
of the package, and the identities of a few paper runs are compared before and after, computed by that
copy itself (its registries and its files) in a fresh interpreter."""

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rdml.code import PACKAGE, code_identity, module_closure, module_path
from rdml.dependencies import data_code, reporting_code, training_code

RUNS = {
    "cifar DML": ("dml", ("resnet32", "resnet32"), "cifar100"),
    "cifar RDML, mixed": ("dml", ("resnet32", "wrn_28_10"), "cifar100"),
    "cifar KD": ("kd", ("resnet32",), "cifar100", ("wrn_28_10",)),
    "cifar Ind.": ("independent", ("resnet32",), "cifar100"),
    "digits teacher": ("teacher", ("cnn_wide",), "digits"),
    "text DML": ("dml", ("fasttext", "fasttext"), "ag_news"),
    "OKDPH limited data": ("okdph", ("okdph_resnet32", "okdph_resnet32"), "cifar10_10"),
}
TEXT_RUNS = {"text DML"}
DML_RUNS = {"cifar DML", "cifar RDML, mixed", "text DML"}


@pytest.fixture
def package(tmp_path) -> Path:
    copy = tmp_path / "rdml"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def identities(base: Path) -> dict[str, str]:
    """Each run's training code identity, as the rdml package at `base` computes it."""
    code = ("import json, sys\nfrom rdml.dependencies import training_code\n"
            "print(json.dumps({name: training_code(*run).sha256 for name, run in json.loads(sys.argv[1]).items()}))")
    env = {**os.environ, "PYTHONPATH": str(base.parent)}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(RUNS)], cwd=base.parent, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + textwrap.dedent(text))


def test_the_copy_has_the_identities_of_the_package(package):
    assert identities(package) == {name: training_code(*run).sha256 for name, run in RUNS.items()}


def test_comments_docstrings_and_reformatting_change_no_identity(package):
    before = identities(package)
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):  # every docstring rewritten
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                body[0].value.value = "Another docstring."
        path.write_text("# a new comment\n" + ast.unparse(tree) + "\n\n# the end\n")  # reformatted as ast writes it
    assert identities(package) == before


def test_a_new_method_module_and_its_registration_line_retrain_nothing(package):
    before = identities(package)
    (package / "methods/throwaway.py").write_text(textwrap.dedent('''
        from rdml.methods.base import METHODS, Method

        @METHODS.register("throwaway")
        class Throwaway(Method):
            name = "throwaway"

            @classmethod
            def label(cls, alpha):
                return "T"

            def train_step(self, x, y, cohort):
                return []
    '''))
    init = package / "methods/__init__.py"
    init.write_text(init.read_text() + "from rdml.methods import throwaway  # noqa: F401\n")
    assert identities(package) == before


def test_a_new_architecture_and_a_new_data_set_retrain_nothing(package):
    before = identities(package)
    (package / "models/zoo/tiny.py").write_text("def tiny(input_shape, num_classes):\n    raise NotImplementedError\n")
    append(package / "models/catalog.py", 'ARCHITECTURES.add("tiny", Architecture("tiny", "zoo.tiny:tiny"))\n')
    append(package / "data/catalog.py", '_images("tiny_svhn", "generated", 10, (3, 32, 32))\n')
    assert identities(package) == before


def test_an_edit_of_the_text_loader_retrains_only_the_text_runs(package):
    before = identities(package)
    append(package / "data/text.py", "\n\ndef _lower(text):\n    return text.lower()\n")
    assert changed(before, identities(package)) == TEXT_RUNS
    assert data_code("ag_news", package) != data_code("ag_news") and data_code("cifar100", package) == data_code("cifar100")


def test_an_edit_of_the_dml_loss_retrains_exactly_the_runs_that_use_it(package):
    before = identities(package)
    path = package / "core/mutual.py"  # DML eq. 10, RDML eq. 3.3
    source = path.read_text()
    tree = ast.parse(source)
    [function] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "mutual_terms"]
    lines = source.splitlines(keepends=True)
    body_start = function.body[1 if ast.get_docstring(function) else 0].lineno - 1
    indent = lines[body_start][: len(lines[body_start]) - len(lines[body_start].lstrip())]
    lines.insert(body_start, f"{indent}weight = weight * 1.0\n")
    path.write_text("".join(lines))
    assert changed(before, identities(package)) == DML_RUNS


def test_an_edit_of_a_catalogue_entry_reruns_the_runs_that_use_it(package):
    before = identities(package)
    catalog = package / "models/catalog.py"
    catalog.write_text(catalog.read_text().replace('"wrn_28_10": "zoo.wrn:wrn_28_10"', '"wrn_28_10": "zoo.wrn:wrn_20_8"'))
    assert changed(before, identities(package)) == {"cifar RDML, mixed", "cifar KD"}


def test_a_table_edit_retrains_nothing_and_reruns_the_tables(package):
    before = identities(package)
    append(package / "report/table.py", "\n\ndef _unused():\n    return 0\n")
    assert identities(package) == before and reporting_code(package) != reporting_code(PACKAGE)


def test_imports_inside_functions_are_followed_and_package_names_to_their_module(package):
    (package / "core/extra.py").write_text("VALUE = 1\n")
    (package / "core/user.py").write_text("def f():\n    from rdml.core.extra import VALUE\n    return VALUE\n")
    (package / "core/reexport.py").write_text("from rdml.models import build_model\n")
    assert "rdml.core.extra" in module_closure(["rdml.core.user"], package)
    reached = module_closure(["rdml.core.reexport"], package)
    assert "rdml.models.build" in reached and "rdml.models" not in reached  # the __init__ only re-exports
    assert "rdml.methods.okdph" not in module_closure(["rdml.train.loop"], package)


def test_an_import_relative_to_a_package_is_refused(package):
    (package / "core/relative.py").write_text("from .losses import UNLABELLED\n")
    with pytest.raises(ValueError, match="relative import"):
        code_identity(["rdml.core.relative"], base=package)
