"""How many NVIDIA GPUs this host has, asked of nvidia-smi: planning refuses a CUDA run on a host
without one (rdml.study.plan) and the pipeline's jobs take one each (rdml.pipeline.slots), so the count
lives below both."""

from __future__ import annotations

import shutil
import subprocess

__all__ = ["count_gpus"]


def count_gpus() -> int:
    """Visible NVIDIA GPUs, asked of nvidia-smi so that CUDA itself is not initialised yet."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in result.stdout.splitlines() if line.startswith("GPU "))
