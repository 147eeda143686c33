"""OKDPH and KDCL against the official code (tianlizhang/OKDPH at a562089, src unchanged since f65b661):
the losses, the hybrid-weight model, the fusion and its timing, whole training steps, and a killed
run resumed to the same numbers."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import resumes_to_the_uninterrupted_run, run, sigkill_and_resume
from rdml.config import load_config, resolve
from rdml.data.base import load_dataset
from rdml.keys import ConfigError
from rdml.methods import METHODS
from rdml.methods import okdph as okdph_module
from rdml.methods.kdcl import CollaborativeLearning, kdcl_terms
from rdml.methods.okdph import ParameterHybridization, fuse, fusion_interval, load_hybrid, okdph_terms
from rdml.models import build_model
from rdml.train.checkpoint import read_checkpoint
from rdml.train.cohort import Cohort, Student, build_cohort
from rdml.train.execution import choose_execution
from rdml.train.optim import make_optimizer, make_scheduler


# ---- The official code, written out (tianlizhang/OKDPH src/OKDPH.py and src/03_KDCL.py) ----

def official_kd(z, teacher, T):
    """src/OKDPH.py L82–86 = src/03_KDCL.py L48–52: KL(softmax(teacher/T) ‖ softmax(z/T)), batchmean, times T·T."""
    return F.kl_div(F.log_softmax(z / T, dim=1), F.softmax(teacher / T, dim=1), reduction="batchmean") * T * T


def official_okdph_losses(out_list, labels, omega, beta, T):
    """src/OKDPH.py L75–88: out_list holds the students' logits, then the HWM's."""
    stable_out = torch.stack(out_list).mean(dim=0).detach()
    loss_hwm = F.cross_entropy(out_list[-1], labels)
    return [omega * F.cross_entropy(z, labels) + (1 - omega) * loss_hwm + beta * official_kd(z, stable_out, T)
            for z in out_list[:-1]]


def official_kdcl_losses(out_list, labels, alpha, T):
    """src/03_KDCL.py L44–54."""
    stable_out = torch.stack(out_list).mean(dim=0).detach()
    return [(1 - alpha) * F.cross_entropy(z, labels) + alpha * official_kd(z, stable_out, T) for z in out_list]


def official_update_hwm(nets):
    """src/OKDPH.py L33–47 (hwm='mean'): nets[-1] takes Σ_j state_j·(1/N) over the students nets[:-1]."""
    rate = 1.0 / len(nets[:-1])
    for j, net in enumerate(nets[:-1]):
        state = net.state_dict()
        mixed = {k: v * rate for k, v in state.items()} if j == 0 else {k: v * rate + mixed[k] for k, v in state.items()}
    nets[-1].load_state_dict(mixed)


def mean_state(models):
    """The students' mean state as official_update_hwm loads it into a copy of the first."""
    nets = [*models, copy.deepcopy(models[0])]
    official_update_hwm(nets)
    return nets[-1].state_dict()


def official_fusion(net, hwm, gamma):
    """src/OKDPH.py L50–58."""
    if gamma == 1:
        net.load_state_dict(hwm.state_dict())
    elif gamma != 0:
        net.load_state_dict({k: v * gamma + net.state_dict()[k] * (1.0 - gamma) for k, v in hwm.state_dict().items()})


def official_okdph_batch(nets, opts, imgs, labels, ii, *, omega, beta, gamma, T, gap, level):
    """One pass of the loop body of src/OKDPH.py L66–103; imgs[:, i] is net i's view, the HWM's last."""
    for net in nets:
        net.train()  # L62–63
    official_update_hwm(nets)  # L68
    out_list = [net(imgs[:, i]) for i, net in enumerate(nets)]  # L70–73
    losses = official_okdph_losses(out_list, labels, omega, beta, T)
    for i, loss in enumerate(losses):  # L78–103
        opts[i].zero_grad()
        loss.backward(retain_graph=True)
        opts[i].step()
        if level == "batch" and ii % gap == 0:
            official_fusion(nets[i], nets[-1], gamma)


def official_kdcl_batch(nets, opts, imgs, labels, *, alpha, T):
    """src/03_KDCL.py L32–61."""
    for net in nets:
        net.train()
    out_list = [net(imgs[:, i]) for i, net in enumerate(nets)]
    for i, loss in enumerate(official_kdcl_losses(out_list, labels, alpha, T)):
        opts[i].zero_grad()
        loss.backward(retain_graph=i < len(nets) - 1)
        opts[i].step()


# ---- Losses ----

def logits_batch(seed, k, rows=12, classes=7, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    logits = [(torch.randn(rows, classes, generator=gen, dtype=torch.float64) * scale).requires_grad_() for _ in range(k)]
    return logits, torch.randint(0, classes, (rows,), generator=gen)


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("omega,beta,T", [(1.0, 0.5, 4.0), (0.8, 0.8, 4.0), (0.3, 0.3, 2.0), (0.5, 0.0, 1.0)])
def test_okdph_loss_is_the_official_loss_in_value_and_gradient(k, omega, beta, T):
    (*students, hwm), labels = logits_batch(k, k + 1)
    terms = okdph_terms(students, hwm, labels, ce_weight=omega, kd_weight=beta, temperature=T)
    official = official_okdph_losses([*students, hwm], labels, omega, beta, T)
    assert all(set(t) == {"ce", "hwm_ce", "kd"} for t in terms)
    for m, (term, want) in enumerate(zip(terms, official)):
        got = sum(term.values())
        assert got.item() == pytest.approx(want.item(), rel=1e-12)
        assert term["hwm_ce"].item() == pytest.approx((1 - omega) * F.cross_entropy(hwm, labels).item(), rel=1e-12)
        assert not term["hwm_ce"].requires_grad  # the HWM's weights are a copy: no gradient reaches a student
        mine = torch.autograd.grad(got, students, allow_unused=True)
        theirs = torch.autograd.grad(want, students, retain_graph=True, allow_unused=True)
        for j in range(k):  # student m's loss reaches student m's logits alone, and as the official one does
            if j == m:
                torch.testing.assert_close(mine[j], theirs[j], rtol=1e-12, atol=1e-14)
            else:
                assert mine[j] is None and theirs[j] is None


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("a,T", [(0.5, 4.0), (0.9, 2.0), (0.0, 1.0), (1.0, 4.0)])
def test_kdcl_loss_is_the_official_loss_in_value_and_gradient(k, a, T):
    logits, labels = logits_batch(10 + k, k)
    terms = kdcl_terms(logits, labels, weight=a, temperature=T)
    official = official_kdcl_losses(logits, labels, a, T)
    for m, (term, want) in enumerate(zip(terms, official)):
        assert set(term) == {"ce", "kd"}
        got = sum(term.values())
        assert got.item() == pytest.approx(want.item(), rel=1e-12)
        mine = torch.autograd.grad(got, logits, allow_unused=True)
        theirs = torch.autograd.grad(want, logits, retain_graph=True, allow_unused=True)
        torch.testing.assert_close(mine[m], theirs[m], rtol=1e-12, atol=1e-14)
        assert all(mine[j] is None for j in range(k) if j != m)


def test_the_ensemble_holds_the_students_and_the_hwm():
    """z_en: OKDPH averages the students and the HWM (src/OKDPH.py L75), KDCL the students alone (src/03_KDCL.py L44),
    each the student it teaches included."""
    (a, b, hwm), labels = logits_batch(3, 3)
    okdph = okdph_terms([a, b], hwm, labels, ce_weight=1.0, kd_weight=1.0, temperature=4.0)[0]["kd"]
    kdcl = kdcl_terms([a, b], labels, weight=1.0, temperature=4.0)[0]["kd"]
    assert okdph.item() == pytest.approx(official_kd(a, (a + b + hwm).detach() / 3, 4.0).item(), rel=1e-12)
    assert kdcl.item() == pytest.approx(official_kd(a, (a + b).detach() / 2, 4.0).item(), rel=1e-12)
    assert okdph.item() != pytest.approx(kdcl.item(), rel=1e-3)


# ---- The hybrid-weight model and the fusion on known weights ----

def tiny(fill: float, tracked: int) -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.fill_(fill * (i + 1))
        model[1].running_mean.fill_(10 * fill)
        model[1].running_var.fill_(100 * fill)
        model[1].num_batches_tracked.fill_(tracked)
    return model


def test_the_hwm_is_the_mean_state_dict_buffers_included():
    models = [tiny(1.0, 4), tiny(2.0, 6), tiny(6.0, 8)]
    hwm = copy.deepcopy(models[0])
    load_hybrid(hwm, models)
    state = hwm.state_dict()
    for i, p in enumerate(hwm.parameters()):
        assert torch.equal(p, torch.full_like(p, 3.0 * (i + 1)))
    assert torch.equal(state["1.running_mean"], torch.full((2,), 30.0))
    assert torch.equal(state["1.running_var"], torch.full((2,), 300.0))
    assert state["1.num_batches_tracked"].dtype == torch.long and state["1.num_batches_tracked"].item() == 6
    reference = [*map(copy.deepcopy, models), copy.deepcopy(models[0])]
    official_update_hwm(reference)
    for key, value in reference[-1].state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("gamma", [1.0, 0.5, 0.0])
def test_fusion_is_supplement_eq_2_on_the_whole_state(gamma):
    student, hwm = tiny(1.0, 10), tiny(3.0, 20)
    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    student(torch.ones(4, 2)).sum().backward()
    opt.step()
    momentum = {k: v["momentum_buffer"].clone() for k, v in opt.state_dict()["state"].items()}
    before = copy.deepcopy(student.state_dict())
    fuse(student, hwm, gamma)
    for key, value in student.state_dict().items():
        expected = gamma * hwm.state_dict()[key] + (1 - gamma) * before[key]
        assert torch.equal(value, expected.to(value.dtype)), key
    if gamma == 1:
        assert all(torch.equal(v, hwm.state_dict()[k]) for k, v in student.state_dict().items())
    assert all(torch.equal(v["momentum_buffer"], momentum[k]) for k, v in opt.state_dict()["state"].items())
    reference = copy.deepcopy(before)
    twin = tiny(0.0, 0)
    twin.load_state_dict(reference)
    official_fusion(twin, hwm, gamma)
    assert all(torch.equal(v, twin.state_dict()[k]) for k, v in student.state_dict().items())


@pytest.mark.parametrize("value,expected", [("5b", (5, "b")), ("1e", (1, "e")), ("12e", (12, "e")), ("none", None)])
def test_fusion_every_reads_the_supplement_notation(value, expected):
    assert fusion_interval(value) == expected


@pytest.mark.parametrize("value", ["0b", "5", "b5", "5 b", "1_epoch", "", "5x", "-1e", "1.5e"])
@pytest.mark.bad_input
def test_fusion_every_refuses_anything_else(value):
    with pytest.raises(ConfigError, match=r"fusion_every=.* must be <n>b .* <n>e .* or none"):
        resolve(load_config(None, ["method=okdph", "dataset=synthetic", f"fusion_every={value}"]))


# ---- Configuration ----

def test_defaults_keys_and_labels():
    cfg = resolve(load_config(None, ["method=okdph", "dataset=synthetic"]))
    assert (cfg.students, cfg.temperature, cfg.ce_weight, cfg.kd_weight, cfg.hybrid_weight, cfg.fusion_every) == (
        2, 4.0, 1.0, 0.5, 1.0, "1e")
    kdcl = resolve(load_config(None, ["method=kdcl", "dataset=synthetic"]))
    assert (kdcl.students, kdcl.temperature, kdcl.ensemble_weight) == (2, 4.0, 0.5)
    assert METHODS["okdph"].label({}) == "OKDPH" and METHODS["kdcl"].label({}) == "KDCL"
    flags = lambda method: (method.views, method.extra_views, method.same_init)  # noqa: E731
    assert flags(ParameterHybridization) == (True, 1, True) and flags(CollaborativeLearning) == (True, 0, False)
    assert ParameterHybridization.caption_notes(cfg) and not ParameterHybridization.caption_notes(
        resolve(load_config(None, ["method=okdph", "dataset=synthetic", "student_augment=crop_flip,none,crop_flip"])))


@pytest.mark.parametrize("overrides,match", [
    (["method=okdph", "arch=mlp,cnn"], "needs the same architecture"),
    (["method=okdph", "alpha=2"], "method okdph takes no Rényi order"),
    (["method=kdcl", "alpha=0.5"], "method kdcl takes no Rényi order"),
    (["method=okdph", "students=1"], "K >= 2"),
    (["method=okdph", "student_augment=crop_flip,none"], "takes 3"),
    (["method=kdcl", "student_augment=crop_flip,none,none"], "takes 2"),
    (["method=okdph", "ce_weight=1.2"], r"ce_weight=1.2 is not allowed"),
    (["method=okdph", "hybrid_weight=-0.1"], r"hybrid_weight=-0.1 is not allowed"),
    (["method=okdph", "kd_weight=-1"], r"kd_weight=-1.0 is not allowed"),
    (["method=kdcl", "ensemble_weight=2"], r"ensemble_weight=2.0 is not allowed"),
])
@pytest.mark.bad_input
def test_bad_configs_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        resolve(load_config(None, ["dataset=synthetic", *overrides]))


# Needs Method.same_init (rdml.methods.base) and build_cohort honouring it (rdml.train.cohort).
def test_build_cohort_starts_okdph_students_identical():
    """src/OKDPH.py L119–121: students 2..K load student 1's initial state (Method.same_init, honoured by
    rdml.train.cohort.build_cohort); other methods' students differ."""
    data = load_dataset("synthetic", split_seed=0, test_fraction=0.25)
    execution = choose_execution(torch.device("cpu"), "fp32", "contiguous", False, False, ["cnn"] * 3)
    same = build_cohort(resolve(load_config(None, ["method=okdph", "dataset=synthetic", "arch=cnn", "students=3"])),
                        data, execution, 1)
    other = build_cohort(resolve(load_config(None, ["method=kdcl", "dataset=synthetic", "arch=cnn", "students=3"])),
                         data, execution, 1)
    for student in same[1:]:
        assert all(torch.equal(v, same[0].model.state_dict()[k]) for k, v in student.model.state_dict().items())
        assert student.model[0].weight.data_ptr() != same[0].model[0].weight.data_ptr()
    assert torch.equal(same[0].model[0].weight, other[0].model[0].weight)  # student 0 as any method draws it
    assert not torch.equal(other[1].model[0].weight, other[0].model[0].weight)


# ---- Training steps against the official loop ----

SGD = ["optimizer=sgd", "lr=0.1", "momentum=0.9", "nesterov=false", "weight_decay=5e-4"]  # src/OKDPH.py L117


def cohort_of(cfg, data, *, same=True):
    torch.manual_seed(7)
    students = []
    for arch in cfg.arch:
        model = build_model(arch, data.spec)
        if same and students:
            model.load_state_dict(students[0].model.state_dict())
        opt = make_optimizer(cfg, model.parameters())
        students.append(Student(model, opt, make_scheduler(cfg, opt, 1)))
    return Cohort(students)


def views_batch(k, rows=16, seed=0):
    data = load_dataset("synthetic", split_seed=0, test_fraction=0.25)
    gen = torch.Generator().manual_seed(seed)
    x, y = data.x_train[:rows], data.y_train[:rows]
    views = [x + 0.3 * torch.randn(x.shape, generator=gen) for _ in range(k)]
    return views, y, data


def assert_same_states(got, want):
    for a, b in zip(got, want):
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.parametrize("fusion_every,gamma", [pytest.param("2b", 0.5, marks=pytest.mark.slow),  # ~5 s
                                                pytest.param("1b", 1.0, marks=pytest.mark.slow),  # ~3.5 s
                                                ("none", 0.5), ("1e", 0.5)])
def test_train_steps_are_the_official_loop(fusion_every, gamma):
    """Three batches of two cnn students and the HWM, each on its own view, against src/OKDPH.py L61–103 with
    plain SGD (L117): every weight and batch-norm statistic equal, bit for bit, after every batch."""
    views, y, data = views_batch(3)
    cfg = resolve(load_config(None, ["method=okdph", "dataset=synthetic", "arch=cnn", "ce_weight=0.8", "kd_weight=0.8",
                                     f"hybrid_weight={gamma}", f"fusion_every={fusion_every}", *SGD]))
    cohort = cohort_of(cfg, data)
    nets = [copy.deepcopy(s.model) for s in cohort]
    nets.append(copy.deepcopy(nets[0]))  # the HWM, L125
    opts = [torch.optim.SGD(n.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4) for n in nets[:-1]]
    interval = fusion_interval(fusion_every)
    gap, level = interval if interval else (1, "")
    method = ParameterHybridization(cfg)
    for ii in range(3):
        x = [v.roll(ii, 0) for v in views]
        terms = method.train_step(x, y.roll(ii, 0), cohort)
        official_okdph_batch(nets, opts, torch.stack(x, dim=1), y.roll(ii, 0), ii, omega=0.8, beta=0.8, gamma=gamma, T=4.0,
                             gap=gap, level={"b": "batch", "e": "epoch"}.get(level, ""))
        assert_same_states([s.model for s in cohort], nets[:-1])
        assert_same_states([method.hwm], nets[-1:])
        assert [set(t) for t in terms] == [{"ce", "hwm_ce", "kd"}] * 2
    apart = not torch.equal(cohort[0].model[0].weight, cohort[1].model[0].weight)
    assert apart == (fusion_every != "1b")  # the views set them apart, unless γ = 1 makes each the HWM every batch


def test_kdcl_train_step_is_the_official_loop():
    views, y, data = views_batch(3)
    cfg = resolve(load_config(None, ["method=kdcl", "dataset=synthetic", "arch=cnn", "students=3", *SGD]))
    cohort = cohort_of(cfg, data, same=False)
    nets = [copy.deepcopy(s.model) for s in cohort]
    opts = [torch.optim.SGD(n.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4) for n in nets]
    method = CollaborativeLearning(cfg)
    for ii in range(2):
        x = [v.roll(ii, 0) for v in views]
        method.train_step(x, y.roll(ii, 0), cohort)
        official_kdcl_batch(nets, opts, torch.stack(x, dim=1), y.roll(ii, 0), alpha=0.5, T=4.0)
        assert_same_states([s.model for s in cohort], nets)


def test_one_tensor_feeds_every_network():
    views, y, data = views_batch(1)
    cfg = resolve(load_config(None, ["method=okdph", "dataset=synthetic", "arch=cnn", "fusion_every=none", *SGD]))
    single, listed = cohort_of(cfg, data), cohort_of(cfg, data)
    ParameterHybridization(cfg).train_step(views[0], y, single)
    ParameterHybridization(cfg).train_step([views[0]] * 3, y, listed)
    assert_same_states([s.model for s in single], [s.model for s in listed])


# ---- When the fusion happens ----

def spied(monkeypatch, cohort):
    """Record each student's step and each fusion, in order."""
    events = []
    real_fuse = okdph_module.fuse

    def fuse_spy(model, hwm, gamma):
        events.append(("fuse", next(k for k, s in enumerate(cohort) if s.model is model)))
        real_fuse(model, hwm, gamma)

    monkeypatch.setattr(okdph_module, "fuse", fuse_spy)
    for k, student in enumerate(cohort):
        real_step = student.step
        student.step = lambda k=k, real_step=real_step: (events.append(("step", k)), real_step())
    return events


def test_batch_level_fusion_follows_each_step_when_ii_mod_n_is_0(monkeypatch):
    """src/OKDPH.py L101–103: right after student m's step, in batches ii = 0, n, 2n, … of every epoch (ii from
    0 in each epoch, L66), from the HWM of the batch's start."""
    views, y, data = views_batch(3)
    cfg = resolve(load_config(None, ["method=okdph", "dataset=synthetic", "arch=cnn", "fusion_every=2b",
                                     "hybrid_weight=1", *SGD]))
    cohort = cohort_of(cfg, data)
    events = spied(monkeypatch, cohort)
    method = ParameterHybridization(cfg)
    fused_at = []
    for epoch, batches in ((1, 5), (2, 3)):
        for ii in range(batches):
            before = mean_state([s.model for s in cohort])
            events.clear()
            method.train_step(views, y, cohort)
            fusing = ii % 2 == 0
            expected = [("step", 0), ("fuse", 0), ("step", 1), ("fuse", 1)] if fusing else [("step", 0), ("step", 1)]
            assert events == expected
            if fusing:  # γ = 1: each student is the HWM, whose weights are the students' mean before the steps
                fused_at.append((epoch, ii))
                for s in cohort:
                    for name, p in s.model.named_parameters():
                        assert torch.equal(p, before[name]), name
                    assert all(torch.equal(v, method.hwm.state_dict()[k]) for k, v in s.model.state_dict().items())
                    assert s.optimizer.state  # the step was taken (momentum kept), then overwritten
        events.clear()
        method.end_epoch(epoch, cohort)
        assert events == []
    assert fused_at == [(1, 0), (1, 2), (1, 4), (2, 0), (2, 2)]


def test_epoch_level_fusion_follows_official_epochs_0_n_2n(monkeypatch):
    """src/OKDPH.py L137–141: after the test and LR step of official epoch e (from 0) with e % n == 0, from the HWM
    as it stands (its last batch's), not recomputed: rdml epochs 1, 1+n, … (rdml counts from 1)."""
    views, y, data = views_batch(3)
    cfg = resolve(load_config(None, ["method=okdph", "dataset=synthetic", "arch=cnn", "fusion_every=2e",
                                     "hybrid_weight=1", *SGD]))
    cohort = cohort_of(cfg, data)
    events = spied(monkeypatch, cohort)
    method = ParameterHybridization(cfg)
    fused = []
    for epoch in range(1, 6):
        events.clear()
        method.train_step(views, y, cohort)
        assert events == [("step", 0), ("step", 1)]
        hwm = copy.deepcopy(method.hwm.state_dict())
        mean_now = mean_state([s.model for s in cohort])
        events.clear()
        method.end_epoch(epoch, cohort)
        if events:
            fused.append(epoch)
            assert events == [("fuse", 0), ("fuse", 1)]
            for s in cohort:
                assert all(torch.equal(v, hwm[k]) for k, v in s.model.state_dict().items())
                assert not torch.equal(s.model[0].weight, mean_now["0.weight"])  # the HWM is not recomputed
        assert method.batch == 0
    assert fused == [1, 3, 5]


# ---- Whole runs: wiring, records, kill and resume ----
# These need the loop's wiring: `student_augment` views in rdml.train.loop.train_epoch, Method.end_epoch called
# there after the evaluation and the schedulers' step and before the epoch's checkpoint, and same_init above.

OKDPH_RUN = ["method=okdph", "arch=cnn", "batch_size=8", "student_augment=crop_flip,none,crop_flip", "hybrid_weight=0.5"]


def test_a_run_records_the_hwm_and_each_term_and_fuses_after_evaluating(tmp_path):
    record = run(tmp_path / "r", "method=okdph", "arch=cnn", "student_augment=crop_flip,none,crop_flip", "fusion_every=1e")
    assert record["status"] == "ok" and record["label"] == "OKDPH"
    assert all({"student_0", "student_1", "ensemble", "hwm"} == set(e["test"]) for e in record["epochs"])
    terms = ("ce", "hwm_ce", "kd", "total")
    assert set(record["epochs"][0]["train"]) == {f"student_{k}/{t}" for k in (0, 1) for t in terms}
    assert record["epochs"][-1]["train"]["student_0/hwm_ce"] == pytest.approx(0.0)  # ω = 1 by default
    # γ = 1 fuses at every epoch's end but the last (tested before the fusion, src/OKDPH.py L131–141): model.pt
    # holds the students the last epoch tested, apart; the official code's last fusion only reaches its saved files
    states = torch.load(tmp_path / "r" / "model.pt", weights_only=True)["states"]
    assert not all(torch.equal(v, states[1][k]) for k, v in states[0].items())
    assert record["epochs"][-1]["test"]["student_0"] != record["epochs"][-1]["test"]["student_1"]


@pytest.mark.parametrize("method", [["method=okdph", "fusion_every=1b", "hybrid_weight=0.5"], ["method=kdcl", "students=3"]])
def test_fused_students_step_in_turn(tmp_path, method):
    """One vmapped forward for the cohort, then a backward pass, step (and OKDPH fusion) per student through it."""
    record = run(tmp_path / "r", *method, "arch=cnn", "fuse_students=true", "epochs=2")
    assert record["status"] == "ok" and record["environment"]["fuse_students"] is True


def test_kdcl_run_records_its_terms(tmp_path):
    record = run(tmp_path / "r", "method=kdcl", "arch=mlp,cnn", "student_augment=crop_flip,crop_flip")
    assert record["status"] == "ok" and record["label"] == "KDCL" and "hwm" not in record["epochs"][0]["test"]
    assert set(record["epochs"][0]["train"]) == {f"student_{k}/{t}" for k in (0, 1) for t in ("ce", "kd", "total")}


@pytest.mark.slow  # ~5 s
@pytest.mark.fault
def test_batch_level_hybrid_state_resumes_bit_identically(tmp_path):
    """Fusion every 3 batches of 19 (ii restarts each epoch): killed after epoch 1's checkpoint, which holds the
    method's state, the run resumes to the uninterrupted one's every number and weight."""
    args = [*OKDPH_RUN, "batch_size=32", "fusion_every=3b", "epochs=3"]

    def holds_the_method_state(cut):
        saved = read_checkpoint(cut / "checkpoint.pt")["method"]
        assert saved["batch"] == 0 and set(saved["hwm"]) == set(build_model("cnn", load_dataset(
            "synthetic", split_seed=0, test_fraction=0.25).spec).state_dict())

    resumes_to_the_uninterrupted_run(tmp_path, *args, between=holds_the_method_state)


@pytest.mark.system  # rdml train processes, one SIGKILLed and resumed
@pytest.mark.fault
def test_sigkill_then_same_command_resumes_okdph_to_identical_metrics(tmp_path):
    """Epoch-level fusion every 2 epochs with γ = 0.5 and the HWM evaluated each epoch: killed with SIGKILL
    after at least two epochs, the same command resumes to the uninterrupted run's every number and weight."""
    done = sigkill_and_resume(["dataset=synthetic", *OKDPH_RUN, "fusion_every=2e", "epochs=8"], 8, tmp_path)
    assert "hwm" in done["epochs"][-1]["test"]
