"""Which code can change which result, so that a change reruns exactly what it can affect, and the
content hashes that say whether it changed. Pure Python.

A trained model depends on the training code (core math, data, models, methods, the training loop
and the config); the prepared data on the data code; the tables on the study code. Snakemake sees
each part as a content hash (a rule parameter), DVC as directory and file dependencies, and a
checkpoint resumes only under the training code that wrote it: editing a table layout rebuilds the
tables and retrains nothing; editing a loss retrains every job.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rdml.io import sha256_file

__all__ = ["PACKAGE", "SOURCE", "DATA_CODE", "WEIGHTS_CODE", "TRAINING_CODE", "MEASURE_CODE", "REPORTING_CODE", "code_sha256", "code_paths"]

PACKAGE = Path(__file__).resolve().parent  # where rdml runs from
SOURCE = "src/rdml"  # where a project keeps it (what DVC lists)
_BASE = ("__init__.py", "keys.py", "registry.py", "io.py", "code.py")
DATA_CODE = (*_BASE, "data")
WEIGHTS_CODE = (*_BASE, "models/catalog.py", "models/pretrained.py")  # fetching published weights
TRAINING_CODE = (*_BASE, "config.py", "core", "data", "models", "methods", "train")
MEASURE_CODE = (*TRAINING_CODE, "analysis")  # measurements of trained models (DML §4.8 analyses)
REPORTING_CODE = (*_BASE, "paths.py", "config.py", "methods", "train/integrity.py", "study")  # labels, record checks


def code_paths(parts: tuple[str, ...], source: str = SOURCE) -> list[str]:
    """The parts as paths relative to the project root (what DVC lists as dependencies)."""
    return [f"{source}/{part}" for part in parts]


def code_sha256(parts: tuple[str, ...] | None = None, base: str | Path = PACKAGE) -> str:
    """Hash of the names and contents of every .py file of the parts (all of them: None) under `base`."""
    base = Path(base)
    digest = hashlib.sha256()
    for part in parts if parts is not None else ("",):
        path = base / part
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(base).as_posix().encode() + b"\0")
            digest.update(sha256_file(file).encode() + b"\n")
    return digest.hexdigest()
