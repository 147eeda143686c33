"""A job's spec as a file: what Snakemake planned for it, read by `rdml pipeline run --spec-file` (a training job),
`rdml pipeline measure --spec-file` (a measurement) and `rdml tables --spec-file` (the study's section).

The spec (rdml.study.runs.Job.spec: every key of every run) is up to ~1.6 KB of JSON; as a command-line
argument it filled the console once per job. Snakemake writes each planned job's spec here when it starts
(`onstart`, workflow/rules/common.smk), atomically and only where the text changed, and the shell command
names the file. What reruns a job is unchanged: the spec is still the rule's `params.spec` (Snakemake
reruns a job whose parameters changed); the file is only how it travels, so its time stamp reruns nothing.
Torch-free: the Snakefile imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

from rdml.io import atomic_write_bytes
from rdml.keys import ConfigError

__all__ = ["spec_file", "tables_spec_file", "measure_spec_file", "spec_text", "write_spec_files", "write_spec",
           "read_spec_file", "read_json_spec"]


def spec_file(study: str, job: str) -> str:
    """Where a training job's spec is written, relative to the project root (a job id starts with its data set)."""
    return f"results/{study}/specs/{job}.json"


def tables_spec_file(study: str) -> str:
    """Where the study's section, as Snakemake planned it, is written for `rdml tables`."""
    return f"results/{study}/specs/tables.json"


def measure_spec_file(study: str, run: str) -> str:
    """Where what to measure on one run is written for `rdml pipeline measure`."""
    return f"results/{study}/specs/measure/{run}.json"


def spec_text(spec: dict) -> str:
    """The spec as the rule's parameter holds it (sorted keys), so that the file and the parameter agree."""
    return json.dumps(spec, sort_keys=True)


def write_spec(path: str | Path, spec: dict) -> bool:
    """Write one spec file where its text differs (atomically: temp file, then rename); whether it was written."""
    path, text = Path(path), spec_text(spec) + "\n"
    try:
        if path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_bytes(path, text.encode())
    return True


def write_spec_files(jobs, root: str | Path = ".") -> int:
    """Write each training job's spec file whose text differs; returns how many."""
    return sum(write_spec(Path(root) / spec_file(job.study, job.id), job.spec()) for job in jobs)


def read_json_spec(path: str | Path, option: str = "--spec-file") -> dict:
    """A spec file's object, or a ConfigError naming the file."""
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{option} {path}: not a readable spec ({type(exc).__name__}: {exc})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{option} {path}: holds {type(spec).__name__}, not a JSON object")
    return spec


def read_spec_file(path: str | Path, study: str, job: str) -> dict:
    """A job's spec from its file, refused (naming the file) unless it is the spec of `job` of `study`."""
    spec = read_json_spec(path)
    if (spec.get("study"), spec.get("job")) != (study, job) or not isinstance(spec.get("runs"), dict):
        got = (spec.get("job"), spec.get("study"))
        raise ConfigError(f"--spec-file {path} describes job {got[0]!r} of {got[1]!r}, not {job!r} of {study!r}")
    return spec
