"""benchmarks/gpu_packing.py: each packed job trains as rdml's trainer would (its torch switches, precision and
layout) and reports its peak GPU memory; the CUDA case skips without a device (gpu_check's cuda_tests runs it)."""

import importlib.util

import pytest
import torch

from conftest import REPO
from rdml.train.execution import CUBLAS, Execution

SPEC = importlib.util.spec_from_file_location("gpu_packing", REPO / "benchmarks" / "gpu_packing.py")
gpu_packing = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(gpu_packing)
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(autouse=True)
def switches_restored(monkeypatch):
    """After the test, torch's switches as a default CPU run leaves them (and CUBLAS_WORKSPACE_CONFIG as it was)."""
    monkeypatch.setenv(CUBLAS, "")
    monkeypatch.delenv(CUBLAS)
    yield
    Execution(CPU, "fp32", "contiguous", False, False).apply()


def test_a_packed_job_runs_under_the_trainers_switches_and_reports_its_memory():
    """The switches an earlier run of the process left (here: not deterministic) are set back as the job's keys
    ask, and the row gpu_check reads holds each job's rate and peak memory (none on a CPU)."""
    Execution(CPU, "fp32", "contiguous", False, False, deterministic=False).apply()
    jobs = [gpu_packing.job(2, 0.0, [], warm=1, batch=4)]
    assert jobs[0]["numerics"]["deterministic_algorithms"] is True  # the trainer's default
    assert jobs[0]["execution"]["precision"] == "fp32" and jobs[0]["numerics"]["float32_conv"] == "ieee"
    jobs.append(gpu_packing.job(2, 0.0, ["deterministic=false"], warm=1, batch=4))
    assert jobs[1]["numerics"]["deterministic_algorithms"] is False
    row = gpu_packing.packed_row(jobs)
    assert row["jobs_per_gpu"] == 2 and row["images_per_s_total"] == sum(j["images_per_second"] for j in jobs) > 0
    assert row["max_memory_allocated_mb_each"] == [None, None]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_packed_cuda_job_runs_fp32_without_tf32_and_reports_its_peak_memory():
    Execution(CUDA, "tf32", "contiguous", False, False, deterministic=False).apply()  # torch's own default: TF32 convs
    report = gpu_packing.job(1, 0.0, ["precision=fp32", "memory_format=contiguous"], warm=1)
    assert (report["numerics"]["float32_matmul"], report["numerics"]["float32_conv"]) == ("ieee", "ieee")
    assert report["numerics"]["deterministic_algorithms"] is True
    assert report["max_memory_allocated_mb"] > 0
    default = gpu_packing.job(1, 0.0, [], warm=1)  # this device's defaults: what a study's run gets
    assert default["execution"]["memory_format"] == "channels_last" and default["max_memory_allocated_mb"] > 0
