"""Finished jobs whose runs were deleted on disk. A job file vouches for its runs and the tables for
every job; Snakemake reruns a job only when its own output (the job file) is missing, so a deleted run
would otherwise never come back. Planning finds such jobs and says so, touching nothing (a dry run, the
Snakefile being parsed); `rdml pipeline prune` removes their job files and their studies' tables, so
that the next `snakemake all_tables` rebuilds both (`make run` prunes first)."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from rdml import paths
from rdml.study.plan import plan_jobs
from rdml.study.runs import Job

__all__ = ["RUN_FILES", "stale_jobs", "prune_stale_jobs"]

RUN_FILES = ("record.json", "model.pt")  # what a finished run keeps


def stale_jobs(jobs: Iterable[Job]) -> list[Job]:
    """Of planned jobs, those with a job file on disk and a run lacking its record or its weights."""
    return [job for job in jobs if Path(job.file).is_file()
            and not all((Path(run.directory) / name).is_file() for run in job.runs for name in RUN_FILES)]


def prune_stale_jobs(params: dict, studies: list[str]) -> list[str]:
    """Remove the job file of every stale job of the studies and its study's tables; returns what was removed."""
    removed = []
    for job in stale_jobs(job for study in studies for job in plan_jobs(params, study)):
        Path(job.file).unlink()
        removed.append(job.file)
        tables = Path(paths.tables_dir(job.study))
        if tables.is_dir():
            shutil.rmtree(tables)
            removed.append(str(tables))
    return removed
