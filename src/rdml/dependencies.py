"""Which code each result of the pipeline runs: the roots and catalogue entries that rdml.code turns
into an identity. Torch-free, so that planning computes every job's identity without it.

- a training run: the training loop, its method's module (and those of the classes it derives from),
  the builder modules of its architectures and of its teacher's, its data set's reader and those of
  what that set reads (a parent set), plus the catalogue entries of all of these;
- a measurement (DML §4.8 analyses): the same, plus the analysis code;
- a prepared data set or resource: the shared data code and its reader (or fetcher);
- published weights: the code that fetches them;
- a study's tables: the reporting code.
"""

from __future__ import annotations

from pathlib import Path

from rdml.code import CodeIdentity, code_identity
from rdml.data.catalog import DATASETS, KINDS, RESOURCES
from rdml.methods.base import METHODS
from rdml.models.catalog import ARCHITECTURES

__all__ = ["training_code", "measure_code", "data_code", "weights_code", "reporting_code",
           "TRAINER", "MEASURER", "DATA_LOADER", "WEIGHTS_FETCHER", "REPORTER"]

TRAINER = "rdml.train.loop"
MEASURER = "rdml.analysis.measure"
DATA_LOADER = "rdml.data.base"
WEIGHTS_FETCHER = "rdml.models.pretrained"
REPORTER = "rdml.report.write"


def _data(name: str) -> tuple[list[str], list[str]]:
    """The reader modules and catalogue entries of a data set (with what it reads) or a resource."""
    if name in RESOURCES:
        resource = RESOURCES[name]
        return [f"rdml.data.{resource.fetch.split(':')[0]}"], [repr(resource)]
    source = DATASETS[name]
    roots, entries = [f"rdml.data.{source.module}"], [repr(source), repr(KINDS[source.spec.kind])]
    for need in source.needs:
        more_roots, more_entries = _data(need)
        roots, entries = roots + more_roots, entries + more_entries
    return roots, entries


def _training(method: str, archs, dataset: str, teacher_archs) -> tuple[list[str], list[str]]:
    kind = METHODS[method]
    roots = [TRAINER, DATA_LOADER, *(c.__module__ for c in kind.__mro__ if c.__module__.startswith("rdml."))]
    entries = []
    for arch in (*archs, *teacher_archs):
        roots.append(f"rdml.models.{ARCHITECTURES[arch].builder.split(':')[0]}")
        entries.append(repr(ARCHITECTURES[arch]))
    data_roots, data_entries = _data(dataset)
    return roots + data_roots, entries + data_entries


# Each takes `base`, the rdml source folder to read (default: rdml.code.source_base()).


def training_code(method: str, archs, dataset: str, teacher_archs=(), base: Path | None = None) -> CodeIdentity:
    """What a training run executes; the run's code identity (its Snakemake parameter, DVC code stamp
    and checkpoint resume key)."""
    return code_identity(*_training(method, archs, dataset, teacher_archs), base=base)


def measure_code(method: str, archs, dataset: str, teacher_archs=(), base: Path | None = None) -> CodeIdentity:
    roots, entries = _training(method, archs, dataset, teacher_archs)
    return code_identity([MEASURER, *roots], entries, base)


def data_code(name: str, base: Path | None = None) -> CodeIdentity:
    roots, entries = _data(name)
    return code_identity([DATA_LOADER, *roots], entries, base)


def weights_code(base: Path | None = None) -> CodeIdentity:
    return code_identity([WEIGHTS_FETCHER], base=base)


def reporting_code(base: Path | None = None) -> CodeIdentity:
    return code_identity([REPORTER], base=base)
