"""A method declares the networks it trains and the outputs it evaluates (rdml.methods.base.Method:
`networks`, `predict`, `members`, `outputs`), and the trainer, the evaluator, model.pt and its rebuilding
read that declaration. The proof: a ONE-style method (Lan, Zhu and Gong, "Knowledge Distillation by
On-the-Fly Native Ensemble", NeurIPS 2018: one network, a shared trunk, two branch heads and a gate whose
gated ensemble teaches each branch) added to a copy of the package as one module and one registry line,
nothing else, trains on the synthetic data, resumes bit-identically after SIGKILL, is recorded per branch
and for its gated ensemble, and its model.pt is rebuilt through the method to the scores its record holds
and measured per branch."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run, sigkill_and_resume
from rdml.code import PACKAGE
from rdml.config import load_config, resolve
from rdml.methods import METHODS

MODULE = textwrap.dedent('''
    """ONE-style online distillation in one network: a shared trunk, two branch heads and a gate; the gated
    ensemble sum_i g_i z_i teaches every branch (Lan, Zhu and Gong, NeurIPS 2018)."""

    from rdml.methods.base import METHODS, Method

    BRANCHES = 2
    FEATURES = 32


    @METHODS.register("one_test")
    class NativeEnsemble(Method):
        name = "one_test"
        description = "ONE: two branches of one network taught by their gated ensemble"
        defaults = {**Method.defaults, "temperature": 3.0}

        @classmethod
        def label(cls, keys):
            return "ONE"

        @classmethod
        def members(cls, cfg):
            return tuple(f"branch_{i}" for i in range(BRANCHES))

        @classmethod
        def outputs(cls, cfg):
            return (*cls.members(cfg), "gated")

        def networks(self, build):
            return [two_branches(build(self.cfg.arch[0], outputs=FEATURES), build.outputs)]

        def predict(self, x, cohort):
            *branches, gate = cohort[0](x)
            return {**{f"branch_{i}": z for i, z in enumerate(branches)}, "gated": gated(branches, gate)}

        def train_step(self, x, y, cohort):
            from rdml.core.losses import kl_distillation, supervised_cross_entropy

            network = cohort[0]
            *branches, gate = network(x)
            ensemble = gated(branches, gate)
            terms = {f"branch_{i}": {"ce": supervised_cross_entropy(z, y),
                                     "kd": kl_distillation(z, ensemble.detach(), self.cfg.temperature)}
                     for i, z in enumerate(branches)}
            terms["gated"] = {"ce": supervised_cross_entropy(ensemble, y)}
            network.optimizer.zero_grad(set_to_none=True)
            sum(sum(t.values()) for t in terms.values()).backward()
            network.step()
            return {name: {k: v.detach() for k, v in t.items()} for name, t in terms.items()}


    def gated(branches, gate):
        return sum(gate[:, i : i + 1] * z for i, z in enumerate(branches))


    def two_branches(trunk, classes):
        from torch import nn

        class TwoBranches(nn.Module):
            def __init__(self):
                super().__init__()
                self.trunk = nn.Sequential(trunk, nn.ReLU())
                self.heads = nn.ModuleList(nn.Linear(FEATURES, classes) for _ in range(BRANCHES))
                self.gate = nn.Sequential(nn.Linear(FEATURES, BRANCHES), nn.Softmax(dim=1))

            def forward(self, x):
                h = self.trunk(x)
                return (*(head(h) for head in self.heads), self.gate(h))

        return TwoBranches()
''')
REGISTRY_LINE = "from rdml.methods import one_test  # noqa: F401\n"
ARGS = ["dataset=synthetic", "method=one_test", "arch=cnn", "batch_size=4", "epochs=3"]
OUTPUTS = ["branch_0", "branch_1", "gated"]

# In the copy: model.pt rebuilt through the method, scored again and measured, as the audit and the analyses read a run.
REBUILD = '''
import json, sys
import torch
from rdml.config import config_from_mapping, resolve
from rdml.data.base import load_dataset
from rdml.config import data_keys
from rdml.methods import METHODS
from rdml.study.runs import Run
from rdml.train.cohort import rebuild
from rdml.train.evaluate import evaluate, evaluation_noise

run_dir = sys.argv[1]
record = json.load(open(f"{run_dir}/record.json"))
cfg = record["config"]
saved = torch.load(f"{run_dir}/model.pt", weights_only=True)
data = load_dataset(cfg["dataset"], **data_keys(cfg))
cohort, method = rebuild(saved, cfg, data, torch.device("cpu"))
same = all(torch.equal(v, state[k]) for s, state in zip(cohort, saved["states"]) for k, v in s.model.state_dict().items())
scores = evaluate(cohort, data, method=method, noise=evaluation_noise(cfg["input_noise"], cfg["seed"], len(record["epochs"])))
resolved = resolve(config_from_mapping(cfg))
from rdml.analysis.measure import measure_run
measured = measure_run(run_dir, {"predictions": {}, "noise": {"sigmas": [0.01], "draws": 1, "seed": 0}}, torch.device("cpu"))
print(json.dumps({"scores": scores, "states_round_trip": same, "networks": len(cohort), "saved_method": saved.get("method"),
                  "measured": {name: sorted(values) for name, values in measured["students"].items()},
                  "outputs": list(METHODS["one_test"].outputs(resolved)),
                  "run_students": list(Run("s", "synthetic", "one_test", ("cnn",), 0).students)}))
'''


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """A copy of the rdml package with the method's module and its registry line, and nothing else changed."""
    copy = tmp_path_factory.mktemp("package") / "rdml"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(copy, copy.parent.parent / "pristine")  # the package as copied, to compare with
    (copy / "methods" / "one_test.py").write_text(MODULE)
    init = copy / "methods" / "__init__.py"
    init.write_text(init.read_text() + REGISTRY_LINE)
    return copy


@pytest.mark.system  # rdml train processes, one SIGKILLed and resumed
@pytest.mark.fault
def test_a_two_branch_method_trains_resumes_is_evaluated_per_output_and_round_trips(package, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(package.parent))  # every rdml process below runs the copy
    done = sigkill_and_resume(ARGS, 3, tmp_path)  # the same epochs and weights as an uninterrupted run

    assert done["label"] == "ONE" and len(done["epochs"]) == 3
    assert all(list(epoch["test"]) == OUTPUTS for epoch in done["epochs"])
    assert list(done["summary"]) == OUTPUTS
    assert set(done["epochs"][0]["train"]) == {f"branch_{i}/{t}" for i in (0, 1) for t in ("ce", "kd", "total")} | {
        "gated/ce", "gated/total"}
    assert len(done["epochs"][0]["lr"]) == 1  # one network, one optimiser

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", REBUILD, str(tmp_path / "run")], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rebuilt = json.loads(result.stdout)
    assert rebuilt["saved_method"] == "one_test" and rebuilt["networks"] == 1 and rebuilt["states_round_trip"]
    assert rebuilt["scores"] == done["epochs"][-1]["test"]  # model.pt is the network the last epoch evaluated
    assert rebuilt["outputs"] == OUTPUTS  # what a table layout selects, declared without training
    assert rebuilt["run_students"] == ["branch_0", "branch_1"]
    assert list(rebuilt["measured"]) == ["branch_0", "branch_1"]  # the DML §4.8 analyses, per branch
    assert all({"entropy", "signal_entropy", "top1", "loss", "loss@0.01"} <= set(v) for v in rebuilt["measured"].values())


def test_the_copy_differs_from_the_package_by_the_module_and_its_registry_line(package):
    pristine = package.parent.parent / "pristine"
    ours = {p.relative_to(pristine) for p in pristine.rglob("*") if p.is_file()}
    theirs = {p.relative_to(package) for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert theirs - ours == {Path("methods/one_test.py")} and ours <= theirs
    changed = [p for p in ours if (pristine / p).read_bytes() != (package / p).read_bytes()]
    assert changed == [Path("methods/__init__.py")]
    assert (package / changed[0]).read_text() == (pristine / changed[0]).read_text() + REGISTRY_LINE


@pytest.mark.parametrize("args", [["method=independent"], ["method=dml", "arch=mlp,cnn"], ["method=dml_e", "students=3"],
                                  ["method=kdcl"], ["method=okdph", "arch=cnn"]])
def test_the_existing_methods_declare_the_outputs_their_records_hold(tmp_path, args):
    """`outputs` and `members` name, without training, what a record holds: students, ensemble, OKDPH's hwm."""
    record = run(tmp_path / "r", *args, "epochs=1")
    cfg = resolve(load_config(None, ["dataset=synthetic", *args]))
    assert list(record["summary"]) == list(record["epochs"][0]["test"]) == list(METHODS[cfg.method].outputs(cfg))
    assert [name for name in record["summary"] if name.startswith("student_")] == list(METHODS[cfg.method].members(cfg))


# In the copy, in a project folder: the study's jobs trained as the pipeline trains them, its tables written, and the
# gated ensemble's cell audited with its network rebuilt and scored again.
TABLE = '''
import json, sys
from rdml.audit import audit_cell
from rdml.pipeline.jobs import run_job
from rdml.report.write import write_tables
from rdml.study.params import load_params
from rdml.study.plan import plan_jobs

params = load_params("params.yaml")
for job in plan_jobs(params, "outputs"):
    run_job(job.spec(), gpus=0, threads=1)
write_tables("outputs", "params.yaml")
sidecar = json.load(open("results/outputs/tables/outputs_table.cells.json"))
problems = audit_cell("results/outputs/tables/outputs_table.cells.json", "synthetic: cnn: ONE|gated", out=lambda *a: None,
                      evaluate=True)
import torch
from rdml.data.base import load_dataset
from rdml.keys import ConfigError
from rdml.train.checkpoint import load_teacher
one = next(run for job in plan_jobs(params, "outputs") for run in job.runs if run.method == "one_test")
try:
    load_teacher(one.directory, 0, load_dataset("synthetic", split_seed=0, test_fraction=0.25), torch.device("cpu"))
    refused = None
except ConfigError as exc:
    refused = str(exc)
print(json.dumps({"cells": sorted(sidecar["cells"]), "problems": problems, "as_teacher": refused}))
'''
STUDY = {"build": ["outputs"], "gpus": 0, "studies": {"outputs": {
    "datasets": ["synthetic"], "seeds": [0], "metric": "final", "train": {"epochs": 1, "batch_size": 16},
    "outputs_table": {"methods": ["one_test", "dml"], "archs": ["cnn"]}}}}


@pytest.mark.slow  # two training runs in their own process
def test_the_two_branch_method_appears_as_columns_of_a_table(package, tmp_path):
    """The generic outputs_table shows every output a method declares: the method needs no layout of its own."""
    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(STUDY))
    env = {**os.environ, "PYTHONPATH": str(package.parent), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", TABLE], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["cells"] == sorted([*(f"synthetic: cnn: ONE|{o}" for o in OUTPUTS),
                                     *(f"synthetic: cnn: DML|{o}" for o in ("student_0", "student_1", "ensemble"))])
    assert found["problems"] == []
    assert "holds the networks method one_test declares" in found["as_teacher"]  # not a teacher of students
    table = (tmp_path / "results/outputs/tables/outputs_table.md").read_text()
    assert "| branch_0 | branch_1 | gated | student_0 | student_1 | ensemble |" in table.replace("  ", " ")
