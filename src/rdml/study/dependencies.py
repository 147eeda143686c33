"""Which code can change which result, so that a change reruns exactly what it can affect.

A trained model depends on the training code (core math, data, models, methods, the training loop
and the config); the prepared data on the data code; the tables on the study code. Snakemake sees
each part as a content hash (a rule parameter), DVC as directory and file dependencies: editing a
table layout rebuilds the tables and retrains nothing; editing a loss retrains every job.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rdml.io import sha256_file

__all__ = ["SOURCE", "DATA_CODE", "TRAINING_CODE", "REPORTING_CODE", "code_sha256"]

SOURCE = "src/rdml"
_BASE = ("__init__.py", "keys.py", "registry.py", "io.py")
DATA_CODE = (*_BASE, "data")
TRAINING_CODE = (*_BASE, "config.py", "core", "data", "models", "methods", "train")
REPORTING_CODE = (*_BASE, "paths.py", "config.py", "methods", "study")  # labels come from the methods


def code_paths(parts: tuple[str, ...], source: str = SOURCE) -> list[str]:
    """The parts as paths relative to the project root (what DVC lists as dependencies)."""
    return [f"{source}/{part}" for part in parts]


def code_sha256(parts: tuple[str, ...], root: str | Path = ".", source: str = SOURCE) -> str:
    """Hash of the names and contents of every .py file of the parts."""
    base = Path(root) / source
    digest = hashlib.sha256()
    for part in parts:
        path = base / part
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(base).as_posix().encode() + b"\0" + sha256_file(file).encode() + b"\n")
    return digest.hexdigest()
