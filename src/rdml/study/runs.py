"""A run's identity, defined once: the study, data set, method, architectures, α, seed, teacher and
every other training key. Its id, directory, metrics file and the name of its configuration all
follow from these fields; tables, jobs, DVC stages and the audit select runs by them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from rdml import paths
from rdml.code import CodeIdentity
from rdml.config import TrainConfig, config_from_mapping, config_sha256, resolve
from rdml.dependencies import training_code
from rdml.methods import METHODS

__all__ = ["Run", "Job"]


@dataclass(frozen=True)
class Run:
    study: str
    dataset: str
    method: str
    archs: tuple[str, ...]
    seed: int
    alpha: float | None = None  # None: a method that takes no α (its default applies)
    teacher: Run | None = None
    options: str = "{}"  # every other `rdml train` key of the run, as sorted JSON
    variant: str = ""  # names the keys a layout varies beyond these fields (e.g. the labelled fraction)
    params: tuple[str, ...] = field(default=(), compare=False)  # params.yaml keys whose values it uses

    @cached_property
    def keys(self) -> dict[str, Any]:
        """The `rdml train` keys of the run, its teacher excepted (see `train_keys`)."""
        keys = {**json.loads(self.options), "dataset": self.dataset, "method": self.method, "arch": list(self.archs),
                "seed": self.seed}
        return keys if self.alpha is None else {**keys, "alpha": self.alpha}

    def train_keys(self) -> dict[str, Any]:
        """Everything `rdml train` needs to train this run where the pipeline keeps it."""
        teacher = {"teacher": self.teacher.directory} if self.teacher else {}
        return {**self.keys, **teacher, "out": self.directory}

    @cached_property
    def config(self) -> TrainConfig:
        """The run's resolved training config (a ConfigError if its keys are not valid)."""
        return resolve(config_from_mapping(self.train_keys()))

    @cached_property
    def config_sha256(self) -> str:
        """The identity its record must carry."""
        return config_sha256(self.config)

    @cached_property
    def code(self) -> CodeIdentity:
        """The code the run executes (rdml.dependencies.training_code): what reruns it when edited."""
        return training_code(self.method, self.archs, self.dataset, self.teacher_archs)

    @property
    def teacher_archs(self) -> tuple[str, ...]:
        """The architecture of the teacher model it distils from (none without a teacher)."""
        return (self.teacher.archs[self.config.teacher_index],) if self.teacher else ()

    @property
    def configuration(self) -> str:
        """The name without its seed: what the runs of one job share."""
        name = f"{self.method}-{'+'.join(self.archs)}"
        if self.teacher:
            name += f"-from-{self.teacher.as_teacher}"
        if self.alpha is not None:
            name += f"-a{self.alpha:g}"
        return f"{name}-{self.variant}" if self.variant else name

    @property
    def name(self) -> str:
        return f"{self.configuration}-s{self.seed}"

    @property
    def as_teacher(self) -> str:
        tag = METHODS[self.method].tag
        tag = self.method if tag is None else tag
        return "-".join(filter(None, (tag, "+".join(self.archs))))

    @property
    def id(self) -> str:
        return f"{self.dataset}/{self.name}"

    @property
    def students(self) -> tuple[str, ...]:
        """The recorded outputs that are its cohort's members, as its method declares them (`student_k`, or e.g.
        a multi-branch network's branches): what a per-student cell averages."""
        return METHODS[self.method].members(self.config)

    @property
    def directory(self) -> str:
        return paths.run_dir(self.study, self.id)

    @property
    def metrics(self) -> str:
        return paths.metrics_file(self.study, self.id)


@dataclass(frozen=True)
class Job:
    """Runs of one configuration that differ only in their seed, trained one after the other in one process.

    Each job starts Python and torch once (about 3 s here, more than a whole run of the digits study),
    so small runs gain from sharing a job; a job is the unit Snakemake and DVC schedule and rerun.
    """

    study: str
    runs: tuple[Run, ...]

    @property
    def id(self) -> str:
        first = self.runs[0]
        return f"{first.dataset}/{first.configuration}-s{'+'.join(str(r.seed) for r in self.runs)}"

    @property
    def file(self) -> str:
        return paths.job_file(self.study, self.id)

    @property
    def ranks(self) -> int:
        """Processes (and GPUs) each of its runs trains with: one per student with distributed=true
        (rdml.train.distributed), else 1."""
        config = self.runs[0].config
        return config.students if config.distributed else 1

    @property
    def dataset(self) -> str:
        return self.runs[0].dataset

    @property
    def code(self) -> CodeIdentity:
        """The code its runs execute: one configuration, so one identity."""
        identities = {run.code for run in self.runs}
        if len(identities) != 1:
            raise ValueError(f"job {self.id}: its runs {', '.join(run.id for run in self.runs)} execute different code "
                             f"({len(identities)} identities); a job holds the seeds of one configuration")
        return identities.pop()

    @property
    def teachers(self) -> list[Run]:
        return sorted({r.teacher for r in self.runs if r.teacher}, key=lambda r: r.id)

    @property
    def weights(self) -> list[str]:
        """The architectures whose published weights its runs start from (`pretrained`)."""
        return sorted({arch for r in self.runs if r.keys.get("pretrained") for arch in r.archs})

    @property
    def params(self) -> list[str]:
        return sorted({p for r in self.runs for p in r.params})

    @property
    def stage(self) -> str:
        """A DVC stage name: letters, digits, '-' and '_' only."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", f"train-{self.study}-{self.id.replace('/', '-')}")

    def spec(self) -> dict:
        """What the job trains, exactly as planned: handed to `rdml pipeline run` by Snakemake."""
        return {"study": self.study, "job": self.id, "runs": {r.id: r.train_keys() for r in self.runs}}
