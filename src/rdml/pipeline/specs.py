"""A training job's spec as a file: what Snakemake planned for the job, read by `rdml pipeline run --spec-file`.

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

__all__ = ["spec_file", "spec_text", "write_spec_files", "read_spec_file"]


def spec_file(study: str, job: str) -> str:
    """Where a job's spec is written, relative to the project root."""
    return f"results/{study}/specs/{job}.json"


def spec_text(spec: dict) -> str:
    """The spec as the rule's parameter holds it (sorted keys), so that the file and the parameter agree."""
    return json.dumps(spec, sort_keys=True)


def write_spec_files(jobs, root: str | Path = ".") -> int:
    """Write each job's spec file whose text differs (atomically: temp file, then rename); returns how many."""
    written = 0
    for job in jobs:
        path = Path(root) / spec_file(job.study, job.id)
        text = spec_text(job.spec()) + "\n"
        try:
            if path.read_text() == text:
                continue
        except (OSError, UnicodeDecodeError):
            pass
        atomic_write_bytes(path, text.encode())
        written += 1
    return written


def read_spec_file(path: str | Path, study: str, job: str) -> dict:
    """A job's spec from its file, refused (naming the file) unless it is the spec of `job` of `study`."""
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--spec-file {path}: not a readable job spec ({type(exc).__name__}: {exc})") from None
    if not isinstance(spec, dict) or (spec.get("study"), spec.get("job")) != (study, job) or not isinstance(spec.get("runs"), dict):
        got = (spec.get("job"), spec.get("study")) if isinstance(spec, dict) else (None, None)
        raise ConfigError(f"--spec-file {path} describes job {got[0]!r} of {got[1]!r}, not {job!r} of {study!r}")
    return spec
