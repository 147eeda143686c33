"""What produced a run, for its record: the code (git commit, dirty flag, source hash) and the
environment (python, torch, device, threads, host, and the numerics torch's switches give its kernels)."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from pathlib import Path

import torch

import rdml
from rdml.io import sha256_file
from rdml.train.execution import numerics

__all__ = ["code_provenance", "environment", "cpu_name", "source_tree_sha256"]


def package_dir() -> Path:
    return Path(rdml.__file__).resolve().parent


def source_tree_sha256() -> str:
    """Hash of every .py file of the rdml package (names and bytes), where it is imported from: which
    source tree ran, for the audit (a run's identity is the narrower rdml.dependencies.training_code)."""
    base = package_dir()
    digest = hashlib.sha256()
    for file in sorted(base.rglob("*.py")):
        digest.update(file.relative_to(base).as_posix().encode() + b"\0" + sha256_file(file).encode() + b"\n")
    return digest.hexdigest()


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(package_dir()), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def code_provenance() -> dict:
    """Git commit and dirty flag of the checkout rdml runs from (null outside git), and the src hash."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "rdml_version": rdml.__version__,
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "src_sha256": source_tree_sha256(),
    }


def environment(device: torch.device) -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "executable": sys.executable,
        "numerics": numerics(device),  # read back from torch: what ran, whatever the keys asked
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
