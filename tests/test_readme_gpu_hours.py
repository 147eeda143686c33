"""The README's GPU-hour column says what each figure is: measured by `make gpu-check` on a GPU (its
committed JSON, benchmarks/results/gpu_check_<gpu>.json) or an estimate, labelled so."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_gpu_hours(text: str) -> dict[str, str]:
    """The studies table's GPU-hour cell by each study named in its first column."""
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    header = next(line for line in text.splitlines() if line.startswith("| study |"))
    assert header.rstrip(" |").endswith("GPU-hours"), header
    cells = {}
    for row in rows:
        parts = [p.strip() for p in row.strip().strip("|").split(" | ")]
        for study in re.findall(r"`([a-z0-9_]+)`", parts[0]):
            cells[study] = parts[-1]
    return cells


def measured(results: Path) -> dict[str, tuple[float, str]]:
    """GPU-hours per study from every committed gpu-check JSON of a GPU (not the CPU mode's)."""
    found = {}
    for path in sorted(results.glob("gpu_check_*.json")):
        check = json.loads(path.read_text())
        device = check["what_ran"]["device"]
        if not check["what_ran"].get("cuda_available") or check.get("mode") != "full":
            continue
        for study, hours in ((check.get("gpu_hours") or {}).get("studies") or {}).items():
            if hours.get("gpu_hours") is not None:
                found[study] = (hours["gpu_hours"], device)
    return found


def problems(cells: dict[str, str], found: dict[str, tuple[float, str]]) -> list[str]:
    wrong = []
    for study, cell in cells.items():
        if study in found:
            hours, device = found[study]
            if f"{hours:.0f}" not in cell.replace(",", "") or f"measured on {device}" not in cell:
                wrong.append(f"{study}: README says {cell!r}; gpu-check measured {hours:.1f} GPU-hours on {device}")
        elif "estimate" not in cell and not cell.startswith("CPU"):
            wrong.append(f"{study}: {cell!r} is neither measured by a committed gpu-check nor labelled an estimate")
    return wrong


def test_the_readme_gpu_hours_follow_the_committed_gpu_checks():
    cells = readme_gpu_hours((REPO / "README.md").read_text())
    assert len(cells) >= 10, cells
    assert problems(cells, measured(REPO / "benchmarks" / "results")) == []


@pytest.mark.parametrize("study,cell,wrong", [
    ("other", "~270 (estimate)", False), ("other", "CPU, ~2 min", False), ("other", "~270", True),
    ("measured_study", "312 (measured on NVIDIA H100 80GB HBM3)", False),
    ("measured_study", "~270 (estimate)", True), ("measured_study", "312 (measured on NVIDIA A100)", True)])
def test_a_measured_study_must_show_the_measurement_and_an_estimate_must_say_so(tmp_path, study, cell, wrong):
    (tmp_path / "gpu_check_nvidia_h100.json").write_text(json.dumps({
        "mode": "full", "what_ran": {"device": "NVIDIA H100 80GB HBM3", "cuda_available": True},
        "gpu_hours": {"studies": {"measured_study": {"gpu_hours": 312.2}}}}))
    (tmp_path / "gpu_check_cpu.json").write_text(json.dumps({  # the CPU mode measures nothing for the README
        "mode": "quick", "what_ran": {"device": "cpu", "cuda_available": False},
        "gpu_hours": {"studies": {"other": {"gpu_hours": 0.01}}}}))
    assert bool(problems({study: cell}, measured(tmp_path))) == wrong
