"""The PAC-Bayes measure of Jiang et al. (2020), "Fantastic generalization measures and where to find
them" (ICLR 2020, arXiv:1912.02178), for the OKDPH supplement's Table 5 and Fig. 1 (§3.3), whose
official repository holds no code for it and whose text gives no formula.

For a trained network with parameters w, started from w₀, on m training examples:

    pac_bayes_init = ‖w − w₀‖² / (4σ²) + log(m/σ) + 10        (Jiang et al., Appendix C, eq. 48)
    pac_bayes_orig = ‖w‖² / (4σ²) + log(m/σ) + 10             (eq. 49)

σ is the largest noise scale whose Gaussian perturbation N(0, σ²) of every parameter moves the mean
training accuracy by `deviation` (0.1), found by a bisection on [σ_low, σ_high] with Monte-Carlo draws.
The search and its constants follow the released re-implementation of Jiang et al.'s measures by
Dziugaite et al. (2020, "In search of robust measures of generalization"), nitarshan/robust-generalization-
measures data/generation/measures.py (commit 8e90129), whose `_pacbayes_sigma` says it is adapted from
Jiang et al.'s released code (L59): bounds [0, 2] (L71), `search_depth=15`, `montecarlo_samples=10`,
`accuracy_displacement=0.1`, `displacement_tolerance=1e-2` (L66–69), stop when |displacement − 0.1| <
tolerance, otherwise halve towards it (L79–100); the bound's 4σ², log(m/σ) and + 10 (L239–242, commented
"# 48" and "# 49", the paper's equation numbers), the norms over the weights only, biases and batch norm
left out (`get_weights_only`, L120–125), batch norm folded into the preceding convolution first, for the
trained and the initial network alike (`_reparam`, L15–35, applied at L114–115). Their further rescaling
"Adjust for dataset size" (√(value/m), L257–262) is theirs, not Jiang et al.'s, and is not applied.

Where this module departs from that code, deliberately: the noise has standard deviation σ (their
`torch.normal(0, sigma**2, ...)`, L49, draws std σ², not the N(0, σ²) of the bound); batch norm is folded
only into a convolution or linear layer whose output feeds nothing else (a pre-activation BN of DenseNet
or WRN follows a concatenation or a sum and is kept, its γ and β perturbed like any parameter: the counts
are recorded), where `_reparam` folds every BN into whichever convolution came last in module order;
folded BN layers are removed rather than left as identities whose parameters would still be perturbed;
the noise generator is seeded by the study's `seed` plus the student's index (theirs: 10348628753 + seed, L74–77).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import fx, nn

from rdml.data.base import Dataset
from rdml.keys import ConfigError

__all__ = ["PAC_BAYES_DEFAULTS", "NORMS", "pac_bayes_spec", "fold_batch_norm", "FoldedNetwork", "training_accuracy",
           "accuracy_under_noise", "search_sigma", "pac_bayes_bound", "squared_norm", "pac_bayes_measures",
           "initial_students", "pac_bayes_of_students", "replay_sigmas", "search_problems"]

# each default is the value of Jiang et al.'s released code as Dziugaite et al. re-implemented it (see above)
PAC_BAYES_DEFAULTS = {
    "deviation": 0.1,  # accuracy_displacement=0.1 (L68)
    "sigma_low": 0.0,  # lower, upper = 0, 2 (L71)
    "sigma_high": 2.0,
    "search_depth": 15,  # search_depth=15 (L66)
    "tolerance": 0.01,  # displacement_tolerance=1e-2 (L69)
    "draws": 10,  # montecarlo_samples=10 (L67)
    "seed": 0,
    "norm": "weights",  # get_weights_only: no biases, no batch norm (L120-122)
}
NORMS = ("weights", "parameters")  # the norm over the weights only (conv and linear kernels), or over every parameter
CONSTANT = 10.0  # the "+ 10" of eqs. 48-49 (measures.py L240)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
FOLDS_INTO = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def pac_bayes_spec(spec: dict | None) -> dict:
    """The measurement's settings: `spec` over PAC_BAYES_DEFAULTS, each checked; an unknown key or a
    value out of range is a ConfigError naming it and what is allowed."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(PAC_BAYES_DEFAULTS))
    if unknown:
        raise ConfigError(f"pac_bayes: keys {unknown} are not known; allowed: {', '.join(PAC_BAYES_DEFAULTS)}")
    out = {**PAC_BAYES_DEFAULTS, **spec}

    def number(key, kind=float):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (kind is int and value != int(value)):
            raise ConfigError(f"pac_bayes.{key}={value!r}: allowed: a finite {'integer' if kind is int else 'number'}")
        return kind(value)

    deviation, low, high = number("deviation"), number("sigma_low"), number("sigma_high")
    depth, tolerance, draws, seed = number("search_depth", int), number("tolerance"), number("draws", int), number("seed", int)
    if not 0 < deviation < 1:
        raise ConfigError(f"pac_bayes.deviation={deviation}: allowed: a fraction of accuracy in (0, 1)")
    if not 0 <= low < high:
        raise ConfigError(f"pac_bayes.sigma_low={low}, sigma_high={high}: allowed: 0 <= sigma_low < sigma_high")
    if depth < 1 or draws < 1:
        raise ConfigError(f"pac_bayes.search_depth={depth}, draws={draws}: allowed: integers >= 1")
    if not 0 <= tolerance < deviation:
        raise ConfigError(f"pac_bayes.tolerance={tolerance}: allowed: 0 <= tolerance < deviation ({deviation})")
    if seed < 0:
        raise ConfigError(f"pac_bayes.seed={seed}: allowed: an integer >= 0")
    if out["norm"] not in NORMS:
        raise ConfigError(f"pac_bayes.norm={out['norm']!r}: allowed: {', '.join(NORMS)}")
    return {"deviation": deviation, "sigma_low": low, "sigma_high": high, "search_depth": depth,
            "tolerance": tolerance, "draws": draws, "seed": seed, "norm": out["norm"]}


@dataclass
class FoldedNetwork:
    """A network with its batch norm folded where it can be: `module` (eval mode), the BN layers folded
    (by their names in the original) and those kept (their input is not a layer's output alone)."""

    module: nn.Module
    folded: list[str]
    kept: list[str]


@torch.no_grad()
def _fold_into(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """layer ← BN ∘ layer in eval mode: W' = W·s, b' = (b − μ)·s + β with s = γ/√(var + ε) per output
    channel (the first axis of a Conv or Linear weight), computed in float64."""
    weight = layer.weight.double()
    bias = layer.bias.double() if layer.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64,
                                                                           device=weight.device)
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(bias)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(bias)
    scale = gamma / (bn.running_var.double() + bn.eps).sqrt()
    folded_weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    folded_bias = (bias - bn.running_mean.double()) * scale + beta
    layer.weight.copy_(folded_weight.to(layer.weight.dtype))
    if layer.bias is None:
        layer.bias = nn.Parameter(folded_bias.to(layer.weight.dtype))
    else:
        layer.bias.copy_(folded_bias.to(layer.bias.dtype))


def fold_batch_norm(model: nn.Module) -> FoldedNetwork:
    """A copy of `model` (eval mode) with each batch norm folded into the convolution or linear layer whose
    output only it reads (traced with torch.fx); the result computes what `model` computes in eval mode.
    A BN whose layer is called more than once, or that has no running statistics, is kept."""
    try:
        traced = fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as exc:  # a forward torch.fx cannot trace (data-dependent control flow)
        raise ConfigError(f"pac_bayes: {type(model).__name__} cannot be traced to fold its batch norm "
                          f"({type(exc).__name__}: {exc})") from None
    modules = dict(traced.named_modules())
    calls: dict[str, int] = {}
    for node in traced.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    folded, kept = [], []
    for node in list(traced.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], BATCH_NORMS):
            continue
        bn, source = modules[node.target], node.args[0]
        foldable = (isinstance(source, fx.Node) and source.op == "call_module"
                    and type(modules[source.target]) in FOLDS_INTO and len(source.users) == 1
                    and calls[source.target] == 1 and calls[node.target] == 1
                    and bn.running_mean is not None and bn.running_var is not None)
        if not foldable:
            kept.append(node.target)
            continue
        _fold_into(modules[source.target], bn)
        node.replace_all_uses_with(source)
        traced.graph.erase_node(node)
        folded.append(node.target)
    traced.graph.lint()
    traced.recompile()
    traced.delete_all_unused_submodules()
    return FoldedNetwork(traced.eval(), folded, kept)


def _labelled(y: torch.Tensor) -> torch.Tensor:
    return y >= 0  # an unlabelled row of a semi-supervised split is -1 (rdml.data.subsets)


@torch.no_grad()
def training_accuracy(model: nn.Module, data: Dataset, batch_size: int = 1024) -> float:
    """Top-1 accuracy on the labelled training rows, without augmentation, eval mode (as the measurements
    of rdml.analysis.measure read the training split)."""
    model.eval()
    correct = total = 0
    for x, y in data.eval_batches("train", batch_size):
        keep = _labelled(y)
        correct += int((model(x).argmax(-1)[keep] == y[keep]).sum())
        total += int(keep.sum())
    if total == 0:
        raise ConfigError(f"pac_bayes: dataset {data.name} has no labelled training rows to measure accuracy on")
    return correct / total


@torch.no_grad()
def accuracy_under_noise(model: nn.Module, accuracy: Callable[[nn.Module], float], sigma: float, draws: int,
                         generator: torch.Generator) -> float:
    """Mean of `accuracy(model)` over `draws` draws of N(0, σ²) added to every parameter (noise from the
    CPU `generator`, parameters in order, the weights restored exactly after each draw)."""
    parameters = list(model.parameters())
    saved = [p.detach().clone() for p in parameters]
    values = []
    for _ in range(draws):
        for p in parameters:
            p.add_(torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p) * sigma)
        try:
            values.append(accuracy(model))
        finally:
            for p, s in zip(parameters, saved):
                p.copy_(s)
    return sum(values) / len(values)


def search_sigma(mean_accuracy_at: Callable[[float], float], clean_accuracy: float, deviation: float,
                 low: float, high: float, depth: int, tolerance: float) -> tuple[float, list[dict]]:
    """The bisection of measures.py `_pacbayes_sigma` (L71–100): σ = the midpoint; stop when the accuracy's
    displacement |mean_accuracy_at(σ) − clean_accuracy| is within `tolerance` of `deviation`; else move the
    upper bound down (too much noise) or the lower bound up; at most `depth` midpoints. Returns the last σ
    and each step (σ, mean accuracy, displacement)."""
    steps = []
    sigma = (low + high) / 2
    for _ in range(depth):
        sigma = (low + high) / 2
        accuracy = mean_accuracy_at(sigma)
        displacement = abs(accuracy - clean_accuracy)
        steps.append({"sigma": sigma, "accuracy": accuracy, "displacement": displacement})
        if abs(displacement - deviation) < tolerance:
            break
        if displacement > deviation:
            high = sigma
        else:
            low = sigma
    return sigma, steps


def pac_bayes_bound(squared_distance: float, sigma: float, m: int) -> float:
    """‖·‖²/(4σ²) + log(m/σ) + 10 (Jiang et al. eqs. 48–49; measures.py L239–242)."""
    if not sigma > 0:
        raise ValueError(f"pac_bayes: σ={sigma} is not > 0; the bound divides by σ")
    return squared_distance / (4 * sigma ** 2) + math.log(m / sigma) + CONSTANT


def _measured(module: nn.Module, norm: str) -> dict[str, torch.Tensor]:
    """The parameters the bound's norm runs over, by name: every one, or the kernels alone (dimension ≥ 2:
    conv and linear weights; biases and any batch-norm γ, β left out, as `get_weights_only`)."""
    return {name: p for name, p in module.named_parameters() if norm == "parameters" or p.dim() >= 2}


def squared_norm(module: nn.Module, norm: str, reference: nn.Module | None = None) -> float:
    """‖w‖² (or ‖w − w₀‖², `reference` holding w₀ under the same names) over the `norm` parameters, in float64."""
    mine = _measured(module, norm)
    theirs = _measured(reference, norm) if reference is not None else None
    if theirs is not None and set(theirs) != set(mine):
        raise ConfigError("pac_bayes: the initial network's parameters do not match the trained one's: "
                          f"{sorted(set(mine) ^ set(theirs))[:5]}")
    total = 0.0
    for name, p in mine.items():
        diff = p.detach().double() - (theirs[name].detach().double().to(p.device) if theirs is not None else 0.0)
        total += float((diff ** 2).sum())
    return total


def replay_sigmas(mean_accuracy_at: Callable[[float], float], clean_accuracy: float,
                  sigmas: list[float]) -> tuple[float, list[dict]]:
    """search_sigma's steps at given σ values, in their order, instead of bisecting: a search made elsewhere
    measured again along its own path (the audit of a measurement from another device, whose noise draws are
    the same but whose accuracies may differ in the last examples, which could send a bisection elsewhere)."""
    steps = []
    for sigma in sigmas:
        accuracy = mean_accuracy_at(sigma)
        steps.append({"sigma": sigma, "accuracy": accuracy, "displacement": abs(accuracy - clean_accuracy)})
    return sigmas[-1], steps


def search_problems(measured: dict, spec: dict) -> list[str]:
    """What does not hold of a recorded search (pac_bayes_measures' `search` and `sigma`): bisecting with its
    own recorded accuracies must ask for exactly its σ values, in order, and end at its σ."""
    spec = pac_bayes_spec(spec)
    recorded = measured.get("search") or []
    asked = []

    def recorded_accuracy(sigma: float) -> float:
        asked.append(sigma)
        return recorded[len(asked) - 1]["accuracy"] if len(asked) <= len(recorded) else math.nan

    sigma, _ = search_sigma(recorded_accuracy, measured.get("accuracy", math.nan), spec["deviation"], spec["sigma_low"],
                            spec["sigma_high"], spec["search_depth"], spec["tolerance"])
    if asked != [step["sigma"] for step in recorded] or sigma != measured.get("sigma"):
        return [f"its σ search {[step['sigma'] for step in recorded]} → {measured.get('sigma')} is not the bisection "
                f"of its own accuracies ({asked} → {sigma})"]
    return []


def pac_bayes_measures(model: nn.Module, initial: nn.Module, accuracy: Callable[[nn.Module], float], m: int,
                       spec: dict, replay: list[float] | None = None) -> dict:
    """σ and the two bounds of one trained network `model` started from `initial`, batch norm folded in
    both first; `accuracy(network)`: its training accuracy; `m`: the training examples; `spec` checked by
    pac_bayes_spec (its `seed` seeds the noise). `replay`: the σ values of a recorded search, measured in
    their order (replay_sigmas) instead of searching."""
    spec = pac_bayes_spec(spec)
    trained, start = fold_batch_norm(model), fold_batch_norm(initial)
    clean = accuracy(trained.module)
    generator = torch.Generator().manual_seed(spec["seed"])

    def noisy(sigma: float) -> float:
        return accuracy_under_noise(trained.module, accuracy, sigma, spec["draws"], generator)

    if replay is None:
        sigma, steps = search_sigma(noisy, clean, spec["deviation"], spec["sigma_low"], spec["sigma_high"],
                                    spec["search_depth"], spec["tolerance"])
    else:
        sigma, steps = replay_sigmas(noisy, clean, replay)
    distance = squared_norm(trained.module, spec["norm"], start.module)
    size = squared_norm(trained.module, spec["norm"])
    # converged: the last σ moved the accuracy by the deviation within the tolerance (else the depth ran out)
    converged = abs(steps[-1]["displacement"] - spec["deviation"]) < spec["tolerance"]
    return {"accuracy": clean, "sigma": sigma, "search": steps, "converged": converged, "m": m,
            "squared_distance": distance, "squared_norm": size,
            "pac_bayes_init": pac_bayes_bound(distance, sigma, m), "pac_bayes_orig": pac_bayes_bound(size, sigma, m),
            "pac_bayes_flatness": 1 / sigma ** 2,  # Jiang et al. eq. 53 (measures.py L243)
            "batch_norm_folded": len(trained.folded), "batch_norm_kept": len(trained.kept)}


def initial_students(run, data: Dataset) -> list[nn.Module]:
    """The students of finished run `run` (rdml.train.verified.VerifiedRun) as training built them, before
    the first step: rdml.train.cohort.build_cohort under the run's config (its init seed, `same_init`,
    outputs and published weights, whose sha256 must be the record's), on the CPU; the caller's random
    state is left as it was."""
    from rdml.config import config_from_mapping, resolve
    from rdml.methods import METHODS
    from rdml.train.cohort import build_cohort
    from rdml.train.execution import Execution
    from rdml.train.prepare import published_weights

    if run.saved.get("method"):
        raise ConfigError(f"pac_bayes: {run.model_file} holds the networks method {run.saved['method']} declares; "
                          "the PAC-Bayes measure reads runs of one network per student")
    cfg = resolve(config_from_mapping(run.record["config"]))
    pretrained = published_weights(cfg) if cfg.pretrained else None
    recorded = run.record.get("pretrained_sha256") or {}
    for arch, weights in (pretrained or {}).items():
        if recorded.get(arch) != weights["sha256"]:
            raise ConfigError(f"pac_bayes: the published weights of {arch} at {weights['file']} are not the ones run "
                              f"{run.directory} started from (sha256 {weights['sha256']} != {recorded.get(arch)})")
    execution = Execution(torch.device("cpu"), "fp32", "contiguous", False, False)
    with torch.random.fork_rng(devices=[]):
        cohort = build_cohort(cfg, data, execution, 1, run.outputs, pretrained, METHODS[cfg.method](cfg))
    return [student.model for student in cohort]


def pac_bayes_of_students(run, models: list[nn.Module], data: Dataset, spec: dict, device: torch.device,
                          replay: dict | None = None) -> dict:
    """The PAC-Bayes measures of each student (`student_k`) of finished run `run`, its trained `models` (on
    `device`) against its initial weights (initial_students), on `data`'s training split; student k's noise
    seeded by spec's seed + k (as rdml.analysis.measure.noisy_losses). `replay`: a recorded measurement of
    each student (by name), its σ path measured again instead of searched (pac_bayes_measures)."""
    spec = pac_bayes_spec(spec)
    initial = initial_students(run, data)
    if len(initial) != len(models):
        raise ConfigError(f"pac_bayes: run {run.directory} rebuilds {len(initial)} initial students for {len(models)} "
                          "trained ones")
    m = int(_labelled(data.y_train).sum())
    sigmas = {name: [step["sigma"] for step in values.get("search") or []] or None
              for name, values in (replay or {}).items()}
    return {f"student_{k}": pac_bayes_measures(model, start.to(device), lambda net: training_accuracy(net, data), m,
                                               {**spec, "seed": spec["seed"] + k}, sigmas.get(f"student_{k}"))
            for k, (model, start) in enumerate(zip(models, initial))}
