"""The papers' studies in params.yaml: every stated hyper-parameter in the resolved configs, the job
counts of each full study's dry run, and one job of each study's smoke variant through the pipeline."""

import functools
import json
import re

import pytest
import torch

import conftest
from conftest import BIN, REPO, make_project
from rdml import paths
from rdml.config import config_values
from rdml.data.catalog import DATASETS
from rdml.models import ARCHITECTURES, build_model
from rdml.methods import METHODS
from rdml.pipeline.console import job_log
from rdml.study.params import load_params
from rdml.keys import ConfigError
from rdml.study.plan import plan_jobs, plan_measurements, plan_study, plan_tables
from rdml.report.table import build_tables

PARAMS = load_params(REPO / "params.yaml")

# What the papers state, written out again here (not read from params.yaml).
# Every paper trained in float32, so every paper study pins precision=fp32.
FP32 = dict(precision="fp32")
# RDML: the released code computes all outputs once per batch (simultaneous updates).
# The paper's D_α is eq. 3.4 (exact, probability_floor=0); the released RenyiLoss clamps
# "p = torch.clamp(F.softmax(logits_p, dim=1), self.eps, 1)" with eps = 1e-8 (torchversion/core/dml.py).
RDML_PAPER = dict(optimizer="sgd", nesterov=True, momentum=0.9, lr=0.1, weight_decay=5e-4, batch_size=128, epochs=200,
                  schedule="step", step_size=60, gamma=0.2, update_order="simultaneous", probability_floor=0.0, **FP32)
# RDML §5.1, Table 2: "learning rate to 0.005 and set weight decay as 0.0001 using the SGD with momentum 0.9. We run
# 30 epochs with batch size 32 and decay the learning rate by 0.1 at epochs (16, 22). Also, the gradients are clipped
# by the max norm 5"; "timm is applied to acquire the pretrained weights".
RDML_TRANSFER = dict(optimizer="sgd", momentum=0.9, nesterov=False, lr=0.005, weight_decay=1e-4, batch_size=32, epochs=30,
                     schedule="multistep", milestones=[16, 22], gamma=0.1, grad_clip=5.0, pretrained=True, head="pretrained",
                     probability_floor=0.0, **FP32)
# RDML §5.1–5.2, Table 3: "20 epochs are run and the learning rate is decayed every three epochs with a batch size of
# 128"; "20 % of the training set" for validation; the "weight decay" of 0.5 / 0.9 is the released StepLR's gamma.
RDML_TEXT = dict(epochs=20, batch_size=128, schedule="step", step_size=3, weight_decay=0.0, val_fraction=0.2,
                 normalize="none", probability_floor=0.0, **FP32)
# OKDPH supplement §1.2: "the SGD optimizer with a learning rate of 0.1 decayed at the 150th and 225th epoch by a factor of
# 0.1 ... The weight decay, the number of epochs, and batch sizes are set to 5e-4, 300, and 128"; momentum 0.9 (the
# default of src/OKDPH.py L172) and no Nesterov (L117: optim.SGD without nesterov) as the official scripts
# (tianlizhang/OKDPH), which normalise with fixed CIFAR constants (src/data/data_loader.py L150–163).
OKDPH_PAPER = dict(epochs=300, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4,
                   schedule="multistep", milestones=[150, 225], gamma=0.1, normalize="okdph", **FP32)
# DML Algorithm 1 "consists of 4 sequential steps if running on a single GPU": Θ1 is updated, p1 recomputed, then Θ2.
DML_PAPER = dict(optimizer="sgd", nesterov=True, momentum=0.9, lr=0.1, batch_size=64, schedule="step", step_size=60,
                 gamma=0.1, epochs=200, augment="crop_flip_reflect", update_order="sequential", **FP32)
# Thesis Table 3.1; §2.1 "Nesterov momentum μ based on the formula from Sutskever et al. [2013]"; §3.2 "Training
# utilizes the Timm library" (timm's sgd: Nesterov, no decay on 1-d parameters) and "rescaling, cropping, and flipping".
THESIS = dict(optimizer="sgd", lr=0.08, momentum=0.9, weight_decay=5e-4, batch_size=512, epochs=220, nesterov=True,
              decay_1d=False, augment="resized_crop_flip", **FP32)
FMNIST_A = dict(optimizer="adam", lr=0.01, batch_size=1024, epochs=100, schedule="constant", **FP32)
FMNIST_B = dict(optimizer="adamw", lr=0.005, batch_size=1024, epochs=100, schedule="onecycle", pct_start=0.1, **FP32)
# DML §4.1 ("Adam, lr 0.0002, β1 0.5, β2 0.999, batch 16"), Algorithm 1; where the paper is silent, the official code
# (YingZhangDUT/Deep-Mutual-Learning scripts/train_dml_mobilenet_on_market.sh, train_image_classifier.py defaults)
# DML §4.1: "For ImageNet, we use RMSProp with decay of 0.9, mini-batch size of 64, and initial learning rate of 0.1. The
# learning rate decayed every 20 epochs using an exponential rate of 0.16."
DML_IMAGENET = dict(optimizer="rmsprop_tf", rmsprop_decay=0.9, batch_size=64, lr=0.1, schedule="step", step_size=20,
                    gamma=0.16, **FP32)
DML_MARKET = dict(optimizer="adam", lr=0.0002, adam_beta1=0.5, adam_beta2=0.999, batch_size=16,
                  epochs=247, schedule="constant", label_smoothing=0.1, weight_decay=4e-5, weight_ema=0.9999,
                  augment="flip", normalize="inception", **FP32)
STATED = {
    "rdml_table1": (RDML_PAPER, dict(metric="last10", runs=90)),
    "rdml_table1_as_released": ({**RDML_PAPER, "schedule": "multistep", "milestones": [16, 22], "gamma": 0.2,
                                 "augment": "crop_flip_rotate", "normalize": "imagenet",
                                 "probability_floor": 1e-8}, dict(metric="last5", runs=90)),
    "rdml_table2": (RDML_TRANSFER, dict(metric="last5", runs=90)),
    "rdml_table2_new_heads": ({**RDML_TRANSFER, "head": "dataset"}, dict(metric="last5", runs=90)),
    "rdml_table3": (RDML_TEXT, dict(metric="at_best_val", runs=90)),
    "rdml_table3_as_released": (RDML_TEXT, dict(metric="at_best_val", runs=90)),
    "okdph_table3": (OKDPH_PAPER, dict(metric="best", runs=420)),
    "okdph_table4": (OKDPH_PAPER, dict(metric="best", runs=210)),
    "okdph_table5": (OKDPH_PAPER, dict(metric="best", runs=200)),
    "okdph_fig1": (OKDPH_PAPER, dict(metric="best", runs=20)),
    "okdph_landscape": (OKDPH_PAPER, dict(metric="best", runs=40)),
    "dml_table2": (DML_PAPER, dict(runs=54)),
    "dml_table4": (DML_PAPER, dict(runs=21)),
    "renyi_kd_thesis": (THESIS, dict(runs=171)),
    "dml_vs_kd_fmnist_a": (FMNIST_A, dict(runs=22)),
    "dml_vs_kd_fmnist_b": (FMNIST_B, dict(runs=22)),
    "dml_cohort_size": (DML_PAPER, dict(runs=24)),
    "dml_semi_supervised": (DML_PAPER, dict(runs=42)),
    "dml_analyses": (DML_PAPER, dict(runs=18)),
    "dml_market": (DML_MARKET, dict(runs=90)),
    # the official code's own batches, summed peers, no multi-query: train_models.py L197-201, L310-316, L90-96
    "dml_market_as_released": ({**DML_MARKET, "batches": "own", "peer_reduction": "sum"}, dict(runs=6)),
    "dml_imagenet": (DML_IMAGENET, dict(metric="final", runs=9)),
}


def resolved(study):
    return {run.id: run.config for run in plan_study(PARAMS, study)}


def test_every_paper_study_names_its_precision_and_memory_layout():
    """A layout changes the last bits of float32 sums, so a paper study names one rather than timing it (`auto`,
    rdml.train.autotune): the same params.yaml gives the same numbers on every machine of one CPU model."""
    papers = [name for name, study in PARAMS["studies"].items() if study.get("paper")]
    assert len(papers) >= len(STATED)
    for name in papers:
        for cfg in resolved(name).values():
            assert (cfg.precision, cfg.compile) == ("fp32", False), name
            assert cfg.memory_format == ("contiguous" if DATASETS[cfg.dataset].spec.kind == "text"
                                         else "channels_last"), (name, cfg.dataset)


@pytest.mark.parametrize("study", sorted(STATED))
def test_every_stated_hyper_parameter(study):
    stated, extra = STATED[study]
    configs = resolved(study)
    assert len(configs) == extra["runs"]
    if "metric" in extra:
        assert PARAMS["studies"][study]["metric"] == extra["metric"]
    checked = set()
    for run_id, cfg in configs.items():
        for key, value in stated.items():
            if key in config_values(cfg):  # a method's own key is stated of the runs of that method
                assert getattr(cfg, key) == value, (study, run_id, key)
                checked.add(key)
    assert checked == set(stated), f"{study}: no run takes {set(stated) - checked}"


def test_dml_market_runs_algorithm_1_save_fig_2b_s_distributed_cohort():
    dml = {run_id: cfg for run_id, cfg in resolved("dml_market").items() if cfg.method in ("dml", "dml_e")}
    distributed = {f"market1501/dml-mobilenetv1_100+mobilenetv1_100-a1-distributed-s{seed}" for seed in (0, 1, 2)}
    assert {run_id for run_id, cfg in dml.items() if cfg.update_order != "sequential"} == distributed
    assert {run_id for run_id, cfg in dml.items() if cfg.distributed} == distributed


def test_rdml_table1_grid():
    configs = resolved("rdml_table1")
    assert {c.dataset for c in configs.values()} == {"cifar10", "cifar100"}
    assert {c.arch[0] for c in configs.values()} == {"googlenet", "resnet34", "vgg16_bn"}
    dml = [c for c in configs.values() if c.method == "dml"]
    assert {c.alpha for c in dml} == {0.5, 1.0, 1.5, 2.0} and all(c.students == 2 for c in dml)
    assert {c.seed for c in configs.values()} == {0, 1, 2}


def test_rdml_table1_as_released_runs_the_released_googlenet():
    """The released copy of pytorch-cifar100's GoogLeNet writes `nn.BatchNorm2d(n5x5, n5x5)` (eps = n5x5)."""
    assert {c.arch[0] for c in resolved("rdml_table1_as_released").values()} == {"googlenet_as_released", "resnet34",
                                                                              "vgg16_bn"}
    assert {c.arch[0] for c in resolved("rdml_table1").values()} >= {"googlenet"}


def test_rdml_table2_grid():
    """RDML Table 2: DTD and Flowers102 at 224 px, InceptionV4, ViT and the released "YoloV3" (VOLO-D3), rows Ind.
    and α ∈ {0.5, 1, 1.5, 2}; each data set with the released training transform."""
    configs = resolved("rdml_table2")
    assert {(c.dataset, c.augment) for c in configs.values()} == {("dtd", "rotate_resized_crop_flip"),
                                                                   ("flowers102", "resized_crop_flip")}
    assert {c.arch[0] for c in configs.values()} == {"inception_v4", "vit_base_patch16_224_as_released", "volo_d3_224"}
    assert {c.alpha for c in configs.values() if c.method == "dml"} == {0.5, 1.0, 1.5, 2.0}
    smoke = {run.id: run.config for run in plan_study(PARAMS, "rdml_table2_smoke")}
    assert {c.arch[0] for c in smoke.values()} == {"test_vit"} and all(c.pretrained for c in smoke.values())
    assert {c.dataset for c in smoke.values()} == {"tiny_dtd", "tiny_flowers102"} and len(smoke) == 10


def test_rdml_table3_grid():
    """RDML Table 3: "an initial learning rate to 0.0001 and set the weight decay to 0.9 for the experiments with
    CharCNN for Yahoo!Answers and YelpReviewFull ... an initial learning rate to 0.001 and set the weight decay to 0.5
    for all other experiments"; each network with the released code's optimiser (fastText SGD, CharCNN Adam)."""
    for study, charcnn in (("rdml_table3", "charcnn"), ("rdml_table3_as_released", "charcnn_as_released")):
        configs = resolved(study)
        assert {c.arch[0] for c in configs.values()} == {"fasttext", charcnn}
        for cfg in configs.values():
            slow = cfg.arch[0] == charcnn and cfg.dataset in ("yahoo_answers", "yelp_full")
            assert (cfg.lr, cfg.gamma) == ((1e-4, 0.9) if slow else (1e-3, 0.5)), cfg.out
            assert cfg.optimizer == {"fasttext": "sgd", charcnn: "adam"}[cfg.arch[0]] and cfg.momentum == 0.0
        assert {c.alpha for c in configs.values() if c.method == "dml"} == {0.5, 1.0, 1.5, 2.0}
        assert {c.dataset for c in configs.values()} == {"ag_news", "yahoo_answers", "yelp_full"}


def test_okdph_tables_take_table_6_and_7_and_the_students_compositions():
    """Supplement Table 6 (e.g. CIFAR-100 VGG16-3: ω 0.3, β 0.3, γ 1.0, Δ 3e), Table 7 (CIFAR-100 1 %: 0.8, 0.8, 0.5,
    5b), the compositions "1, 3, 4 on CIFAR-10, 2, 3, 4 on CIFAR-100", and the Noisy and limited settings."""
    keys = lambda c: (c.ce_weight, c.kd_weight, c.hybrid_weight, c.fusion_every)
    table3 = resolved("okdph_table3")
    vgg3 = [c for c in table3.values() if c.method == "okdph" and c.dataset == "cifar100" and c.arch == ["okdph_vgg16"] * 3]
    assert vgg3 and all(keys(c) == (0.3, 0.3, 1.0, "3e") for c in vgg3)
    r2 = [c for c in table3.values() if c.method == "okdph" and c.dataset == "cifar10" and c.students == 2]
    assert {tuple(c.student_augment) for c in r2} == {("crop_flip", "crop_flip_cutout", "crop_randaugment")}
    assert {tuple(c.student_augment) for c in table3.values() if c.method == "kdcl" and c.dataset == "cifar100"} == {
        ("crop_flip_rotate",) * k for k in (2, 3, 4)}
    table4 = resolved("okdph_table4")
    assert {c.dataset for c in table4.values()} == {"cifar10", "cifar100", "cifar10_10", "cifar10_1", "cifar100_10", "cifar100_1"}
    assert {c.input_noise for c in table4.values() if c.dataset in ("cifar10", "cifar100")} == {1.0}
    assert {keys(c) for c in table4.values() if c.method == "okdph" and c.dataset == "cifar100_1"} == {(0.8, 0.8, 0.5, "5b")}
    assert {c.arch[0] for c in table4.values()} == {"okdph_densenet40_12"}
    # the branch-based methods: #S/B branches, and what the OKDPH code ran where it departs from their papers
    methods = ("one", "okddip", "ffl", "pcl")
    assert {(c.method, c.branches) for c in table3.values() if c.method in methods} == {(m, k) for m in methods for k in (2, 3, 4)}
    branched = [c for c in (*table3.values(), *table4.values()) if c.method in methods]
    assert {(c.detach_teacher, c.test_ensemble) for c in branched if c.method == "one"} == {(False, "mean")}
    assert {(c.arch[0], c.repeat_branch_forward) for c in table3.values() if c.method == "one"} == {
        ("okdph_resnet32", False), ("okdph_vgg16", True)}
    assert {(c.shared_stage, c.augment) for c in table4.values() if c.method == "one"} == {(True, "crop_flip"), (True, "crop_flip_rotate")}
    assert {c.densenet_as_released for c in table4.values() if c.method == "okddip"} == {True}
    assert {(c.fusion_lr, c.conv_init, c.branch_sharing) for c in branched if c.method == "ffl"} == {("constant", "okdph", "okdph")}
    assert {(c.branches, tuple(c.student_augment), c.rampup_divisor, c.ema_global_step) for c in table4.values()
            if c.method == "pcl" and c.dataset.startswith("cifar100")} == {(3, ("crop_flip_rotate",) * 3, 1, "zero")}


def test_dml_table2_pairs():
    pairs = {tuple(c.arch) for c in resolved("dml_table2").values() if c.method == "dml"}
    assert pairs == {("resnet32", "resnet32"), ("wrn_28_10", "resnet32"), ("mobilenet", "resnet32"),
                     ("mobilenet", "mobilenet"), ("wrn_28_10", "mobilenet"), ("wrn_28_10", "wrn_28_10")}


def test_dml_table4_teachers_are_the_independent_net_1():
    runs = {r.id: r for r in plan_study(PARAMS, "dml_table4")}
    kd = [r for r in runs.values() if r.keys["method"] == "kd"]
    assert len(kd) == 6
    for run in kd:
        teacher = runs[run.teacher.id]
        assert teacher.keys["method"] == "independent" and teacher.keys["seed"] == run.keys["seed"]
        assert teacher.keys["arch"][0] in ("wrn_28_10", "mobilenet") and run.keys["arch"] == ["resnet32"]


def test_renyi_kd_thesis_settings():
    configs = resolved("renyi_kd_thesis")
    kd = [c for c in configs.values() if c.method == "kd"]
    assert sorted({c.alpha for c in kd}) == [0.05, 0.1, 0.25, 0.5, 0.625, 0.75, 0.875, 1, 1.25, 1.5, 2, 3.5, 5, 7.5, 10, 12.5]
    # "we chose ResNet152 as the architecture for the teacher model and ResNet18 for the student model", from timm
    assert all(c.temperature == 4 and c.beta == 0.9 and c.arch == ["timm_resnet18"] for c in kd)
    assert len({c.seed for c in kd}) == 10
    assert [c.arch for c in configs.values() if c.method == "teacher"] == [["timm_resnet152"]]
    assert sum(c.method == "independent" and c.arch == ["timm_resnet18"] for c in configs.values()) == 10
    assert PARAMS["studies"]["renyi_kd_thesis"]["kd_table"]["at_epochs"] == [10]


@pytest.mark.parametrize("study", ["dml_vs_kd_fmnist_a", "dml_vs_kd_fmnist_b"])
def test_fmnist_study(study):
    """"We train five runs … The networks are initialized identically at the beginning of each run": one
    initialisation seed, five batch orders. The article prints L_KD = (1−α)·H(y, p^s) + α·D(p_τ^t, p_τ^s) (no T²).
    "The best student in the cohort": the table has a row of each cohort's best student."""
    configs = resolved(study)
    assert {c.init_seed for c in configs.values()} == {0} and {c.seed for c in configs.values() if c.method != "teacher"} == set(range(5))
    assert {c.kd_scale for c in configs.values() if c.method == "kd"} == {"none"}
    table = next(t for t in plan_tables(PARAMS, study) if t.name == "methods_table")
    assert "fashion_mnist: DML, best of 2 students" in table.rows and any(e.best for e in table.entries)
    assert {c.dataset for c in configs.values()} == {"fashion_mnist"}
    assert sorted(c.arch[0] for c in configs.values() if c.method == "teacher") == ["resnet18", "resnet50"]
    assert all(c.arch[0] == "resnet18" for c in configs.values() if c.method != "teacher")
    assert len({c.seed for c in configs.values()}) == 5


def test_cohort_sizes():
    """DML Fig. 3: "the performance of the average single network increases with the number of networks in the
    DML cohort, hence its gap to the independently trained networks"; Fig. 3(b) compares "DML ensemble vs.
    Independent ensemble". Each K is therefore trained alone, with DML and with DML_e."""
    cohorts = {(c.method, c.students) for c in resolved("dml_cohort_size").values()}
    assert cohorts == {(m, k) for m in ("independent", "dml") for k in (2, 3, 4)} | {("dml_e", 3), ("dml_e", 4)}
    table = next(t for t in plan_tables(PARAMS, "dml_cohort_size") if t.name == "cohort_table")
    assert table.columns == ["Ind.", "DML", "DML_e", "Ind. ensemble", "DML ensemble", "DML_e ensemble"]
    assert {e.students for e in table.entries if e.columns[0].endswith("ensemble")} == {("ensemble",)}


def test_semi_supervised_strategies():
    """DML §4.10: "we randomly select a subset (from 10% to 100%) of the training images per class as labeled"; "1)
    training on the labelled data only with single network; 2) training on labelled data only with DML
    (DML-labelled). 3) training on all data with DML, where the classification loss is computed for labelled data
    only, and KL loss is calculated for all the training data (DML-all)". The network is not named: ResNet-32."""
    runs = plan_study(PARAMS, "dml_semi_supervised")
    strategies = {(r.config.method, r.config.labelled_fraction, r.config.unlabelled) for r in runs}
    partial = {(m, f, u) for f in (0.1, 0.25, 0.5, 0.75) for m, u in
               (("independent", "drop"), ("dml", "drop"), ("dml", "mimic"))}
    assert strategies == partial | {("independent", 1.0, "mimic"), ("dml", 1.0, "mimic")}
    assert {tuple(r.config.arch) for r in runs} == {("resnet32",), ("resnet32", "resnet32")}
    table = next(t for t in plan_tables(PARAMS, "dml_semi_supervised"))
    assert table.rows == ["Single (labelled)", "DML-labelled", "DML-all"]


def test_dml_analyses_measure_the_papers_networks():
    """DML §4.8: Fig. 4c "a ResNet-32 on CIFAR-100 trained by DML vs. an independently trained ResNet-32"; the
    teaching signal "DML (0.2805) than DML_e (0.1562)"; flat minima "on CIFAR-100 using MobileNet"."""
    measured = {run.id: wanted for run, wanted in plan_measurements(PARAMS, "dml_analyses").values()}
    runs = {r.id: r for r in plan_study(PARAMS, "dml_analyses")}
    assert set(measured) == set(runs)
    kinds = {(runs[i].config.method, tuple(runs[i].config.arch), tuple(w)) for i, w in measured.items()}
    assert kinds == {("independent", ("resnet32",), ("predictions",)), ("dml", ("resnet32",) * 2, ("predictions",)),
                     ("dml", ("resnet32",) * 3, ("predictions",)), ("dml_e", ("resnet32",) * 3, ("predictions",)),
                     ("independent", ("mobilenet",), ("noise",)), ("dml", ("mobilenet",) * 2, ("noise",))}


sh = functools.partial(conftest.sh, check=False)  # the tests read the exit status themselves
SNAKEMAKE = str(BIN / "snakemake")
ANALYSIS = "dml_analyses_smoke"  # trained, measured and tabulated
MARKET = "dml_market_smoke"  # every run trained on generated Market-1501 files, and tabulated
IMAGENET = "dml_imagenet_smoke"  # every run streamed from shards prepared from generated ILSVRC2012 archives, tabulated
BRANCHED = "okdph_table3_smoke"  # the branch-based OKDPH baselines, one job of each method
BRANCH_METHODS = ("one", "okddip", "ffl", "pcl")
LANDSCAPE = "okdph_landscape_smoke"  # one panel measured: a run beside its OKDPH partner
SMOKES = sorted(f"{study}_smoke" for study in STATED)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("studies"))


def cost(run, runs):
    """Parameters to train for this run, its teacher's included: CI runs the cheapest job of a study."""
    return sum(size(a, run.dataset) for a in run.keys["arch"]) + (cost(run.teacher, runs) if run.teacher else 0)


@functools.cache
def size(arch, dataset):
    """Parameters of one network for one data set (built once: the smoke studies' runs share few networks)."""
    spec, vectors = DATASETS[dataset].spec, torch.zeros(2, 300)  # a word model's table is not trained
    return sum(p.numel() for p in build_model(arch, spec, embeddings=vectors if ARCHITECTURES[arch].words else None).parameters())


@functools.cache
def cheapest(smoke, method=None):
    """The cheapest run of a smoke study (of `method`'s runs only, if given), as the study plans it, and its job."""
    runs = {r.id: r for r in plan_study(PARAMS, smoke) if method in (None, r.method)}
    run = min(runs.values(), key=lambda r: cost(r, runs))
    return run, next(job for job in plan_jobs(PARAMS, smoke) if run in job.runs)


@functools.cache
def built_as(smoke):
    """The first smoke study (in SMOKES' order) whose cheapest run trains what `smoke`'s does: the same configuration
    and code (two studies' Ind. ResNet-32, say). CI builds it once; `smoke`'s own job would train the same bits."""
    run = cheapest(smoke)[0]
    return next(other for other in SMOKES if (cheapest(other)[0].config_sha256, cheapest(other)[0].code.sha256)
                == (run.config_sha256, run.code.sha256))


@functools.cache
def cheapest_panel():
    """The landscape smoke study's cheapest panel: the measured run and its partner together, and its spec."""
    measured = plan_measurements(PARAMS, LANDSCAPE).values()
    runs = {run.id: run for run in plan_study(PARAMS, LANDSCAPE)}
    return min(measured, key=lambda m: cost(m[0], runs) + cost(runs[m[1]["landscape"]["partner"]], runs))


@pytest.fixture(scope="module")
def pipeline(project):
    """One Snakemake call builds what every test below reads: the cheapest job of each smoke study, the cheapest
    job of each branch-based OKDPH method, and the analysis smoke study's tables (what `all_tables` builds of it,
    less the scorecard). One call plans once and keeps both cores busy (each job runs one thread, params.yaml's
    `threads`); --keep-going lets every other job finish when one fails, so each test reads its own outcome."""
    targets = [cheapest(smoke)[1].file for smoke in SMOKES if built_as(smoke) == smoke]
    targets += [cheapest(BRANCHED, method)[1].file for method in BRANCH_METHODS]
    targets += [paths.tables_dir(ANALYSIS), paths.curves_dir(ANALYSIS), paths.summary_file(ANALYSIS)]
    targets += [paths.tables_dir(MARKET), paths.summary_file(MARKET)]
    targets += [paths.tables_dir(IMAGENET), paths.summary_file(IMAGENET)]
    targets += [paths.measures_file(LANDSCAPE, cheapest_panel()[0].id)]
    return sh(SNAKEMAKE, *dict.fromkeys(targets), "--cores", "2", "--keep-going", "--config",
              f"build=[{','.join(SMOKES)}]", cwd=project)


def failed(pipeline, project, study, job=None):
    """What a test shows when its part of the pipeline is missing: Snakemake's exit status, its errors that
    name the study, and the end of the job's log."""
    errors = [block for block in re.split(r"\n(?=\S)", pipeline.stderr) if "Error" in block and study in block]
    shown = "\n".join(errors)[-4000:] if errors else pipeline.stdout[-2000:] + pipeline.stderr[-3000:]
    log = project / job_log(study, job.id) if job else None
    if log is not None:
        shown += f"\n--- {log.relative_to(project)}:\n" + (log.read_text()[-3000:] if log.is_file() else "(no log)")
    return f"snakemake exited {pipeline.returncode}\n{shown}"


@pytest.mark.system  # Snakemake trains, measures and tabulates
@pytest.mark.tamper
def test_analysis_smoke_study_measures_its_runs_and_refuses_edited_measurements(pipeline, project):
    """The smoke variant of dml_analyses through Snakemake: train, measure (a rule reading model.pt), tables."""
    smoke = ANALYSIS
    tables = project / paths.tables_dir(smoke)
    built = (tables, project / paths.curves_dir(smoke), project / paths.summary_file(smoke))
    assert all(path.exists() for path in built), failed(pipeline, project, smoke)
    entropy = (tables / "entropy_table.csv").read_text()
    assert "tiny_cifar100: DML_e (K=3),Teaching-signal entropy" in entropy
    flat = (tables / "flat_minima_table.md").read_text()
    assert "| tiny_cifar100: DML |" in flat and "(n=10)" in flat  # 2 students × 5 draws × 1 seed
    measures = next((project / "results" / smoke / "measures").glob("*/dml-mobilenet*.json"))
    original = measures.read_text()
    forged = json.loads(original)
    forged["students"]["student_0"]["loss"] = 0.0
    measures.write_text(json.dumps(forged))
    try:
        with pytest.raises(ConfigError, match="does not hash to its record_sha256"):
            build_tables(PARAMS, smoke, project)
    finally:
        measures.write_text(original)  # the project is the module's: no other test reads a forged file


@pytest.mark.system  # Snakemake trains a run and its partner, then measures the pair
def test_a_landscape_panel_is_measured_beside_its_partner_through_the_pipeline(pipeline, project):
    run, wanted = cheapest_panel()
    path = project / paths.measures_file(LANDSCAPE, run.id)
    assert path.is_file(), failed(pipeline, project, LANDSCAPE)
    measured = json.loads(path.read_text())
    partner = wanted["landscape"]["partner"]
    record = json.loads((project / paths.run_dir(LANDSCAPE, partner) / "record.json").read_text())
    assert measured["measurements"] == wanted and measured["partner"]["run"] == partner
    assert measured["partner"]["run_record_sha256"] == record["record_sha256"] and record["kept_epochs"]
    assert set(measured["students"]) == {"student_0", "student_1", "partner.student_0", "partner.student_1"}
    assert len(measured["landscape"]["grid"]) == 4  # the smoke grid: 2 × 2 points


def listed_jobs(stdout):
    """The jobs of a dry run's listing: each `rule <name>:` and the `key: value` lines under it (wildcards, input)."""
    jobs, job = [], None
    for line in stdout.splitlines():
        if rule := re.fullmatch(r"(?:local)?rule (\w+):", line):
            job = {"rule": rule[1]}
            jobs.append(job)
        elif job is not None and (item := re.fullmatch(r"    (\w+): (.*)", line)):
            job[item[1]] = item[2]
        elif not line.strip():
            job = None
    for job in jobs:
        job["wildcards"] = dict(w.split("=", 1) for w in job.get("wildcards", "").split(", ") if w)
        job["input"] = job.get("input", "").split(", ") if job.get("input") else []
        job["resources"] = dict(r.split("=", 1) for r in job.get("resources", "").split(", ") if "=" in r)
    return jobs


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One `snakemake all_tables -n` of every paper study, in a project of its own (nothing built there):
    Snakemake's start and planning once (~10 s), each study's jobs then read from the listing by their wildcards."""
    root = make_project(tmp_path_factory.mktemp("dry_run"))
    result = sh(SNAKEMAKE, "all_tables", "-n", "--config", f"build=[{','.join(sorted(STATED))}]", cwd=root)
    jobs = listed_jobs(result.stdout)
    # the listing is read whole: as many jobs of each rule as Snakemake's own job stats count
    stats = re.findall(r"^(\w+)\s+(\d+)$", result.stdout.partition("Job stats:")[2].partition("\n\n")[0], re.M)
    counted = {rule: int(count) for rule, count in stats if rule != "total"}
    listed = {rule: sum(job["rule"] == rule for job in jobs) for rule in {job["rule"] for job in jobs}}
    return result, jobs, counted, listed


@pytest.mark.system  # a Snakemake dry run of each study
@pytest.mark.parametrize("study", sorted(STATED))
def test_dry_run_lists_every_job(study, dry_run):
    result, jobs, counted, listed = dry_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert listed == counted  # each job of the listing read
    own = [job for job in jobs if job["wildcards"].get("study") == study]
    assert sum(job["rule"] in ("train_job", "train_cohort_job") for job in own) == STATED[study][1]["runs"]
    cohorts = [job for job in own if job["rule"] == "train_cohort_job"]  # distributed: a GPU and a task per student
    assert all(job["resources"]["gpu"] == job["resources"]["tasks"] == "2" for job in cohorts)
    assert len(cohorts) == (3 if study == "dml_market" else 0)
    assert sum(job["rule"] == "measure" for job in own) == len(plan_measurements(PARAMS, study))  # dml_analyses: 18
    fetched = {job["output"] for job in jobs if job["rule"] == "fetch_weights"}
    wanted = {path for job in own if job["rule"] in ("train_job", "train_cohort_job") for path in job["input"]} & fetched
    published = {arch for job in plan_jobs(PARAMS, study) for arch in job.weights}
    assert wanted == {paths.weights_stamp(arch) for arch in published}  # rdml_table2: its three networks' weights, once each


@pytest.mark.system
@pytest.mark.parametrize("method", BRANCH_METHODS)
def test_each_branch_based_okdph_baseline_trains_through_the_pipeline(method, pipeline, project):
    """The cheapest okdph_table3_smoke job of each branch-based method (as the study plans it, official keys
    included), trained by Snakemake: its record holds every output the table's cell reads."""
    run, job = cheapest(BRANCHED, method)
    assert (project / job.file).is_file(), failed(pipeline, project, BRANCHED, job)
    record = json.loads((project / run.directory / "record.json").read_text())
    outputs = METHODS[method].outputs(run.config)
    assert record["status"] == "ok" and set(outputs) <= set(record["summary"]) and len(outputs) > run.config.branches - 1


@pytest.mark.system  # Snakemake trains every run of the study on generated Market-format files, then tabulates
def test_market_smoke_study_builds_every_table_of_the_retrieval_protocol(pipeline, project):
    """dml_market_smoke through Snakemake: Table 3's four retrieval columns (multi-query at the last epoch), Table 4's
    Market rows, Table 5, Fig. 2b and Fig. 3 in mAP; the pretrained rows from the stand-in's generated weights."""
    tables = project / paths.tables_dir(MARKET)
    assert (tables / "market_table.md").is_file(), failed(pipeline, project, MARKET)
    text = (tables / "market_table.md").read_text()
    assert "final test mAP and rank-1 (%)" in text
    for row in ("tiny_market1501: reid_tiny, scratch", "tiny_market1501: reid_tiny+DML, ImageNet"):
        line = next(line for line in text.splitlines() if line.startswith(f"| {row} |"))
        assert line.count("(n=2)") == 4, line  # SQ mAP, SQ rank-1, MQ mAP, MQ rank-1: both networks of the run
    summary = json.loads((project / paths.summary_file(MARKET)).read_text())
    assert {"market_table", "kd_vs_dml_table", "settings_table", "update_order_table", "cohort_table"} <= set(summary)
    assert "mAP" in (tables / "cohort_table.md").read_text() and "concatenated features" in (tables / "cohort_table.md").read_text()
    cells = json.loads((tables / "market_table.cells.json").read_text())["cells"]
    scores = {key: {item["score"] for item in cell["runs"]} for key, cell in cells.items()}
    assert {frozenset(s) for s in scores.values()} == {frozenset({m}) for m in ("map", "rank1", "mq_map", "mq_rank1")}
    audit = sh(str(BIN / "rdml"), "audit", str(tables / "market_table.md"), "tiny_market1501: reid_tiny+DML, scratch|MQ mAP",
               "--evaluate", cwd=project, check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr


@pytest.mark.system  # Snakemake prepares generated ILSVRC2012 archives into shards, trains from them and tabulates
def test_imagenet_smoke_study_streams_its_runs_from_prepared_shards_and_tabulates_fig_2a(pipeline, project):
    """dml_imagenet_smoke: `rdml pipeline prepare tiny_imagenet` writes WebDataset shards from the generated archives
    (the real formats); each run streams them through decoding workers with TF-slim's Inception preprocessing and
    checkpoints every 2,000 steps (none here: an epoch is 2 steps), decoding in 2 workers (the study's 8 capped for
    smoke runs); Fig. 2a's pair table and its curves."""
    tables = project / paths.tables_dir(IMAGENET)
    assert (tables / "pair_table.md").is_file(), failed(pipeline, project, IMAGENET)
    assert (tables / "fig_curves_pair_table.png").is_file()
    shards = sorted((project / "data" / "tiny_imagenet" / "shards").glob("*.tar"))
    assert shards and {s.name.split("-")[0] for s in shards} == {"train", "val"}, shards
    for job in plan_jobs(PARAMS, IMAGENET):
        for run in job.runs:
            record = json.loads((project / run.directory / "record.json").read_text())
            assert record["status"] == "ok" and record["data"]["split"]["storage"] == "stream"
            assert record["config"]["loader_workers"] == 2 and record["config"]["optimizer"] == "rmsprop_tf"


@pytest.mark.system  # Snakemake trains a job of each study
@pytest.mark.parametrize("study", sorted(STATED))
def test_one_job_of_each_smoke_study_runs_through_the_pipeline(study, pipeline, project):
    smoke = built_as(f"{study}_smoke")  # a study whose cheapest run is another's: that one's job stands for it
    run, job = cheapest(smoke)
    assert (project / job.file).is_file(), failed(pipeline, project, smoke, job)
    assert (project / run.directory / "record.json").is_file()
