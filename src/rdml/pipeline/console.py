"""What a person sees: rdml's console messages (stdlib `logging`, logger "rdml") and each job's log file.

The console gets one line per finished run and the study's progress after each job (INFO); a job's own
output (per-epoch lines, warnings, anything torch prints) goes to its log file,
`results/<study>/logs/<job>.log`, and reaches the console only at DEBUG (`rdml -v`). Parallel jobs then
no longer interleave hundreds of unlabelled lines, and a failed job's output is kept where Snakemake
names it (`log:` of workflow/rules/train.smk). Torch-free: `rdml status` reads the logs too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path

from rdml.io import utc_now

__all__ = ["LOGGER", "configure", "job_log", "job_output", "label_output", "ATTEMPT", "FAILED", "DONE", "last_attempt_failed"]

LOGGER = logging.getLogger("rdml")
# The lines a job writes into its log around its output, what `rdml status` reads: each attempt starts with
# ATTEMPT and ends with DONE or FAILED (a killed job ends with neither; it is pending, not failed).
ATTEMPT = "==== rdml job started"
DONE = "==== rdml job done"
FAILED = "==== rdml job failed"


def job_log(study: str, job: str) -> str:
    """A job's log file (training jobs and measuring jobs alike), relative to the project root."""
    return f"results/{study}/logs/{job}.log"


class _Console(logging.Handler):
    """Writes to the console as it is when the message is emitted: sys.stderr, or during a job
    (`job_output`) the terminal the job's output was taken from."""

    stream = None  # set by job_output while a job's stderr goes to its log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = _Console.stream or sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001  (logging's own contract: a broken console never ends the job)
            self.handleError(record)


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"rdml: {level}{record.getMessage()}"


def configure(verbosity: int = 0) -> None:
    """The console's level: INFO by default, DEBUG with -v (a job's per-epoch lines too), WARNING with -q,
    ERROR with -qq. Called once per command; calling it again replaces the handler."""
    level = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(max(verbosity, -2), logging.DEBUG)
    for handler in [h for h in LOGGER.handlers if isinstance(h, _Console)]:
        LOGGER.removeHandler(handler)
    handler = _Console()
    handler.setFormatter(_Format())
    handler.setLevel(level)
    LOGGER.addHandler(handler)
    LOGGER.setLevel(level)
    LOGGER.propagate = False


def console_shows(level: int) -> bool:
    """Whether the console shows messages of `level` (a job's log gets every level)."""
    consoles = [h for h in LOGGER.handlers if isinstance(h, _Console)]
    return any(level >= h.level for h in consoles) if consoles else level >= logging.WARNING


class _JobStream:
    """A job's sys.stdout and sys.stderr: everything into its log; at DEBUG, each line also to the console,
    labelled with the run it belongs to (`label`)."""

    def __init__(self, log, console):
        self.log, self.console, self.label, self._partial = log, console, "", ""

    def write(self, text: str) -> int:
        self.log.write(text)
        if self.console is not None and console_shows(logging.DEBUG):
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            for line in lines:
                self.console.write(f"rdml: {self.label}{line}\n" if line.strip() else "")
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        if self.console is not None:
            self.console.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.log.fileno()


_JOB_STREAMS: list[_JobStream] = []  # the job_output in effect, innermost last


def label_output(label: str) -> None:
    """Label what the job writes from now on (e.g. the run it trains) where it reaches the console (-v)."""
    if _JOB_STREAMS:
        _JOB_STREAMS[-1].label = f"{label}: " if label else ""


@contextlib.contextmanager
def job_output(log_path: str | Path, what: str):
    """Send a job's output to `log_path` (appended: each attempt starts with ATTEMPT) for the duration: Python's
    sys.stdout/sys.stderr and the file descriptors 1 and 2 (what torch's C++ side and child processes write),
    while rdml's console messages still reach the console and are copied into the log. Yields the job's
    stream (set its `label` to the run being trained). An exception is written into the log with its
    traceback and the FAILED line, then raised."""
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
    log.write(f"{ATTEMPT} {utc_now()}: {what}\n")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    console = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    streams = sys.stdout, sys.stderr
    into_log = logging.StreamHandler(log)
    into_log.setFormatter(_Format())
    into_log.setLevel(logging.DEBUG)
    job_stream = _JobStream(log, console)
    level = LOGGER.level
    try:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        sys.stdout = sys.stderr = job_stream
        _JOB_STREAMS.append(job_stream)
        _Console.stream = console
        LOGGER.addHandler(into_log)
        LOGGER.setLevel(logging.DEBUG)  # the log gets every level; the console handler keeps its own
        try:
            yield job_stream
        except BaseException as exc:
            log.write("".join(traceback.format_exception(exc)))
            log.write(f"{FAILED} {utc_now()}: {type(exc).__name__}: {exc}\n")
            raise
        log.write(f"{DONE} {utc_now()}\n")
    finally:
        if job_stream in _JOB_STREAMS:
            _JOB_STREAMS.remove(job_stream)
        LOGGER.removeHandler(into_log)
        LOGGER.setLevel(level)
        _Console.stream = None
        sys.stdout, sys.stderr = streams
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        console.close()
        log.close()


def last_attempt_failed(log_path: str | Path) -> bool:
    """Whether the last attempt a job's log holds ended with FAILED (a killed job's ended with neither
    FAILED nor DONE). Read-only; a missing or unreadable log says no."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 65536, 0))  # the last attempt's end is in the file's tail
            tail = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return False
    for line in reversed(tail):
        if line.startswith(FAILED):
            return True
        if line.startswith((DONE, ATTEMPT)):
            return False
    return False
