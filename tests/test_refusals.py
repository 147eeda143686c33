"""The class behind every refusal: a command that refuses leaves every existing output byte-identical.

One built project (the suite's small synthetic study, through Snakemake, with its DVC state), then
each bad input through every command that reads it: the run directories, records, models, tables,
curves, summary, dvc.yaml and dvc.lock must come out as they went in, whatever the command said.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import BIN, SMOKE, copy_project, sh

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.fault]  # each case: refused, nothing lost

KEPT = ("results", "dvc.yaml", "dvc.lock", "params.yaml")  # what a refused command must not touch


@pytest.fixture(scope="module")
def built(tmp_path_factory, smoke_build):
    """A copy of the session's smoke build (conftest.smoke_build: dvc_project(SMOKE), then `snakemake all_tables`)."""
    root = copy_project(smoke_build.root, tmp_path_factory.mktemp("built") / "smoke")
    assert (root / "dvc.lock").is_file() and "up to date" in sh(str(BIN / "dvc"), "status", cwd=root).stdout
    return root


def outputs(root: Path) -> dict[str, bytes]:
    """Every file a refused command must leave alone (lock files aside: taking turns writes them)."""
    found = {}
    for name in KEPT:
        path = root / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        found.update({p.relative_to(root).as_posix(): p.read_bytes() for p in files if not p.name.endswith(".lock")})
    return found


def params_text(edit) -> str:
    params = json.loads(json.dumps(SMOKE))
    edit(params)
    return yaml.safe_dump(params, sort_keys=False)


def study(**keys):
    return lambda params: params["studies"]["smoke"].update(keys)


def train(**keys):
    return lambda params: params["studies"]["smoke"]["train"].update(keys)


# Nine to the twelfth strings from a few hundred bytes: a document no reader may walk whole.
LAUGHS = "laughs:\n" + "".join(
    "  - &l{} [{}]\n".format(i, ", ".join([f"*l{i - 1}" if i else '"ha"'] * 9)) for i in range(12))

# Each a params.yaml that must be refused by Snakemake (a real run, not a dry one) and by `dvc repro`.
BAD_PARAMS = {
    "unknown statistic": params_text(study(metric="median")),
    "at_best_val without a validation split": params_text(study(metric="at_best_val")),
    "a seed listed twice": params_text(study(seeds=[0, 0])),
    "a CUDA device on a host with none": params_text(train(device="cuda")),
    "threads 0": params_text(lambda p: p.update(threads=0)),
    "a misspelt table key": params_text(lambda p: p["studies"]["smoke"]["kd_table"].update(temprature=2.0)),
    "a key given twice": params_text(lambda p: None).replace("gpus: 0\n", "gpus: 0\ngpus: 0\n"),
    "a study given twice": params_text(lambda p: None) + "  smoke:\n    datasets: [synthetic]\n    seeds: [1]\n",
    "invalid YAML": params_text(lambda p: None) + "  smoke: [\n",
    "aliases that expand without bound": params_text(lambda p: None) + LAUGHS,
}


# DVC reads params.yaml with its own reader and walks it whole before any stage (rdml's included) runs:
# an alias bomb holds `dvc repro` there, changing nothing (docs/reliability.md, "Not guaranteed").
DVC_WALKS = {"aliases that expand without bound"}


@pytest.mark.parametrize("case", BAD_PARAMS)
def test_a_refused_params_yaml_leaves_every_output_as_it_was(built, case):
    before = outputs(built)
    good = (built / "params.yaml").read_text()
    try:
        (built / "params.yaml").write_text(BAD_PARAMS[case])
        bad = outputs(built)
        for command in (["snakemake", "all_tables", "--cores", "2"], ["dvc", "repro"],
                        ["rdml", "pipeline", "dvc-yaml"], ["rdml", "tables", "smoke"]):
            if command[0] == "dvc" and case in DVC_WALKS:
                continue
            result = sh(str(BIN / command[0]), *command[1:], cwd=built, check=False, timeout=120)
            assert result.returncode != 0, f"{case}: {' '.join(command)} accepted it"
            assert outputs(built) == bad, f"{case}: {' '.join(command)} changed an output"
    finally:
        (built / "params.yaml").write_text(good)
    assert outputs(built) == before


def _bad_config(root: Path) -> list[str]:
    (root / "twice.yaml").write_text("epochs: 2\nepochs: 5\n")
    run = next((root / "results/smoke/runs/synthetic").iterdir())  # a finished run of the study
    return ["rdml", "train", "twice.yaml", f"out={run.relative_to(root)}"]


# Each a command given bad input on the built project: exit status 2, nothing touched.
BAD_COMMANDS = {
    "a config file with a key given twice, into a finished run": _bad_config,
    "another method's key, into a finished run": lambda root: [
        "rdml", "train", "method=dml", "beta=0.5", f"out={next((root / 'results/smoke/runs/synthetic').iterdir()).relative_to(root)}"],
    "tables of a spec that is no study": lambda root: ["rdml", "tables", "smoke", "--spec", "{}"],
    "tables from an unreadable params file": lambda root: ["rdml", "tables", "smoke", "--params", "missing.yaml"],
    "a job with -4 threads": lambda root: ["rdml", "pipeline", "run", "smoke", "whatever", "--threads", "-4"],
    "a job not in the study": lambda root: ["rdml", "pipeline", "run", "smoke", "no-such-job"],
    "dvc.yaml of a study not in params.yaml": lambda root: ["rdml", "pipeline", "dvc-yaml", "--study", "nosuch"],
    "prune of a study not in params.yaml": lambda root: ["rdml", "pipeline", "prune", "--study", "nosuch"],
}


@pytest.mark.parametrize("case", BAD_COMMANDS)
def test_a_refused_command_leaves_every_output_as_it_was(built, case):
    command = BAD_COMMANDS[case](built)
    before = outputs(built)
    result = sh(str(BIN / command[0]), *command[1:], cwd=built, check=False)
    assert result.returncode == 2, f"{case}: exit {result.returncode}\n{result.stderr}"
    assert result.stderr.startswith("rdml: error:") or "error:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert outputs(built) == before
