"""A run's training configuration: the keys every run takes (here), each method's own keys (in its
module, a namespace of its own: two methods may each have a `beta`), `key=value` parsing, per-method
defaults, validation, and the run's identity hash. Torch-free.

Every check runs before any data is loaded or any file is written, and every error names the bad
key, its value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rdml.data.catalog import DATASETS, KINDS
from rdml.data.fixed_normalisation import check_normalize
from rdml.keys import ConfigError, Key, at_least, in_range, one_of, real_in_range, show
from rdml.methods import METHODS
from rdml.models.catalog import ARCHITECTURES
from rdml.yamlfile import load_yaml

__all__ = ["ConfigError", "TrainConfig", "KEYS", "V1_METHOD_KEYS", "method_keys", "is_key", "load_config", "config_from_mapping", "resolve",
           "config_sha256", "describe_keys", "config_values", "DATA_KEYS", "data_keys"]

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop_tf")
MULTIQUERY = ("none", "mean", "max")
SCHEDULES = ("constant", "step", "multistep", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "tf32", "bf16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
HEADS = ("dataset", "pretrained")
UNLABELLED_ROWS = ("mimic", "drop")
INF = math.inf


def _finite(name: str, low: float, what: str, **bounds: bool):
    return lambda v: in_range(name, v, low, INF, what, open_high=True, **bounds)


MAX_SEED = 2**32 - 1  # torch's generators take seed · 1,000,003 + epoch, which must stay below 2**63


def _seed(name: str, value: int) -> None:
    in_range(name, value, 0, MAX_SEED, f"an integer in [0, {MAX_SEED}]")


def _unit(name: str, what: str, **bounds: bool):
    return lambda v: in_range(name, v, 0, 1, what, **bounds)


WHAT = (
    Key("method", "dml", "str", "one of: " + ", ".join(METHODS), check=lambda v: METHODS[v]),
    Key("dataset", "digits", "str", "one of: " + ", ".join(DATASETS), check=lambda v: DATASETS[v]),
    Key("arch", None, "list[str]", "architecture, or one per student (comma-separated); default mlp (cnn_wide for teacher)"),
    Key("students", None, "int", "cohort size K; default 2 for dml/dml_e, else 1 (or the number of archs)"),
    Key("temperature", None, "float", "softmax temperature of the mimicry term; default 4 for kd, else 1"),
)
HOW = (
    Key("labelled_fraction", 1.0, "float", "fraction of training rows with labels, in (0, 1]; < 1 is semi-supervised (DML 3.4)",
        check=_unit("labelled_fraction", "a number in (0, 1]", open_low=True)),
    Key("unlabelled", "mimic", "str", "training rows without a label (labelled_fraction < 1 or labelled_classes): mimic "
        "(they join every mimicry term: DML-all) or drop (trained on the labelled rows alone: DML-labelled)",
        check=lambda v: one_of("unlabelled", v, UNLABELLED_ROWS)),
    Key("labelled_classes", 0, "int", "semi-supervised by class: every training row of M classes keeps its label, every "
        "other class's rows are unlabelled (`unlabelled` says what becomes of them), as DML §4.10 runs Market-1501: 'we "
        "randomly select M identities as labelled in the training set'; the M classes are the first M of a permutation "
        "of the classes drawn from split_seed (rdml.data.base.labelled_class_ids); the classifier keeps one output per "
        "class; 0 = off; M in [1, the data set's classes], not with labelled_fraction < 1",
        check=lambda v: in_range("labelled_classes", v, 0, INF, "an integer >= 0 (0 = off)", open_high=True)),
    Key("epochs", 30, "int", "number of epochs, >= 1", check=lambda v: at_least("epochs", v, 1)),
    Key("batch_size", 64, "int", "batch size, >= 1", check=lambda v: at_least("batch_size", v, 1)),
    Key("optimizer", "sgd", "str", "one of: " + ", ".join(OPTIMIZERS), check=lambda v: one_of("optimizer", v, OPTIMIZERS)),
    Key("lr", 0.05, "float", "learning rate (onecycle: the peak)", check=_finite("lr", 0, "a finite number > 0", open_low=True)),
    Key("momentum", 0.9, "float", "momentum of sgd and of rmsprop_tf (TF-slim's --rmsprop_momentum is 0.9: "
        "tensorflow/models research/slim/train_image_classifier.py L128)",
        check=_unit("momentum", "a number in [0, 1)", open_high=True)),
    Key("nesterov", True, "bool", "sgd Nesterov momentum (the other optimizers ignore it; TF's RMSProp has plain momentum)"),
    Key("rmsprop_decay", 0.9, "float", "rmsprop_tf: the decay rho of the mean square, ms <- ms + (1 - rho)(g² - ms); "
        "TF-slim's --rmsprop_decay, 0.9 (tensorflow/models 451906e, research/slim/train_image_classifier.py L130, passed to "
        "tf.train.RMSPropOptimizer at L337)",
        check=_unit("rmsprop_decay", "a number in [0, 1)", open_high=True)),
    Key("rmsprop_epsilon", 1.0, "float", "rmsprop_tf: the epsilon inside the square root, lr·g/sqrt(ms + epsilon); "
        "TF-slim's --opt_epsilon, 1.0 (tensorflow/models 451906e, research/slim/train_image_classifier.py L109, passed to "
        "tf.train.RMSPropOptimizer at L339)",
        check=_finite("rmsprop_epsilon", 0, "a finite number > 0", open_low=True)),
    Key("adam_beta1", 0.9, "float", "adam, adamw: the decay of the mean gradient; the DML paper's Market-1501 runs use 0.5 "
        "(§4.1: 'β1 = 0.5, β2 = 0.999')", check=_unit("adam_beta1", "a number in [0, 1)", open_high=True)),
    Key("adam_beta2", 0.999, "float", "adam, adamw: the decay of the mean squared gradient",
        check=_unit("adam_beta2", "a number in [0, 1)", open_high=True)),
    Key("weight_decay", 5e-4, "float", "weight decay (decoupled for adamw; for rmsprop_tf added to the gradient, as "
        "TF-slim's l2_regularizer(weight_decay) loss, weight_decay·sum(w²)/2, adds it)",
        check=_finite("weight_decay", 0, "a finite number >= 0")),
    Key("decay_1d", True, "bool", "weight decay on 1-d parameters (biases, norm layers) too; false: none there, "
        "as timm's create_optimizer_v2 does (filter_bias_and_bn)"),
    Key("schedule", "cosine", "str", "one of: " + ", ".join(SCHEDULES), check=lambda v: one_of("schedule", v, SCHEDULES)),
    Key("step_size", 60, "int", "step schedule: epochs between decays", check=lambda v: at_least("step_size", v, 1)),
    Key("gamma", 0.2, "float", "step/multistep schedule: decay factor", check=_finite("gamma", 0, "a finite number > 0", open_low=True)),
    Key("milestones", [], "list[int]", "multistep schedule: epochs at which lr is multiplied by gamma"),
    Key("pct_start", 0.1, "float", "onecycle: fraction of training spent rising to the peak lr",
        check=_unit("pct_start", "a number in (0, 1)", open_low=True, open_high=True)),
    Key("grad_clip", 0.0, "float", "clip each student's gradient norm to this; 0 = off",
        check=_finite("grad_clip", 0, "a finite number >= 0 (0 = off)")),
    Key("label_smoothing", 0.0, "float", "every supervised cross-entropy against (1 - eps)·onehot + eps/C, as TF's "
        "softmax_cross_entropy(label_smoothing=eps) the official DML code trains with, eps 0.1 (YingZhangDUT/"
        "Deep-Mutual-Learning train_models.py L77-79, scripts/train_dml_mobilenet_on_market.sh L41); 0 = one-hot; "
        "unlabelled rows get none (rdml.core.losses.supervised_cross_entropy)",
        check=_unit("label_smoothing", "a number in [0, 1) (0 = the one-hot label)", open_high=True)),
    Key("weight_ema", 0.0, "float", "decay of a moving average of every student's weights and batch-norm statistics, "
        "which each evaluation and model.pt take in their place, as the official DML re-ID code evaluates its "
        "tf.train.ExponentialMovingAverage(0.9999, global_step) (YingZhangDUT/Deep-Mutual-Learning train_models.py "
        "L264-273, eval_models.py L152-161; rdml.train.average); 0 = off",
        check=_unit("weight_ema", "a number in [0, 1) (0 = off)", open_high=True)),
    Key("multiquery", "none", "str", "retrieval sets: also score each query's identity and camera pooled over the "
        "multi-query images (Market-1501's gt_bbox) by mean or max (rdml.retrieval.pool_queries), at the last epoch; "
        "none: single queries alone",
        check=lambda v: one_of("multiquery", v, MULTIQUERY)),
    Key("seed", 0, "int", "training seed: initialisation (unless init_seed is set), batch order", check=lambda v: _seed("seed", v)),
    Key("init_seed", None, "int", "seed of the initial weights alone; default: seed (one seed for both)",
        check=lambda v: _seed("init_seed", v)),
    Key("split_seed", 0, "int", "seed of the train/test split and of the labelled subset", check=lambda v: _seed("split_seed", v)),
    Key("val_fraction", 0.0, "float", "fraction of each class of the training rows held out for validation, evaluated "
        "every epoch (0: none); the study metric at_best_val reads it", check=_unit("val_fraction", "a number in [0, 1)", open_high=True)),
    Key("test_fraction", 0.25, "float", "fraction of each class held out for test, in (0, 1) (data sets without an official split)",
        check=_unit("test_fraction", "a number in (0, 1)", open_low=True, open_high=True)),
    Key("augment", "none", "str", "training augmentation of the data set's kind ("
        + "; ".join(f"{kind.name}: {', '.join(kind.augmentations)}" for _, kind in KINDS.items()) + "; see rdml.data.augment)"),
    Key("input_noise", 0.0, "float", "std of N(0, std²) noise added to every normalised input, training and test rows "
        "alike, drawn anew each time (the OKDPH supplement's Noisy setting: its cifar_noisy.py, std 1); 0 = none",
        check=_finite("input_noise", 0, "a finite number >= 0 (0 = none)")),
    Key("student_augment", [], "list[str]", "one augmentation per student (then one per model of the method's own, "
        "e.g. OKDPH's hybrid-weight model), each a view of the same rows; empty: every student gets `augment`"),
    Key("normalize", "dataset", "str", "per-channel normalisation: dataset (train statistics), imagenet, none (photos: "
        "raw [0, 1] pixels), or okdph (CIFAR-10/100 and the sets drawn from them: the official OKDPH code's fixed "
        "constants, tianlizhang/OKDPH src/data/data_loader.py L150–163)"),
    Key("pretrained", False, "bool", "students start from their architecture's published weights (fetched by "
        "`rdml pipeline weights ARCH` into <data_dir>/weights; each run records their sha256)"),
    Key("head", "dataset", "str", "pretrained students' classifier: dataset (a new head of the data set's size) or "
        "pretrained (the published 1000-class head kept, labels index its first outputs, as the released RDML code does)",
        check=lambda v: one_of("head", v, HEADS)),
    Key("data_dir", "data", "str", "folder of downloaded data sets and published weights"),
    Key("summary_last", [5, 10], "list[int]", "report the mean test accuracy of the last k epochs for each k"),
    Key("keep_every", 0, "int", "keep the trained networks (model.pt's content) after epochs 1, 1+N, 1+2N, … in "
        "<out>/epochs/epoch_<k>.pt, each hashed in the record (kept_epochs), for analyses of the trajectory (the "
        "official OKDPH code saves every epoch, src/OKDPH.py L150-152; its landscape reads 0-based epochs 0, 5, …, "
        "295: N=5, experiment/landscape/grid_loss.py L23, L222-224); 0 = none",
        check=lambda v: in_range("keep_every", v, 0, INF, "an integer >= 0: N keeps the networks of epochs 1, 1+N, "
                                 "1+2N, … (1: every epoch), 0 none", open_high=True)),
    Key("crash_margin", 0.05, "float", "a student at <= chance + margin after > chance + 2 margin has crashed",
        check=_unit("crash_margin", "a number in [0, 1)", open_high=True)),
    Key("device", "auto", "str", "auto, cpu, cuda or cuda:N"),
    Key("precision", "auto", "str", "fp32 (IEEE float32: TF32 off for matmuls and convolutions), tf32 (CUDA only: TF32 "
        "tensor cores for float32 matmuls and convolutions), bf16 (autocast of the forward passes, float32 underneath) or "
        "auto: bf16 on a CUDA device that has it, else fp32", check=lambda v: one_of("precision", v, PRECISIONS)),
    Key("memory_format", "auto", "str", "contiguous, channels_last or auto: the faster of the two for this run's step on "
        "this device model, timed once and cached (rdml.train.autotune; float32 either way, sums in another order)",
        check=lambda v: one_of("memory_format", v, MEMORY_FORMATS)),
    Key("compile", False, "bool|auto", "torch.compile each model (the first batches wait for it), or auto: compile "
        "where the run's planned steps save more time than compiling costs, timed once and cached (rdml.train.autotune)"),
    Key("fuse_students", False, "bool", "one vmapped forward for a cohort of one architecture (see rdml.train.execution)"),
    Key("deterministic", True, "bool", "deterministic kernels (torch.use_deterministic_algorithms, no cuDNN autotuning, "
        "CUBLAS_WORKSPACE_CONFIG=:4096:8 on CUDA), so a repeated or resumed run gives the same bits; false: the fastest "
        "kernels, cuDNN autotuning on CUDA"),
    Key("distributed", False, "bool", "one process per student (DML §4.5's \"distributed\" DML, Fig. 2b): each process "
        "holds its student, optimiser and state on a device of its own and the processes exchange the batch's logits "
        "(torch.distributed: NCCL on CUDA, gloo on CPU); launched by `rdml train` itself (torchrun on this machine), by "
        "torchrun, or by srun under SLURM, one task per student (rdml.train.distributed). Equal to update_order="
        "simultaneous in one process, bit for bit on CPU where the networks draw no random numbers"),
    Key("checkpoint_steps", 0, "int", "also checkpoint every N training steps inside an epoch, with the loader's place, "
        "so that a kill loses at most N steps and the resumed run gives the same bits (an ImageNet epoch is hours); "
        "0 = at the end of each epoch only",
        check=lambda v: in_range("checkpoint_steps", v, 0, INF, "an integer >= 0 (0 = once an epoch)", open_high=True)),
    Key("loader_workers", 0, "int", "processes decoding and augmenting a streamed data set's images (ImageNet); 0 = "
        "in the training process. Every image's draws come from (seed, epoch, row), so the number changes no result",
        check=lambda v: in_range("loader_workers", v, 0, INF, "an integer >= 0 (0 = in the training process)", open_high=True)),
    Key("out", None, "str", "run directory; default runs/<method>-<dataset>-<arch>-a<alpha>-s<seed>-<hash>"),
)


KEYS: dict[str, Key] = {k.name: k for k in (*WHAT, *HOW)}  # the keys every run takes
RMSPROP_TF_KEYS = ("rmsprop_decay", "rmsprop_epsilon")  # read by optimizer=rmsprop_tf alone
ADAM_KEYS = ("adam_beta1", "adam_beta2")  # read by optimizer=adam and adamw alone


def method_keys(method: str) -> dict[str, Key]:
    """Every key a run of `method` takes: the shared ones, then the method's own."""
    return {**KEYS, **{key.name: key for key in METHODS[method].keys}}


def _own_key_names() -> tuple[str, ...]:
    names: dict[str, None] = {}
    for name, method in METHODS.items():
        for key in method.keys:
            if key.name in KEYS:
                raise ValueError(f"method {name}'s key {key.name!r} is a key every run takes; name it otherwise")
            names[key.name] = None
    return tuple(names)


OWN_KEYS = _own_key_names()  # every method's own keys, by name


def is_key(name: str) -> bool:
    """A key of some run: a shared one, or one of some method."""
    return name in KEYS or name in OWN_KEYS


# The keys of format rdml.run/1. A key added since counts in a run's identity only when it is set to
# something other than its default, so adding a key never changes the hash of an existing run.
IDENTITY_V1 = frozenset({
    "method", "dataset", "arch", "students", "alpha", "temperature", "beta", "mimic_weight", "update_order",
    "labelled_fraction", "teacher", "teacher_index", "epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov",
    "weight_decay", "schedule", "step_size", "gamma", "milestones", "pct_start", "grad_clip", "seed", "split_seed",
    "test_fraction", "augment", "normalize", "summary_last", "crash_margin", "device", "precision", "memory_format",
    "compile", "fuse_students"})
NOT_IDENTITY = ("out", "data_dir", "checkpoint_steps", "loader_workers")  # where a run's output and data live, and
# how often it is checkpointed and how many processes decode its images: neither changes a number
# rdml.run/1 had one flat namespace, so every run's identity holds these method keys; a run of a method
# without them hashes them at the values every such run had.
V1_METHOD_KEYS = {"alpha": 1.0, "beta": 0.9, "mimic_weight": 1.0, "update_order": "simultaneous", "teacher": None,
                  "teacher_index": 0}
V1_OWNERS = {"alpha": "dml", "beta": "kd", "mimic_weight": "dml", "update_order": "dml", "teacher": "kd",
             "teacher_index": "kd"}  # whose definition parses and checks such a key given to another method


# The keys that say which rows of a data set a run trains, validates and tests on, and how they are normalised.
DATA_KEYS = ("split_seed", "test_fraction", "val_fraction", "labelled_fraction", "unlabelled", "labelled_classes", "data_dir",
             "normalize")


def data_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """`load_dataset`'s keyword arguments from a config's values (a record's stored mapping included:
    a key it predates takes its default)."""
    return {k: values.get(k, KEYS[k].default) for k in DATA_KEYS}  # all of them shared keys


def _field(key: Key) -> tuple[str, Any, dataclasses.Field]:
    if isinstance(key.default, list):
        return key.name, Any, dataclasses.field(default_factory=lambda d=key.default: list(d))
    return key.name, Any, dataclasses.field(default=key.default)


# One field per key of any run; a method's own keys are None until `resolve` gives the run's method's defaults.
TrainConfig = dataclasses.make_dataclass(
    "TrainConfig", [_field(k) for k in KEYS.values()] + [(name, Any, dataclasses.field(default=None)) for name in OWN_KEYS])
TrainConfig.__doc__ = "Every `rdml train` key (see `rdml train --help`); resolved by `resolve`."
TrainConfig.__module__ = __name__


def describe_keys() -> str:
    """The `--help` listing: every key, its type, its default and what it does; then each method's own."""
    def lines(keys) -> str:
        return "\n".join(f"  {k.name}={show(k.default)}  [{k.kind}]\n      {k.help}" for k in keys)

    own = [f"keys of method {name}:\n{lines(method.keys)}" for name, method in METHODS.items() if method.keys]
    return "\n\n".join([lines(KEYS.values()), *own])


def _key_of(name: str, method: str) -> Key:
    """The key `name` of a run of `method`: its own or a shared one; or a key of rdml.run/1's flat namespace
    (V1_METHOD_KEYS), which every method still takes, as a run of rdml.run/1 did, though only its own
    method reads it (a study that sets `update_order` for all its runs keeps their identities)."""
    own = method_keys(method)
    if name in own:
        return own[name]
    if name in V1_METHOD_KEYS:
        return method_keys(V1_OWNERS[name])[name]
    _refuse(name, method)


def _refuse(name: str, method: str) -> None:
    owners = [m for m, kind in METHODS.items() if any(key.name == name for key in kind.keys)]
    if owners:
        raise ConfigError(f"{name} is not a key of method {method}; it is a key of {', '.join(owners)} "
                          "(see `rdml train --help`)")
    close = difflib.get_close_matches(name, [*method_keys(method), *V1_METHOD_KEYS], n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown key {name!r}{hint} (see `rdml train --help` for the keys)")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A config file (YAML or JSON mapping of keys) if given, then `key=value` overrides, unresolved."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = load_yaml(path, "config file")
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of key: value")
        values.update(loaded)
    given: dict[str, str] = {}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"expected key=value, got {item!r}")
        name = name.strip()
        if name in given:
            raise ConfigError(f"{name} is given twice ({given[name]}, {item}); give it once")
        given[name] = item
        values[name] = value
    _refuse_foreign_v1_keys(values)
    return config_from_mapping(values)


def _refuse_foreign_v1_keys(values: Mapping[str, Any]) -> None:
    """A user's key of rdml.run/1 (V1_METHOD_KEYS) for a method that does not read it: taken only at the value
    every such run had, which leaves the run's identity as it is. Another value would change the identity and
    nothing else, so it is refused. A planned run (config_from_mapping) still takes it, as rdml.run/1 did: a
    study's shared `update_order: sequential` reaches its Ind. runs too, and their identities stay. α has its
    own message in `resolve`; `teacher` too."""
    method = KEYS["method"].parse(values.get("method", KEYS["method"].default))
    KEYS["method"].check(method)
    own = method_keys(method)
    for name, value in values.items():
        name = str(name)
        if name in own or name not in V1_METHOD_KEYS or name in ("alpha", "teacher"):
            continue
        parsed = method_keys(V1_OWNERS[name])[name].parse(value)
        if parsed != V1_METHOD_KEYS[name]:
            owners = [m for m, kind in METHODS.items() if any(key.name == name for key in kind.keys)]
            raise ConfigError(f"{name}={show(parsed)}: {name} is not a key of method {method}; it is a key of "
                              f"{', '.join(owners)}; a run of {method} takes it only at {show(V1_METHOD_KEYS[name])}, "
                              "its value in every run of another method (see `rdml train --help`)")


def config_from_mapping(values: Mapping[str, Any]) -> TrainConfig:
    """Typed config from a mapping of keys to strings or YAML values, unresolved."""
    method = KEYS["method"].parse(values.get("method", KEYS["method"].default))
    KEYS["method"].check(method)  # the namespace the other keys are read in
    typed = {}
    for name, value in values.items():
        typed[str(name)] = _key_of(str(name), method).parse(value)
    return TrainConfig(**typed)


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fill per-method defaults and validate every key; returns a new, fully explicit config."""
    c = dataclasses.replace(cfg, arch=list(cfg.arch) if cfg.arch else None, milestones=list(cfg.milestones))
    method = METHODS[c.method]
    kind = KINDS[DATASETS[c.dataset].spec.kind]
    own = method_keys(c.method)
    for name in OWN_KEYS:
        value = getattr(c, name)
        if name not in own and value is not None:
            key = _key_of(name, c.method)  # refuses a key of another method
            if key.check is not None:
                key.check(value)
    for key in method.keys:
        if getattr(c, key.name) is None:
            setattr(c, key.name, list(key.default) if isinstance(key.default, list) else key.default)
    for key in own.values():
        if key.check is not None and getattr(c, key.name) is not None:
            key.check(getattr(c, key.name))
    if not c.arch:
        c.arch = list(method.defaults["arch"])
    for name in c.arch:
        architecture = ARCHITECTURES[name]
        if kind.name not in architecture.kinds:
            raise ConfigError(f"arch={name} takes {', '.join(architecture.kinds)}, but dataset {c.dataset} holds {kind.name}")
    if c.students is None:
        c.students = len(c.arch) if len(c.arch) > 1 else max(1, method.min_students)
    at_least("students", c.students, 1)
    if c.students < method.min_students:
        raise ConfigError(f"students={c.students}: method {c.method} needs a cohort of K >= {method.min_students} students")
    if len(c.arch) not in (1, c.students):
        raise ConfigError(f"arch={','.join(c.arch)} names {len(c.arch)} architectures for students={c.students}: give one, or one per student")
    if len(c.arch) == 1:
        c.arch = c.arch * c.students
    if "alpha" in own:
        c.alpha = real_in_range("alpha", c.alpha, 0, INF, "a real number in [0, inf]")  # as rdml.core.divergences.check_alpha
    elif c.alpha not in (None, V1_METHOD_KEYS["alpha"]):  # accepted as rdml.run/1 did, never silently ignored
        raise ConfigError(f"alpha={c.alpha:g}: method {c.method} takes no Rényi order (it distils with KL divergence or "
                          "not at all); leave alpha at 1")
    if c.temperature is None:
        c.temperature = method.defaults["temperature"]
    in_range("temperature", c.temperature, 0, INF, "a finite number > 0", open_low=True, open_high=True)
    if c.teacher and not method.uses_teacher:
        raise ConfigError(f"teacher={c.teacher} is only used by a method that distils from a teacher, not {c.method}")
    method.check(c)
    if c.distributed:
        _check_distributed(c, method)
    if c.nesterov and c.optimizer == "sgd" and c.momentum == 0:
        raise ConfigError("nesterov=true needs momentum > 0 (or set nesterov=false)")
    if c.optimizer != "rmsprop_tf":  # another value would change the run's identity and nothing else
        for name in RMSPROP_TF_KEYS:
            if getattr(c, name) != KEYS[name].default:
                raise ConfigError(f"{name}={show(getattr(c, name))}: only optimizer=rmsprop_tf reads {name}, and "
                                  f"optimizer={c.optimizer} would ignore it; leave it at {show(KEYS[name].default)} or "
                                  "set optimizer=rmsprop_tf")
    if c.optimizer not in ("adam", "adamw"):
        for name in ADAM_KEYS:
            if getattr(c, name) != KEYS[name].default:
                raise ConfigError(f"{name}={show(getattr(c, name))}: only optimizer=adam and adamw read {name}, and "
                                  f"optimizer={c.optimizer} would ignore it; leave it at {show(KEYS[name].default)}")
    _check_task(c, method)
    _check_labelled_classes(c)
    if c.schedule == "multistep" and not c.milestones:
        raise ConfigError("schedule=multistep needs milestones=<epoch,epoch,...>")
    if any(m < 1 for m in c.milestones) or c.milestones != sorted(set(c.milestones)):
        raise ConfigError(f"milestones={show(c.milestones)} must be increasing epochs >= 1")
    if c.pretrained:
        bare = sorted({a for a in c.arch if not ARCHITECTURES[a].weights})
        if bare:
            raise ConfigError(f"pretrained=true, but arch {', '.join(bare)} has no published weights; architectures with "
                              "weights: " + ", ".join(n for n, a in ARCHITECTURES.items() if a.weights))
    elif c.head != "dataset":
        raise ConfigError(f"head={c.head} keeps a published head, which needs pretrained=true")
    one_of("augment", c.augment, kind.augmentations)
    if c.student_augment:
        if not method.views:
            raise ConfigError(f"student_augment is for a method that trains each student on its own view; {c.method} does not")
        wanted = method.view_count(c)
        if len(c.student_augment) != wanted:
            raise ConfigError(f"student_augment={','.join(c.student_augment)} names {len(c.student_augment)} augmentations; "
                              f"method {c.method} with {c.students} students takes {wanted}")
        for kind_name in c.student_augment:
            one_of("student_augment", kind_name, kind.augmentations)
    check_normalize(c.normalize, c.dataset)
    if not c.summary_last or any(k < 1 for k in c.summary_last):
        raise ConfigError(f"summary_last={show(c.summary_last)} must list window sizes >= 1")
    if c.device not in ("auto", "cpu", "cuda") and not (c.device.startswith("cuda:") and c.device[5:].isdigit()):
        raise ConfigError(f"device={c.device!r} is not allowed; allowed: auto, cpu, cuda, cuda:N")
    if c.out is None:
        archs = "+".join(sorted(set(c.arch)))
        order = f"-a{c.alpha if 'alpha' in own else V1_METHOD_KEYS['alpha']:g}"  # as rdml.run/1 named it
        c.out = str(Path("runs") / f"{c.method}-{c.dataset}-{archs}{order}-s{c.seed}-{config_sha256(c)[:8]}")
    return c


def _check_distributed(c: TrainConfig, method) -> None:
    """What one process per student can train: a cohort whose students exchange their logits on one shared batch
    and step together (`Method.distributable`: DML's update_order=simultaneous, DML §4.5)."""
    why = method.distributable(c)
    if why:
        raise ConfigError(f"distributed=true: {why}; set distributed=false")
    if c.fuse_students:
        raise ConfigError("distributed=true with fuse_students=true: each process holds one student, which has no peer "
                          "to fuse with; set fuse_students=false")


def _check_task(c: TrainConfig, method) -> None:
    """What a retrieval set (DML §4.1, Market-1501) asks of a run: networks with a pooled feature to match on
    (rdml.models.reid), a method whose evaluated outputs are its students and their ensemble (`Method.tasks`), and
    no validation split or input noise, which its evaluation does not read."""
    task = DATASETS[c.dataset].task
    if task not in method.tasks:
        raise ConfigError(f"method={c.method} does not train on dataset {c.dataset}'s task ({task}); methods that do: "
                          + ", ".join(n for n, m in METHODS.items() if task in m.tasks))
    if task != "retrieval":
        if c.multiquery != "none":
            raise ConfigError(f"multiquery={c.multiquery}: dataset {c.dataset} has no queries (task {task}); leave it at none")
        return
    lacking = sorted({a for a in c.arch if not ARCHITECTURES[a].features})
    if lacking:
        raise ConfigError(f"dataset {c.dataset} is matched on features, which arch {', '.join(lacking)} does not give; "
                          "architectures with features: " + ", ".join(n for n, a in ARCHITECTURES.items() if a.features))
    for name, value in (("val_fraction", c.val_fraction), ("input_noise", c.input_noise)):
        if value:
            raise ConfigError(f"{name}={show(value)}: a retrieval set's evaluation (queries against its gallery) does not "
                              f"read it; leave it at 0 for dataset {c.dataset}")


def _check_labelled_classes(c: TrainConfig) -> None:
    """`labelled_classes` names a number of the data set's classes, and labels whole classes: a fraction of each
    class's rows (`labelled_fraction` < 1) on top would leave the rows it labels undefined."""
    if not c.labelled_classes:
        return
    classes = DATASETS[c.dataset].spec.num_classes
    if c.labelled_classes > classes:
        raise ConfigError(f"labelled_classes={c.labelled_classes}: dataset {c.dataset} has {classes} classes; give M in "
                          f"[1, {classes}] (0 = off)")
    if c.labelled_fraction < 1:
        raise ConfigError(f"labelled_classes={c.labelled_classes} with labelled_fraction={show(c.labelled_fraction)}: "
                          "labelled_classes labels every row of M classes, labelled_fraction a fraction of every class's "
                          "rows; give one of them (labelled_fraction=1 or labelled_classes=0)")


def config_values(cfg: TrainConfig) -> dict[str, Any]:
    """The run's keys: the shared ones, its method's own, and any key of rdml.run/1 it was given."""
    own = method_keys(cfg.method)
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k in own or (k in V1_METHOD_KEYS and v is not None)}


def _counts(name: str, value: Any, own: dict[str, Key]) -> bool:
    """Whether a key of a run's stored mapping counts in its identity: every key of rdml.run/1; a later key of
    its method (or one unknown to this rdml) not at its default; another method's key not at that method's
    default (a record of the flat namespace holds every method's keys, at their defaults where not its own)."""
    if name in IDENTITY_V1:
        return True
    if name in own:
        return value != own[name].default
    defaults = [key.default for _, kind in METHODS.items() for key in kind.keys if key.name == name]
    return not defaults or all(value != default for default in defaults)


def config_sha256(cfg: TrainConfig | Mapping[str, Any]) -> str:
    """Hash of everything that defines the experiment: the keys of rdml.run/1, and any later key of the
    run's method (or unknown to this rdml) that is not at its default (`_counts`). Takes a config or a
    record's stored mapping, whichever version wrote it."""
    values = config_values(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    method = values.get("method", KEYS["method"].default)
    own = method_keys(method) if method in METHODS else KEYS
    identity = {k: v for k, v in values.items() if k not in NOT_IDENTITY and _counts(k, v, own)}
    for k, v in V1_METHOD_KEYS.items():
        identity.setdefault(k, v)
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
