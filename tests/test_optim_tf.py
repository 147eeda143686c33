"""The optimiser as TensorFlow ran it (DML Fig. 2a: "RMSProp with decay 0.9 … initial lr 0.1, decayed every 20
epochs by an exponential rate of 0.16", trained with TF-slim): `optimizer=rmsprop_tf` against a float64
transcription of TF's RMSProp update, `schedule=step` against TF's staircase exponential decay at every step,
the refusals of the new keys, a run and its resume, and the identity of every run that does not use them."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import resumes_to_the_uninterrupted_run, run
from rdml.config import KEYS, ConfigError, config_sha256, config_values, load_config, resolve
from rdml.train.optim import make_optimizer, make_scheduler

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "golden_runs.json").read_text())


def config(*overrides: str):
    return resolve(load_config(None, ["dataset=synthetic", *overrides]))


def tf_rmsprop(weights, grads, lrs, *, rho, momentum, epsilon, weight_decay, decayed):
    """TF's RMSProp, transcribed in float64 numpy: tf.train.RMSPropOptimizer starts its "rms" slot at ones and
    its "momentum" slot at zeros (tensorflow/python/training/rmsprop.py, `_create_slots`); each step is the
    `ApplyRMSProp` kernel (tensorflow/core/kernels/training_ops.cc):
        ms  += (grad² − ms)·(1 − rho)
        mom  = mom·momentum + grad·lr / sqrt(ms + epsilon)
        var −= mom
    where grad is the loss gradient plus that of TF-slim's weight_decay·tf.nn.l2_loss(w) = weight_decay·Σw²/2 on
    the decayed variables, i.e. + weight_decay·w."""
    weights = {k: np.array(w, dtype=np.float64) for k, w in weights.items()}
    ms = {k: np.ones_like(w) for k, w in weights.items()}
    mom = {k: np.zeros_like(w) for k, w in weights.items()}
    for step_grads, lr in zip(grads, lrs):
        for k, var in weights.items():
            grad = step_grads[k] + (weight_decay * var if decayed[k] else 0.0)
            ms[k] += (grad * grad - ms[k]) * (1.0 - rho)
            mom[k] = mom[k] * momentum + grad * lr / np.sqrt(ms[k] + epsilon)
            weights[k] = var - mom[k]
    return weights


def rdml_steps(cfg, grads, lrs):
    """The same steps through rdml's optimiser of `cfg` on a small float64 network, its gradients set by hand."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).double()
    start = {k: p.detach().numpy().copy() for k, p in model.named_parameters()}
    optimizer = make_optimizer(cfg, model.parameters())
    for step_grads, lr in zip(grads, lrs):
        for group in optimizer.param_groups:
            group["lr"] = lr
        for k, p in model.named_parameters():
            p.grad = torch.from_numpy(step_grads[k].copy())
        optimizer.step()
    return start, {k: p.detach().numpy() for k, p in model.named_parameters()}


SHAPES = {"0.weight": (3, 4), "0.bias": (3,), "2.weight": (2, 3), "2.bias": (2,)}


def fixed_grads(steps: int = 5):
    rng = np.random.default_rng(24)
    return [{k: rng.normal(0, 2.0, shape) for k, shape in SHAPES.items()} for _ in range(steps)]


# ---- the update: timm's RMSpropTF is TF's ApplyRMSProp ----------------------------------------------------------

@pytest.mark.parametrize("overrides,lrs", [
    # TF-slim's flags (rmsprop_decay 0.9, rmsprop_momentum 0.9, opt_epsilon 1.0) at the paper's lr, decay everywhere
    (["lr=0.1", "weight_decay=0.01"], [0.1] * 5),
    # other values; the lr changes between steps (TF keeps it inside the momentum); no decay on biases
    (["lr=0.1", "rmsprop_decay=0.5", "rmsprop_epsilon=1e-3", "momentum=0.6", "weight_decay=0.05", "decay_1d=false"],
     [0.1, 0.1, 0.016, 0.016, 0.00256]),
    (["lr=0.05", "momentum=0", "weight_decay=0"], [0.05] * 5),  # no momentum: TF's mom is then lr·g/sqrt(ms + eps)
])
def test_rmsprop_tf_is_tensorflows_update_to_1e_12(overrides, lrs):
    cfg = config("optimizer=rmsprop_tf", *overrides)
    grads = fixed_grads(len(lrs))
    start, got = rdml_steps(cfg, grads, lrs)
    want = tf_rmsprop(start, grads, lrs, rho=cfg.rmsprop_decay, momentum=cfg.momentum, epsilon=cfg.rmsprop_epsilon,
                      weight_decay=cfg.weight_decay, decayed={k: cfg.decay_1d or len(s) > 1 for k, s in SHAPES.items()})
    moved = max(np.abs(got[k] - start[k]).max() for k in got)
    assert moved > 1e-2  # the steps moved the weights …
    for k in got:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-12, err_msg=k)  # … as TF moves them


def test_the_transcription_tells_tfs_form_from_pytorchs():
    """The comparison has power: epsilon outside the square root or a mean square starting at zero (PyTorch's
    RMSprop) moves the weights elsewhere by far more than the tolerance."""
    cfg = config("optimizer=rmsprop_tf", "lr=0.1", "weight_decay=0", "rmsprop_epsilon=1e-3")
    grads = fixed_grads()
    start, got = rdml_steps(cfg, grads, [0.1] * 5)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).double()
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(torch.from_numpy(start[k]))
    pytorch = torch.optim.RMSprop(model.parameters(), lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9)
    for step_grads in grads:
        for k, p in model.named_parameters():
            p.grad = torch.from_numpy(step_grads[k].copy())
        pytorch.step()
    assert max(np.abs(got[k] - p.detach().numpy()).max() for k, p in model.named_parameters()) > 1e-2


# ---- the schedule: `step` per epoch is TF's staircase exponential decay at every step ----------------------------

@pytest.mark.parametrize("steps_per_epoch,step_size,gamma", [(7, 2, 0.16), (3, 1, 0.16), (5, 3, 0.5)])
def test_the_step_schedule_is_tfs_staircase_exponential_decay_at_every_step(steps_per_epoch, step_size, gamma):
    """tf.train.exponential_decay(lr, global_step, decay_steps, rate, staircase=True) is
    lr·rate^floor(global_step / decay_steps) (TF-slim: research/slim/train_image_classifier.py L265-271); with
    decay_steps = step_size epochs of steps, rdml's per-epoch StepLR, stepped after each epoch's batches as the
    loop does (rdml.train.loop), gives the same lr at every step (global_step counts the steps done before)."""
    lr = 0.1
    cfg = config("schedule=step", f"step_size={step_size}", f"gamma={gamma}", f"lr={lr}", "epochs=12")
    optimizer = make_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))])
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)
    decay_steps = step_size * steps_per_epoch
    for epoch in range(cfg.epochs):
        for batch in range(steps_per_epoch):
            global_step = epoch * steps_per_epoch + batch
            tf = lr * gamma ** math.floor(global_step / decay_steps)
            assert optimizer.param_groups[0]["lr"] == pytest.approx(tf, rel=1e-12, abs=0), (epoch, batch)
            optimizer.step()
        scheduler.step()


# ---- a run ------------------------------------------------------------------------------------------------------

FIG_2A = ["optimizer=rmsprop_tf", "lr=0.1", "schedule=step", "step_size=1", "gamma=0.16", "weight_decay=4e-5",
          "memory_format=contiguous", "compile=false"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    root = tmp_path_factory.mktemp("rmsprop_tf")
    return root, run(root / "whole", "epochs=2", *FIG_2A)


def test_a_run_with_rmsprop_tf_trains_and_records_its_optimiser(whole):
    _, record = whole
    assert record["status"] == "ok" and len(record["epochs"]) == 2
    saved = record["config"]
    assert saved["optimizer"] == "rmsprop_tf" and saved["momentum"] == 0.9 and saved["weight_decay"] == 4e-5
    assert saved["rmsprop_decay"] == 0.9 and saved["rmsprop_epsilon"] == 1.0  # TF-slim's flags, recorded
    assert [e["lr"] for e in record["epochs"]] == [[0.1, 0.1], [pytest.approx(0.016)] * 2]  # × 0.16 per step_size
    assert [e["lr_last_batch"] for e in record["epochs"]] == [e["lr"] for e in record["epochs"]]  # per epoch
    first, last = (record["epochs"][i]["train"]["student_0/ce"] for i in (0, -1))
    assert math.isfinite(first) and last < first
    assert record["config_sha256"] == config_sha256(record["config"])


def test_a_killed_rmsprop_tf_run_resumes_to_the_same_numbers(tmp_path):
    """The optimiser's state (mean square, momentum) travels in the checkpoint: killed after epoch 1, the run
    resumes to the uninterrupted one's every number and weight."""
    resumes_to_the_uninterrupted_run(tmp_path, "epochs=3", *FIG_2A)


# ---- identity: a run without the keys is the run it was ---------------------------------------------------------

@pytest.mark.parametrize("name", list(GOLDEN["runs"]))
def test_a_run_that_does_not_use_rmsprop_tf_keeps_the_identity_rdml_gave_it_before_the_keys(name):
    stored = GOLDEN["runs"][name]
    cfg = resolve(load_config(None, [*GOLDEN["common"], *stored["args"]]))
    values = config_values(cfg)
    assert (values["rmsprop_decay"], values["rmsprop_epsilon"]) == (0.9, 1.0)  # in the run's config, at the defaults …
    assert config_sha256(cfg) == stored["config_sha256"]  # … and out of its hash, written by rdml before the keys
    assert cfg.out.endswith(stored["config_sha256"][:8])


def test_the_rmsprop_tf_keys_count_in_an_identity_off_their_defaults():
    plain = config("optimizer=rmsprop_tf")
    assert config_sha256(plain) != config_sha256(config())  # the optimiser itself always did
    for name, value in (("rmsprop_decay", "0.95"), ("rmsprop_epsilon", "1e-3")):
        other = config("optimizer=rmsprop_tf", f"{name}={value}")
        assert config_sha256(other) != config_sha256(plain)
        assert config_sha256({**config_values(other), name: KEYS[name].default}) == config_sha256(plain)


# ---- refusals ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,message", [
    (["optimizer=rmsprop"], "optimizer='rmsprop' is not allowed; allowed: adam, adamw, rmsprop_tf, sgd"),
    (["optimizer=rmsprop_tf", "rmsprop_decay=1"], "rmsprop_decay=1.0 is not allowed; it must be a number in [0, 1)"),
    (["optimizer=rmsprop_tf", "rmsprop_decay=-0.1"], "rmsprop_decay=-0.1 is not allowed; it must be a number in [0, 1)"),
    (["optimizer=rmsprop_tf", "rmsprop_decay=nan"], "rmsprop_decay=nan is not allowed; it must be a number in [0, 1)"),
    (["optimizer=rmsprop_tf", "rmsprop_decay=high"], "rmsprop_decay='high' is not a valid float"),
    (["optimizer=rmsprop_tf", "rmsprop_epsilon=0"], "rmsprop_epsilon=0.0 is not allowed; it must be a finite number > 0"),
    (["optimizer=rmsprop_tf", "rmsprop_epsilon=-1"], "rmsprop_epsilon=-1.0 is not allowed; it must be a finite number > 0"),
    (["optimizer=rmsprop_tf", "rmsprop_epsilon=inf"], "rmsprop_epsilon=inf is not allowed; it must be a finite number > 0"),
    (["optimizer=rmsprop_tf", "momentum=1"], "momentum=1.0 is not allowed; it must be a number in [0, 1)"),
    (["rmsprop_decay=0.95"], "rmsprop_decay=0.95: only optimizer=rmsprop_tf reads rmsprop_decay, and optimizer=sgd "
                             "would ignore it; leave it at 0.9 or set optimizer=rmsprop_tf"),
    (["optimizer=adam", "rmsprop_epsilon=1e-3"], "rmsprop_epsilon=0.001: only optimizer=rmsprop_tf reads "
                                                 "rmsprop_epsilon, and optimizer=adam would ignore it; leave it at 1.0"),
])
@pytest.mark.bad_input
def test_a_bad_rmsprop_tf_key_is_refused_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(tmp_path / "r", *overrides)
    assert not (tmp_path / "r").exists()
