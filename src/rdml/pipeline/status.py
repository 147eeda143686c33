"""`rdml status STUDY`: how far a study is, when it may end, and the compute it has used, read from disk.

Read-only, so it can run while Snakemake or SLURM trains: the plan (rdml.study.plan.plan_jobs, from
params.yaml) says which runs the study wants; each run's state comes from its files.

- ok / diverged: its record.json says so (and was written for the planned configuration by the code the run
  executes now: after an edit that reruns it, a run is pending again, as Snakemake and DVC will see it);
- running: its directory's lock is held (rdml.train.loop takes it while training), or, where locks do not
  reach across hosts (some cluster file systems), its record was rewritten within two of its epochs;
  with epoch k of n from the record;
- failed: neither, and the last attempt in its job's log ended with the FAILED line (rdml.pipeline.console);
- pending: anything else (no directory, a record or checkpoint an interrupted job left, which resumes).

The time left is an estimate: the epochs left of the running and pending runs × the mean measured seconds
per epoch (total seconds over total epochs) of the finished runs of the same configuration (a job's
seeds), else of every finished run. It counts training epochs only (not a job's start-up or evaluation
outside epochs), one job at a time, and the failed runs not at all.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rdml.pipeline.console import job_log, last_attempt_failed

__all__ = ["RunState", "StudyStatus", "study_status", "read_record_retrying", "format_status", "format_seconds"]

FINISHED = ("ok", "diverged")
STATES = ("ok", "diverged", "running", "pending", "failed")
LOCK = ".rdml.lock"  # rdml.train.loop.LOCK


@dataclass(frozen=True)
class RunState:
    run: str
    job: str
    group: str  # the configuration its seeds share: whose measured epochs estimate its own
    state: str  # one of STATES
    epoch: int  # epochs its record holds
    epochs: int  # epochs planned
    seconds: float  # sum of its record's epoch_seconds (0 without a record)
    device: str | None  # its record's environment.device


@dataclass(frozen=True)
class StudyStatus:
    study: str
    runs: tuple[RunState, ...]

    def count(self, state: str) -> int:
        return sum(r.state == state for r in self.runs)

    def seconds_per_epoch(self) -> dict[str | None, float]:
        """The mean measured seconds per epoch of finished runs: by configuration group, and (key None) of all."""
        sums: dict[str | None, list[float]] = {}
        for r in self.runs:
            if r.state in FINISHED and r.epoch:
                for key in (r.group, None):
                    total = sums.setdefault(key, [0.0, 0])
                    total[0] += r.seconds
                    total[1] += r.epoch
        return {key: seconds / epochs for key, (seconds, epochs) in sums.items()}

    def estimate_seconds(self) -> float | None:
        """Seconds of training left, one job at a time (None: runs are left but none has finished yet)."""
        rates = self.seconds_per_epoch()
        left = 0.0
        for r in self.runs:
            if r.state in ("running", "pending"):
                rate = rates.get(r.group, rates.get(None))
                if rate is None:
                    return None
                left += max(r.epochs - r.epoch, 0) * rate
        return left

    def compute_hours(self) -> dict[str, float]:
        """Hours of training epochs recorded so far, "GPU" where the record's device is CUDA, else "CPU"."""
        hours: dict[str, float] = {}
        for r in self.runs:
            if r.seconds:
                kind = "GPU" if (r.device or "").startswith("cuda") else "CPU"
                hours[kind] = hours.get(kind, 0.0) + r.seconds / 3600
        return hours

    def to_json(self) -> dict:
        return {"study": self.study, "runs": len(self.runs), "counts": {s: self.count(s) for s in STATES},
                "running_jobs": len({r.job for r in self.runs if r.state == "running"}),
                "estimate_seconds_left": self.estimate_seconds(), "compute_hours": self.compute_hours(),
                "per_run": [asdict(r) for r in self.runs]}


def read_record_retrying(path: Path, tries: int = 5, wait: float = 0.05) -> dict | None:
    """A record.json, or None where there is none; one read while it is being replaced (records are written
    atomically, so that is rare) is tried again, and one never readable counts as {"status": "running"}."""
    for attempt in range(tries):
        try:
            record = json.loads(path.read_text())
            if isinstance(record, dict):
                return record
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass
        time.sleep(wait * (attempt + 1))
    return {"status": "running", "epochs": [], "epoch_seconds": []}


def lock_held(run_dir: Path) -> bool:
    """Whether a training process holds the run directory's lock (rdml.train.loop), tried without waiting.
    Opening the lock file read-only and taking a shared lock for an instant changes nothing on disk."""
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _recently_written(path: Path, record: dict, now: float) -> bool:
    """A record rewritten within two of its longest epochs (at least a minute): a run still training on a
    host whose lock this one cannot see."""
    try:
        age = now - path.stat().st_mtime
    except OSError:
        return False
    return age < max(2 * max(record.get("epoch_seconds") or [0]), 60)


def run_state(root: Path, study: str, job: str, run, job_failed: bool, now: float, code_sha256: str | None = None) -> RunState:
    """The state of one planned run (`run`: an rdml.study.runs.Run) from its files under `root`; `code_sha256`: the
    code the run executes now (rdml.dependencies.training_code), None to leave the code unchecked."""
    run_dir = root / run.directory
    record_path = run_dir / "record.json"
    record = read_record_retrying(record_path)
    recorded_code = (((record or {}).get("code") or {}).get("run") or {}).get("sha256")
    # A run of another configuration, or one whose code has since changed: the job trains it again.
    outdated = record is not None and (record.get("config_sha256") not in (None, run.config_sha256)
                                       or code_sha256 not in (None, recorded_code))
    seconds = float(sum(record.get("epoch_seconds") or [])) if record else 0.0
    device = ((record or {}).get("environment") or {}).get("device")
    epoch = 0 if record is None or outdated else len(record.get("epochs") or [])
    if record is not None and not outdated and record.get("status") in FINISHED:
        state = record["status"]
    elif lock_held(run_dir) or (record is not None and not outdated and _recently_written(record_path, record, now)):
        state = "running"
    elif job_failed:
        state = "failed"
    else:
        state = "pending"
    return RunState(run.id, job, f"{run.dataset}/{run.configuration}", state, epoch, run.config.epochs, seconds, device)


def study_status(params: dict, study: str, root: str | Path = ".") -> StudyStatus:
    """The state of every run the study plans (a ConfigError naming the study and those allowed if it is none)."""
    from rdml.study.plan import plan_jobs

    root, now = Path(root), time.time()
    states = []
    for job in plan_jobs(params, study):
        failed = last_attempt_failed(root / job_log(study, job.id))
        code = job.code.sha256
        states += [run_state(root, study, job.id, run, failed, now, code) for run in job.runs]
    return StudyStatus(study, tuple(states))


def format_seconds(seconds: float) -> str:
    if seconds < 9.5:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def format_progress(status: StudyStatus) -> str:
    """One line: runs done of planned, what is running, pending or failed, and the estimate of the time left."""
    done = status.count("ok") + status.count("diverged")
    parts = [f"{status.study}: {done} of {len(status.runs)} runs done"]
    parts += [f"{status.count(s)} {s}" for s in ("diverged", "running", "pending", "failed") if status.count(s)]
    left = status.estimate_seconds()
    if done < len(status.runs):
        parts.append("time left unknown (no run has finished yet)" if left is None
                     else f"about {format_seconds(left)} of training left (estimate)")
    return ", ".join(parts)


def format_status(status: StudyStatus) -> str:
    """The report `rdml status` prints."""
    lines = [format_progress(status)]
    for r in status.runs:
        if r.state == "running":
            lines.append(f"  running  {r.run}: epoch {r.epoch} of {r.epochs}")
    for r in status.runs:
        if r.state in ("failed", "diverged"):
            log = f" (log: {job_log(status.study, r.job)})" if r.state == "failed" else ""
            lines.append(f"  {r.state:8s} {r.run}{log}")
    left = status.estimate_seconds()
    if left is not None and status.count("running") + status.count("pending"):
        jobs = len({r.job for r in status.runs if r.state == "running"})
        parallel = f"; about {format_seconds(left / jobs)} with the {jobs} jobs running now" if jobs > 1 else ""
        lines.append(f"time left: about {format_seconds(left)} one job at a time{parallel} (estimate: epochs left × "
                     "the mean measured seconds per epoch of finished runs of the same configuration, else of all)")
    hours = status.compute_hours()
    used = ", ".join(f"{value:.3g} {kind}-hours" for kind, value in sorted(hours.items(), reverse=True)) or "none yet"
    lines.append(f"compute used: {used} (sum of the records' epoch seconds)")
    return "\n".join(lines)
