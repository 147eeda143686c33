"""The SLURM profile on a real cluster: a single-node SLURM started on this machine (tests/slurm_cluster.py).

The smoke study of test_pipeline, its KD table left out and DML Fig. 2b's layout with a distributed cohort added
(7 training jobs, one of two tasks), is built through `--profile workflow/profiles/slurm`
with the site values given on the command line as workflow/profiles/slurm/README.md documents them:
CPU partition `cpu`, training partition `gpu`. The node declares two fake GPUs as GRES, so slurmd sets
CUDA_VISIBLE_DEVICES for each GPU job as on a real GPU node; the jobs train on the CPU (torch sees no
CUDA device). Skips where SLURM cannot be installed or started (not root, no apt, no package
mirror, daemons that do not come up) and with RDML_SLURM_TEST=0. About two minutes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from itertools import combinations
from pathlib import Path

import pytest

from conftest import BIN, SMOKE, make_project
from slurm_cluster import CPU_PARTITION, GPU_PARTITION, Cluster, Unavailable, install
from rdml.study.params import load_params
from rdml.study.plan import plan_jobs

pytestmark = pytest.mark.system  # a real single-node SLURM cluster, ~2 min

PROFILE = "workflow/profiles/slurm"
# The site values, given the documented way (workflow/profiles/slurm/README.md).
SITE = ["--default-resources", f"slurm_partition={CPU_PARTITION}",
        "--set-resources", f"train_job:slurm_partition={GPU_PARTITION}", f"train_cohort_job:slurm_partition={GPU_PARTITION}",
        f"measure:slurm_partition={GPU_PARTITION}"]
# test_pipeline's smoke study without its KD table (a teacher's job before its students' is Snakemake's ordering,
# tested without SLURM), and with DML Fig. 2b's layout with a distributed column: one cohort job of two ranks, which
# SLURM runs as two tasks with a GPU each (train_cohort_job), beside the sequential run's ordinary job
SLURM_SMOKE = {**SMOKE, "studies": {"smoke": {
    **{k: v for k, v in SMOKE["studies"]["smoke"].items() if k not in ("kd_table", "teacher")},
    "update_order_table": {"arch": "mlp", "distributed": True}}}}
COHORT_JOB = "synthetic/dml-mlp+mlp-a1-distributed-s0"
# A cluster on this machine answers at once: poll every 2 s instead of the plugin's 40 s, and keep the
# SLURM logs of successful jobs for the failure messages.
TEST_CLUSTER = ["--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
                "--slurm-keep-successful-logs"]
BUILD_TIMEOUT, FAIL_TIMEOUT = 300, 150  # seconds; here the build takes 60–80 s, the failing run ~40 s


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.environ.get("RDML_SLURM_TEST", "1").strip() == "0":
        pytest.skip("RDML_SLURM_TEST=0")
    if not sys.platform.startswith("linux"):
        pytest.skip("the test cluster needs Linux")
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster (slurmd runs jobs as any user) needs root")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail("snakemake-executor-plugin-slurm is missing: pip install -e '.[test]'")
    try:
        install()
    except Unavailable as error:
        pytest.skip(f"SLURM cannot be installed here: {error}")
    except subprocess.TimeoutExpired as error:
        pytest.skip(f"installing SLURM took too long: {error}")
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except Unavailable as error:
        cluster.stop()
        pytest.skip(f"SLURM did not start here: {error}")
    yield cluster
    forced = cluster.stop()
    assert not cluster.gone(), f"daemons still running after the test: {cluster.gone()}"
    assert not forced, f"daemons that ignored SIGTERM and were killed: {forced}"


def snakemake(cluster: Cluster, project: Path, *args: str, timeout: float, path: list[Path] = ()) -> subprocess.CompletedProcess:
    """`snakemake ARGS` in `project` against `cluster`; a run that outlives `timeout` fails the test."""
    env = {**cluster.env, "OMP_NUM_THREADS": "1"}
    # the jobs run `rdml` from PATH (sbatch --export=ALL): the test's srun first, then `path`, then the venv
    env["PATH"] = os.pathsep.join([str(cluster.bin), *map(str, path), str(BIN), os.environ.get("PATH", os.defpath)])
    command = [str(BIN / "snakemake"), *args]
    process = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        cluster.run("scancel", "--full", "--user", str(os.geteuid()), check=False)
        pytest.fail(f"snakemake did not end within {timeout} s (hangs?):\n{out[-6000:]}\n{queue_text(cluster)}\n{cluster.logs()}")
    return subprocess.CompletedProcess(command, process.returncode, out, "")


def queue_text(cluster: Cluster) -> str:
    return cluster.run("squeue", "--states=all", "-o", "%i|%T|%P|%S|%e|%k", check=False).stdout


def slurm_jobs(cluster: Cluster) -> dict[str, dict]:
    """Every job slurmctld still knows (finished ones for MinJobAge), by job id: `scontrol show job` fields."""
    out = cluster.run("scontrol", "-o", "show", "job").stdout
    jobs = [dict(re.findall(r"(?:^|\s)([\w:/]+)=(\S*)", line)) for line in out.splitlines() if line.startswith("JobId=")]
    return {job["JobId"]: job for job in jobs}


def comment_of(job_id: str) -> str:
    """What the plugin writes into a training job's SLURM comment (its rule and wildcards)."""
    rule = "train_cohort_job" if job_id == COHORT_JOB else "train_job"
    return f"rule_{rule}_wildcards_smoke_{job_id.replace('/', '_')}"


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


class Built:
    def __init__(self, project: Path, result: subprocess.CompletedProcess, seconds: float, jobs: dict):
        self.project, self.result, self.seconds, self.jobs = project, result, seconds, jobs

    def why(self, cluster: Cluster) -> str:
        return f"{self.result.stdout[-6000:]}\n{queue_text(cluster)}\n{cluster.logs()}"


@pytest.fixture(scope="module")
def built(cluster, tmp_path_factory):
    """The smoke study's tables built through the SLURM profile (all_tables), once for this module."""
    project = make_project(tmp_path_factory.mktemp("project"), SLURM_SMOKE)
    before = set(slurm_jobs(cluster))
    started = time.monotonic()
    result = snakemake(cluster, project, "all_tables", "--profile", PROFILE, *SITE, *TEST_CLUSTER, timeout=BUILD_TIMEOUT)
    seconds = time.monotonic() - started
    jobs = {k: v for k, v in slurm_jobs(cluster).items() if k not in before}
    return Built(project, result, seconds, jobs)


def planned_jobs(project: Path):
    return {job.id: job for job in plan_jobs(load_params(project / "params.yaml"), "smoke")}


def test_the_profile_builds_the_smoke_tables_on_slurm(built, cluster):
    assert built.result.returncode == 0, built.why(cluster)
    tables = built.project / "results/smoke/tables"
    for name in ("rdml_table", "pair_table", "update_order_table"):
        for suffix in ("md", "tex", "csv", "cells.json"):
            assert (tables / f"{name}.{suffix}").is_file(), f"{name}.{suffix} missing\n{built.why(cluster)}"
    assert (built.project / "results/smoke/summary.json").is_file()
    print(f"SLURM build of the smoke study: {built.seconds:.0f} s")


def test_each_training_job_was_one_slurm_gpu_job_in_the_training_partition(built, cluster):
    """Every planned job ran as its own SLURM job, in the `gpu` partition, asking one GPU, and completed;
    prepare_data and tables (localrules) ran on the submitting host, never as SLURM jobs."""
    assert built.result.returncode == 0, built.why(cluster)
    expected = {comment_of(job_id) for job_id in planned_jobs(built.project)}
    assert len(expected) == 7 and comment_of(COHORT_JOB) in expected
    comments = [job.get("Comment") for job in built.jobs.values()]
    assert sorted(comments) == sorted(expected), f"SLURM jobs {comments}, expected one per training job\n{built.why(cluster)}"
    for job in built.jobs.values():
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert job["Partition"] == GPU_PARTITION, job
        asked = [job[key] for key in ("TresPerJob", "TresPerNode") if key in job]  # --gpus=N / --gres=gpu:N
        gpus = 2 if job["Comment"] == comment_of(COHORT_JOB) else 1  # the cohort: a GPU per student, a task each
        assert len(asked) == 1 and re.fullmatch(rf"gres[:/]gpu:{gpus}", asked[0]), f"not {gpus} GPUs: {job}"
        assert job["NumTasks"] == str(gpus), job
    assert "localrule prepare_data" in built.result.stdout and "localrule tables" in built.result.stdout


def test_gpu_jobs_that_ran_at_the_same_time_had_distinct_devices(built, cluster):
    """Each run's record says which CUDA_VISIBLE_DEVICES its job inherited (rdml keeps what SLURM set;
    the test's environment has none, so it can only come from slurmd). Two SLURM jobs whose allocations
    overlapped in time (slurmctld's StartTime/EndTime, whole seconds, compared strictly: one that starts
    in the second another ends is not counted) held GRES at once, so their devices differ; at least one
    such pair exists (2 CPUs, 2 GPUs, 7 jobs ready at once), and both devices were used."""
    assert built.result.returncode == 0, built.why(cluster)
    plan = planned_jobs(built.project)
    by_comment = {comment_of(job_id): job_id for job_id in plan}
    device, interval = {}, {}
    for slurm_id, job in built.jobs.items():
        assert job.get("Comment") in by_comment, f"a SLURM job that is no planned training job: {job}"
        job_id = by_comment[job["Comment"]]
        if job_id == COHORT_JOB:  # both GPUs (test_a_distributed_cohort_ran_as_two_slurm_tasks...)
            continue
        slots = set()
        for run in plan[job_id].runs:
            record = json.loads((Path(built.project) / run.directory / "record.json").read_text())
            assert record["status"] == "ok"
            slots.add(record["environment"]["gpu_slot"])
        assert len(slots) == 1, slots
        slot = slots.pop()
        match = re.fullmatch(r"inherited CUDA_VISIBLE_DEVICES=(\d+)", slot)
        assert match, f"job {job_id} (SLURM {slurm_id}) did not get a GPU from SLURM: gpu_slot={slot!r}"
        device[job_id] = match.group(1)
        interval[job_id] = (when(job["StartTime"]), when(job["EndTime"]))
    assert set(device.values()) == {"0", "1"}, device
    concurrent = [(a, b) for a, b in combinations(sorted(device), 2)
                  if interval[a][0] < interval[b][1] and interval[b][0] < interval[a][1]]
    assert concurrent, f"no two GPU jobs ran at the same time: {interval}"
    clashes = [(a, b, device[a]) for a, b in concurrent if device[a] == device[b]]
    assert not clashes, f"jobs that ran at the same time on the same device: {clashes}"


def test_a_failing_job_ends_the_workflow_with_an_error_instead_of_hanging(built, cluster, tmp_path):
    """One training job is made to fail (an `rdml` ahead of the real one on PATH exits 3 for `rdml
    pipeline run`; the jobs inherit PATH). Snakemake, through the profile's squeue status command, sees
    the SLURM job FAILED and exits non-zero well within the timeout; nothing is left in the queue."""
    assert built.result.returncode == 0, built.why(cluster)
    job_id = "synthetic/dml-mlp+mlp-a2-s0"
    assert job_id in planned_jobs(built.project)
    failing = tmp_path / "bin"
    failing.mkdir()
    (failing / "rdml").write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "pipeline run" ]; then echo "rdml: this training job fails on purpose" >&2; exit 3; fi\n'
        f'exec {BIN / "rdml"} "$@"\n')
    os.chmod(failing / "rdml", 0o755)
    before = set(slurm_jobs(cluster))
    started = time.monotonic()
    result = snakemake(cluster, built.project, "all_tables", "--profile", PROFILE, *SITE, *TEST_CLUSTER,
                       "--forcerun", f"results/smoke/jobs/{job_id}.json", timeout=FAIL_TIMEOUT, path=[failing])
    seconds = time.monotonic() - started
    assert result.returncode != 0, result.stdout[-6000:]
    new = {k: v for k, v in slurm_jobs(cluster).items() if k not in before}
    assert [job["Comment"] for job in new.values()] == [comment_of(job_id)], new
    (slurm_id, job), = new.items()
    assert job["JobState"] == "FAILED" and job["ExitCode"] != "0:0", job
    assert f"SLURM-job '{slurm_id}' failed" in result.stdout, result.stdout[-6000:]
    left = cluster.run("squeue", "-h", "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING").stdout.strip()
    assert not left, f"jobs left in the queue: {left}"
    print(f"failing job detected and the workflow ended after {seconds:.0f} s")


def test_a_distributed_cohort_ran_as_two_slurm_tasks_each_on_its_own_gpu_and_equals_the_one_process_run(built, cluster):
    """The cohort job's ranks were two tasks of one srun step (SLURM_PROCID 0 and 1), each given its own GPU by
    slurmd (CUDA_VISIBLE_DEVICES 0 and 1); rank 0 wrote the record, whose epochs and weights equal the
    simultaneous one-process DML run's of the same study (gloo on CPU: bit for bit)."""
    import torch

    assert built.result.returncode == 0, built.why(cluster)
    plan = planned_jobs(built.project)
    [run] = plan[COHORT_JOB].runs
    record = json.loads((built.project / run.directory / "record.json").read_text())
    assert record["status"] == "ok" and record["config"]["distributed"] is True
    ranks = record["environment"]["distributed"]
    assert (ranks["ranks"], ranks["launcher"], ranks["backend"]) == (2, "srun", "gloo"), ranks
    assert [p.get("slurm_procid") for p in ranks["placement"]] == [0, 1], ranks
    assert sorted(p["cuda_visible_devices"] for p in ranks["placement"]) == ["0", "1"], ranks
    [alone] = [r for job in plan.values() for r in job.runs
               if (r.method, r.archs, r.alpha, r.variant) == ("dml", ("mlp", "mlp"), 1.0, "")]
    expected = json.loads((built.project / alone.directory / "record.json").read_text())
    assert record["epochs"] == expected["epochs"]
    got, want = (torch.load(built.project / r.directory / "model.pt", weights_only=True)["states"] for r in (run, alone))
    assert all(torch.equal(a[k], b[k]) for a, b in zip(got, want) for k in a)
