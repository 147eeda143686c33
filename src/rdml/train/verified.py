"""A finished run read back to be used: a KD teacher, `rdml eval`, the analyses' measurements.

`verified_run` accepts a run directory written by `rdml train` (or the model.pt inside one) only when
its record.json is sealed and consistent, its status is one the reader accepts (`ok` for a teacher or an
evaluation), and its model.pt is the weights the record names and an rdml model file. The file is read
once: the bytes hashed are the bytes loaded. Every refusal is a ConfigError that names the file and the
problem after the reader's own prefix (`teacher=PATH: `, `rdml eval: `), so that no reader rewrites
another's messages. The checks themselves are `rdml.train.integrity.run_problems` (torch-free), which
the training loop, the tables and the audit apply to records they do not load.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rdml.data.base import Dataset
from rdml.io import sha256_bytes
from rdml.keys import ConfigError
from rdml.models import ARCHITECTURES, build_model
from rdml.train.integrity import model_path, read_record, run_problems

__all__ = ["MODEL_FORMAT", "EXPECTED", "VerifiedRun", "verified_run"]

MODEL_FORMAT = "rdml.models/1"  # model.pt: final weights of every student (rdml.train.checkpoint.save_model)
MODEL_KEYS = ("dataset", "input_shape", "num_classes", "archs", "states")  # what every model file of the format holds
EXPECTED = "expected a run directory written by `rdml train` (record.json and model.pt) or the model.pt inside one"


@dataclass(frozen=True)
class VerifiedRun:
    """A run that passed every check: its directory, record, model file, the sha256 of that file and
    what it holds (format, dataset, input_shape, num_classes, outputs where not the classes, archs,
    states). `prefix`: the reader's, for the refusals of `model`."""

    directory: Path
    record: dict
    model_file: Path
    model_sha256: str
    saved: dict
    prefix: str

    @property
    def archs(self) -> list[str]:
        """The architecture of each model the file holds, in its order."""
        return self.saved["archs"]

    @property
    def outputs(self) -> int:
        """Each model's outputs: the data set's classes, or the published head's width where one was kept."""
        return self.saved.get("outputs", self.saved["num_classes"])

    def model(self, index: int, data: Dataset) -> nn.Module:
        """Student `index` rebuilt (on the CPU, in eval mode) for `data`, refused unless it was trained for
        that data set's name, input shape and classes and its weights fit its architecture."""
        saved, file = self.saved, self.model_file
        if saved.get("method"):
            raise ConfigError(f"{self.prefix}{file} holds the networks method {saved['method']} declares, not students "
                              "to read one by one (rdml.train.cohort.rebuild reads them)")
        archs = saved["archs"]
        if not 0 <= index < len(archs):
            raise ConfigError(f"{self.prefix}{file} holds {len(archs)} model(s), allowed 0..{len(archs) - 1}")
        if archs[index] not in ARCHITECTURES:
            raise ConfigError(f"{self.prefix}{file}: architecture {archs[index]!r} is unknown to this rdml")
        if saved.get("dataset") != data.name:
            raise ConfigError(f"{self.prefix}{file}: trained on dataset {saved.get('dataset')!r}, but this run uses {data.name!r}")
        if tuple(saved["input_shape"]) != tuple(data.spec.input_shape) or saved["num_classes"] != data.num_classes:
            raise ConfigError(
                f"{self.prefix}{file}: trained for input {tuple(saved['input_shape'])} and {saved['num_classes']} classes, "
                f"but dataset {data.name} has input {tuple(data.spec.input_shape)} and {data.num_classes} classes"
            )
        model = build_model(archs[index], data.spec, outputs=self.outputs, embeddings=getattr(data, "embeddings", None))
        try:
            model.load_state_dict(saved["states"][index])
        except RuntimeError as exc:
            raise ConfigError(f"{self.prefix}{file}: weights do not fit {archs[index]} ({exc})") from None
        return model.eval()


def verified_run(path: str | Path, prefix: str, statuses: tuple[str, ...] = ("ok",), *, unsealed: bool = False) -> VerifiedRun:
    """The run at `path` (a run directory, or the model file inside one its record names), checked as the
    module says, with `statuses` the ones the reader accepts (`unsealed`: a record of rdml.run/1, which
    predates seals, is accepted too, as the audit does); else a ConfigError `prefix` + what is wrong,
    every problem naming its file."""
    given = Path(path)
    run_dir = given if given.is_dir() else given.parent
    record_path = run_dir / "record.json"
    if not given.exists():
        raise ConfigError(f"{prefix}{given} does not exist; {EXPECTED}")
    if not given.is_dir() and given.name != "model.pt":
        raise ConfigError(f"{prefix}{given} is neither a directory nor a model.pt; {EXPECTED}")
    if not record_path.is_file():
        raise ConfigError(f"{prefix}no run record at {record_path}; {EXPECTED}")
    try:
        record = read_record(record_path)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}") from None
    model = model_path(run_dir, record)
    problems = []
    if given != run_dir and given.resolve() != model.resolve():
        problems.append(f"{given} is not the model file its record names ({model})")
    content = model.read_bytes() if model.is_file() and record.get("status") in statuses else None  # hashed, then loaded
    sha = None if content is None else sha256_bytes(content)
    problems += run_problems(run_dir, record, statuses, unsealed=unsealed, model_sha256=sha)
    if problems:
        raise ConfigError(prefix + "; ".join(problems))
    try:
        saved = torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise ConfigError(f"{prefix}{model} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(saved, dict) or saved.get("format") != MODEL_FORMAT or not all(k in saved for k in MODEL_KEYS):
        raise ConfigError(f"{prefix}{model} is not an rdml model file (expected format {MODEL_FORMAT})")
    return VerifiedRun(run_dir, record, model, sha, saved, prefix)
