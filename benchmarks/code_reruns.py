"""Which edit reruns how many training jobs of params.yaml's studies (all of them; their smoke variants left out).

Each edit is made in a copy of the rdml package; a job reruns when its code identity
(rdml.dependencies.training_code, what Snakemake and DVC see) changes. Before per-run identities,
every job hashed the bytes of the whole training code (core/, data/, models/, methods/, train/ and
config.py), so any edit there, a comment included, reran every job: that is the "before" column.
Planning only: no torch, a few seconds.

    .venv/bin/python benchmarks/code_reruns.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rdml.code import PACKAGE  # noqa: E402
from rdml.dependencies import training_code  # noqa: E402
from rdml.study.params import load_params  # noqa: E402
from rdml.study.plan import plan_jobs  # noqa: E402

TRAINING_FOLDERS = ("core", "data", "models", "methods", "train", "config.py")  # what every job hashed before


def append(text: str):
    return lambda path: path.write_text(path.read_text() + textwrap.dedent(text))


def replace(old: str, new: str):
    def edit(path: Path) -> None:
        source = path.read_text()
        assert old in source, f"{old!r} not in {path}"
        path.write_text(source.replace(old, new, 1))
    return edit


NEW_METHOD = '''
from rdml.methods.base import METHODS, Method


@METHODS.register("throwaway")
class Throwaway(Method):
    name = "throwaway"

    @classmethod
    def label(cls, keys):
        return "T"

    def train_step(self, x, y, cohort):
        return []
'''
# (what a user does, [(file, edit)], whether the old identity counted the file)
EDITS = [
    ("a docstring of data/text.py", [("data/text.py", replace('"""', '"""Reads Zhang et al.\'s corpora. ', ))], True),
    ("a comment in core/mutual.py (the DML loss)", [("core/mutual.py", append("# a comment\n"))], True),
    ("a new method (its module and the line that registers it)",
     [("methods/throwaway.py", lambda p: p.write_text(NEW_METHOD)),
      ("methods/__init__.py", append("from rdml.methods import throwaway  # noqa: F401\n"))], True),
    ("a new architecture (its module and its catalogue line)",
     [("models/zoo/tiny.py", lambda p: p.write_text("def tiny(input_shape, num_classes):\n    raise NotImplementedError\n")),
      ("models/catalog.py", append('ARCHITECTURES.add("tiny", Architecture("tiny", "zoo.tiny:tiny"))\n'))], True),
    ("an edit of the text loader's code (data/text.py)", [("data/text.py", append("\n\ndef _lower(text):\n    return text.lower()\n"))], True),
    ("an edit of the DML loss (core/mutual.py)", [("core/mutual.py", append("\n\ndef _unused():\n    return 0\n"))], True),
    ("an edit of the KD loss (core/distillation.py)", [("core/distillation.py", append("\n\ndef _unused():\n    return 0\n"))], True),
    ("an edit of the OKDPH method (methods/okdph.py)", [("methods/okdph.py", append("\n\ndef _unused():\n    return 0\n"))], True),
    ("an edit of the CIFAR ResNets (models/zoo/cifar_resnet.py)", [("models/zoo/cifar_resnet.py", append("\n\ndef _unused():\n    return 0\n"))], True),
    ("an edit of the training loop (train/loop.py)", [("train/loop.py", append("\n\ndef _unused():\n    return 0\n"))], True),
    ("an edit of a table layout (study/layouts/rdml.py)", [("study/layouts/rdml.py", append("\n\ndef _unused():\n    return 0\n"))], False),
]


def job_identities(jobs, base: Path) -> dict[str, str]:
    found = {}
    for study, job in jobs:
        run = job.runs[0]
        found[f"{study}/{job.id}"] = training_code(run.method, run.archs, run.dataset, run.teacher_archs, base=base).sha256
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/code_reruns.json"))
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    studies = [name for name in params["studies"] if not name.endswith("_smoke")]  # the paper studies, as params.yaml lists them
    jobs = [(study, job) for study in studies for job in plan_jobs(params, study)]
    reference = job_identities(jobs, PACKAGE)
    rows = []
    for what, edits, counted_before in EDITS:
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / "rdml"
            shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
            for file, edit in edits:
                edit(copy / file)
            after = job_identities(jobs, copy)
        rerun = sorted(job for job in reference if reference[job] != after[job])
        rows.append({"edit": what, "before": len(jobs) if counted_before else 0, "after": len(rerun),
                     "studies_rerun": sorted({job.split("/")[0] for job in rerun})})
    result = {"jobs": len(jobs), "studies": len(studies), "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"| edit | jobs rerun before | after (of {len(jobs)}) | studies it reaches |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['edit']} | {row['before']} | {row['after']} | {', '.join(row['studies_rerun']) or '–'} |")


if __name__ == "__main__":
    main()
