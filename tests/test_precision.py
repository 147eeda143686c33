"""`precision` and `deterministic` mean what they say: every torch switch they stand for is set for each run,
read back into the record and the resume key; what a device cannot run is refused before any work.

torch's switches are process-global. A `torch.device("cuda")` object needs no GPU, so the CUDA switches are
checked here too; that they give bit-identical runs on a GPU is the last test's, which skips without one."""

import copy
import json
import os

import pytest
import torch

from conftest import killed_after_checkpoint, run, sigkill_and_resume
from rdml.config import ConfigError, config_sha256, load_config, resolve
from rdml.train import execution
from rdml.train.execution import CUBLAS, Execution, choose_execution, numerics
from rdml.train.prepare import prepare

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
DETERMINISTIC_CPU = {"float32_matmul": "ieee", "float32_conv": "ieee", "deterministic_algorithms": True,
                     "cudnn_deterministic": True, "cudnn_benchmark": False, "cublas_workspace_config": None}


@pytest.fixture(autouse=True)
def switches_restored(monkeypatch):
    """No CUBLAS_WORKSPACE_CONFIG from the caller's shell, and after the test torch's switches as a default
    CPU run leaves them (and the variable as it was)."""
    monkeypatch.setenv(CUBLAS, "")
    monkeypatch.delenv(CUBLAS)
    yield
    Execution(CPU, "fp32", "contiguous", False, False).apply()


def switches() -> dict:
    """Every switch, through both of torch's interfaces (the older one raises where they disagree)."""
    return {"cuda.matmul": torch.backends.cuda.matmul.fp32_precision, "cudnn.conv": torch.backends.cudnn.conv.fp32_precision,
            "cudnn.rnn": torch.backends.cudnn.rnn.fp32_precision, "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32, "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "mkldnn": [torch.backends.mkldnn.matmul.fp32_precision, torch.backends.mkldnn.conv.fp32_precision,
                       torch.backends.mkldnn.rnn.fp32_precision],
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn.deterministic": torch.backends.cudnn.deterministic, "cudnn.benchmark": torch.backends.cudnn.benchmark}


@pytest.mark.parametrize("device, precision, deterministic", [
    (CPU, "fp32", True), (CPU, "fp32", False), (CPU, "bf16", True), (CUDA, "fp32", True), (CUDA, "fp32", False),
    (CUDA, "tf32", True), (CUDA, "tf32", False), (CUDA, "bf16", True), (CUDA, "bf16", False)])
def test_every_switch_is_set_for_each_run_whatever_the_previous_run_set(device, precision, deterministic):
    """A process that trains several runs (a pipeline job, the tests) must not run one under the switches of
    the one before: the opposite execution is applied first, then this one sets every switch back."""
    Execution(CUDA, "fp32" if precision == "tf32" else "tf32", "contiguous", False, False, not deterministic).apply()
    read_back = Execution(device, precision, "contiguous", False, False, deterministic).apply()
    tf32 = precision == "tf32"
    mode = "tf32" if tf32 else "ieee"
    assert switches() == {
        "cuda.matmul": mode, "cudnn.conv": mode, "cudnn.rnn": mode, "cuda.matmul.allow_tf32": tf32,
        "cudnn.allow_tf32": tf32, "float32_matmul_precision": "high" if tf32 else "highest", "mkldnn": ["ieee"] * 3,
        "deterministic_algorithms": deterministic, "cudnn.deterministic": deterministic,
        "cudnn.benchmark": not deterministic and device.type == "cuda"}
    assert read_back == numerics(device)
    assert (read_back["float32_matmul"], read_back["float32_conv"]) == (mode, mode)
    if device.type == "cuda" and deterministic:
        assert read_back["cublas_workspace_config"] == ":4096:8"


def test_a_cuda_workspace_config_already_set_is_kept(monkeypatch):
    monkeypatch.setenv(CUBLAS, ":16:8")
    assert Execution(CUDA, "fp32", "contiguous", False, False).apply()["cublas_workspace_config"] == ":16:8"


def test_a_cpu_run_leaves_the_cuda_workspace_config_alone():
    Execution(CPU, "fp32", "contiguous", False, False).apply()
    assert CUBLAS not in os.environ


@pytest.mark.bad_input
def test_tf32_is_refused_on_a_cpu_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(execution, "bf16_cpu", lambda: False)
    with pytest.raises(ConfigError, match=r"precision=tf32: TF32 is a mode of NVIDIA tensor cores, and device=cpu is a "
                                          "CPU; allowed here: fp32, auto$"):
        prepare(load_config(None, ["dataset=synthetic", "precision=tf32", f"out={tmp_path / 'r'}"]))
    assert not (tmp_path / "r").exists()
    monkeypatch.setattr(execution, "bf16_cpu", lambda: True)
    with pytest.raises(ConfigError, match="allowed here: fp32, bf16, auto$"):
        choose_execution(CPU, "tf32", "auto", False, False, ["mlp"])


@pytest.fixture
def a_gpu_with_bf16(monkeypatch):
    """choose_execution as on a CUDA device with bf16: its questions to the driver answered here."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "a GPU")


@pytest.mark.parametrize("workspace", [":0:0", "4096", ":4096:2"])
@pytest.mark.bad_input
def test_a_nondeterministic_cublas_workspace_is_refused_under_deterministic(monkeypatch, a_gpu_with_bf16, workspace):
    monkeypatch.setenv(CUBLAS, workspace)
    with pytest.raises(ConfigError, match=f"deterministic=true: CUBLAS_WORKSPACE_CONFIG='{workspace}' makes cuBLAS "
                                          "nondeterministic; allowed: :4096:8 or :16:8, or unset"):
        choose_execution(CUDA, "fp32", "auto", False, False, ["cnn"])
    assert choose_execution(CUDA, "fp32", "auto", False, False, ["cnn"], deterministic=False).deterministic is False


def test_cuda_choices_allowed(monkeypatch, a_gpu_with_bf16):
    for workspace in (":4096:8", ":16:8"):
        monkeypatch.setenv(CUBLAS, workspace)
        assert choose_execution(CUDA, "tf32", "auto", False, False, ["cnn"]).describe() == {
            "precision": "tf32", "memory_format": "auto", "compile": False, "fuse_students": False,
            "deterministic": True}
    assert choose_execution(CUDA, "auto", "auto", False, False, ["cnn"]).precision == "bf16"


@pytest.mark.parametrize("given, expected", [([], DETERMINISTIC_CPU),
    (["deterministic=false"], {**DETERMINISTIC_CPU, "deterministic_algorithms": False, "cudnn_deterministic": False})])
def test_the_record_says_what_ran_read_back_from_torch(tmp_path, given, expected):
    record = run(tmp_path / "r", "epochs=1", *given)
    environment = record["environment"]
    assert environment["deterministic"] is (given == []) and environment["precision"] == "fp32"
    assert environment["numerics"] == expected
    assert json.loads((tmp_path / "r" / "record.json").read_text())["environment"]["numerics"] == expected


def test_the_record_reads_torch_not_the_keys(tmp_path, monkeypatch):
    """What ran is what torch's switches say when the run starts, even where something else changed them."""
    real = Execution.apply

    def apply_then_changed(self):
        real(self)
        torch.backends.cudnn.benchmark = True  # as some other code of the process might
        return numerics(self.device)

    monkeypatch.setattr(Execution, "apply", apply_then_changed)
    assert run(tmp_path / "r", "epochs=1")["environment"]["numerics"]["cudnn_benchmark"] is True


def test_an_interrupted_run_resumes_only_under_the_switches_it_started_with(tmp_path, monkeypatch):
    """A checkpoint taken under deterministic=false is not resumed under true (nor the other way), nor under
    switches torch reports otherwise; replace=True trains it anew."""
    killed_after_checkpoint(1, lambda: run(tmp_path / "r", "deterministic=false"))
    with pytest.raises(ConfigError, match="holds a run of a different configuration"):
        run(tmp_path / "r")
    killed_after_checkpoint(1, lambda: run(tmp_path / "d"))
    real = Execution.apply
    monkeypatch.setattr(Execution, "apply", lambda self: {**real(self), "float32_conv": "tf32"})
    with pytest.raises(ConfigError, match="under another teacher, training code or execution"):
        run(tmp_path / "d")
    monkeypatch.setattr(Execution, "apply", real)
    resumed = run(tmp_path / "d")
    assert len(resumed["resumed_at"]) == 1 and resumed["status"] == "ok"


def test_a_finished_run_under_other_switches_is_not_the_same_run(tmp_path):
    from rdml.train.loop import same_run

    record = run(tmp_path / "r", "epochs=1")
    assert same_run(record, record)
    for key, value in (("deterministic", False), ("numerics", {**DETERMINISTIC_CPU, "float32_conv": "bf16"})):
        other = copy.deepcopy(record)
        other["environment"][key] = value
        assert not same_run(other, record), key


def test_identities_are_unchanged_at_the_defaults():
    """deterministic counts in a run's identity only when false; tf32 is a precision of its own."""
    def identity(*given):
        return config_sha256(resolve(load_config(None, ["dataset=synthetic", *given])))

    assert identity("deterministic=true") == identity()
    assert len({identity(), identity("deterministic=false"), identity("precision=fp32"), identity("precision=tf32")}) == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.system  # processes killed and resumed
@pytest.mark.slow
def test_fp32_deterministic_runs_on_cuda_are_bit_identical_repeated_and_resumed(tmp_path):
    args = ["dataset=synthetic", "device=cuda", "precision=fp32", "memory_format=contiguous", "arch=cnn", "batch_size=8",
            "method=dml"]
    first = run(tmp_path / "a", *args[1:], "epochs=3")
    second = run(tmp_path / "b", *args[1:], "epochs=3")
    assert first["environment"]["numerics"] == {
        "float32_matmul": "ieee", "float32_conv": "ieee", "deterministic_algorithms": True, "cudnn_deterministic": True,
        "cudnn_benchmark": False, "cublas_workspace_config": ":4096:8"}
    assert first["epochs"] == second["epochs"]
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True)["states"] for d in "ab")
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    done = sigkill_and_resume([*args, "epochs=30"], 30, tmp_path)
    assert done["environment"]["numerics"]["float32_conv"] == "ieee"
