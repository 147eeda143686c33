"""Measurements of a finished run's final models on its training images, for the DML paper's
analyses (§4.8): the mean prediction entropy and sorted top-5 posterior (Fig. 4c), the entropy of
the teaching signal (DML: each peer; DML_e: the other students' average), and the training loss
after Gaussian noise on every parameter (Figs. 4a/4b, flat minima); and for the OKDPH supplement's
Table 5, the PAC-Bayes bounds of Jiang et al. (2020) against each student's initial weights
(rdml.analysis.pac_bayes), and for its Fig. 1 the same bounds at every epoch the run kept (`keep_every`,
rdml.train.checkpoint.load_kept_epoch) and at its last; and for its Figs. 2–5 the loss landscape of the
run's students' trajectories beside those of another run, its partner (rdml.analysis.landscape: the whole
measurement under "landscape", each trajectory's end per student, the partner's as "partner.student_k"); and
for DML Fig. 5 the t-SNE of each network's features of some gallery identities (rdml.analysis.tsne: the points
under "tsne", each network's silhouette and CKA with its peers per student).
The models are loaded through
the same checks as a KD teacher (rdml.train.verified: a finished run, weights matching its record).
A run whose method trains networks of its own (rdml.methods.base.Method.networks) is measured per
member it declares (`Method.members`, e.g. each branch of one network), its networks rebuilt through
the method (rdml.train.cohort.rebuild); noise then reaches every parameter of them."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from rdml.config import data_keys
from rdml.data.base import Dataset, load_dataset
from rdml.keys import PARTNER, ConfigError
from rdml.train.integrity import FINISHED, MEASURES_FORMAT, seal
from rdml.train.verified import verified_run

__all__ = ["MEASURES_FORMAT", "MEASUREMENTS", "train_log_probs", "prediction_statistics", "noisy_losses", "measure_run",
           "measured_on", "pac_bayes_epochs", "epoch_measure",
           "partner_dir", "landscape_students"]

MEASUREMENTS = ("predictions", "noise", "pac_bayes", "pac_bayes_epochs", "landscape", "tsne")
PER_EPOCH = ("pac_bayes_init", "pac_bayes_orig")  # the values pac_bayes_epochs also holds flat, one per epoch
TOP = 5


@torch.no_grad()
def log_probs_of(model: torch.nn.Module, data: Dataset, split: str, dtype=torch.float32,
                 batch_size: int = 1024) -> torch.Tensor:
    """Log-probabilities of a split's rows, read through the data set's loader (eval mode, float32 forward,
    no augmentation), in `dtype`."""
    model.eval()
    out = [torch.log_softmax(model(x).to(dtype), dim=-1) for x, _ in data.eval_batches(split, batch_size)]
    return torch.cat(out)


def train_log_probs(model: torch.nn.Module, data: Dataset) -> torch.Tensor:
    """Log-probabilities of every training image."""
    return log_probs_of(model, data, "train")


def _entropy(log_p: torch.Tensor) -> torch.Tensor:
    """Per-row entropy −Σ p log p in nats (0·log 0 = 0)."""
    return -(log_p.exp() * log_p.nan_to_num(neginf=0.0)).sum(-1)


def prediction_statistics(log_probs: list[torch.Tensor], method: str, names: list[str] | None = None) -> dict[str, dict]:
    """Per student (named `names`, by default `student_k`): mean entropy, mean k-th largest posterior
    (top1..top5) and, in a cohort, the mean entropy of the signal it mimics: each peer's prediction (DML,
    averaged over peers) or the peers' average prediction (DML_e, DML eq. 11)."""
    stats = {}
    for k, log_p in enumerate(log_probs):
        name = names[k] if names is not None else f"student_{k}"
        top = log_p.exp().topk(min(TOP, log_p.shape[-1]), dim=-1).values.mean(0)
        stats[name] = {"entropy": float(_entropy(log_p).mean()), **{f"top{i + 1}": float(v) for i, v in enumerate(top)}}
        peers = [lp for j, lp in enumerate(log_probs) if j != k]
        if peers and method == "dml_e":
            average = torch.logsumexp(torch.stack(peers), 0) - torch.log(torch.tensor(float(len(peers))))
            stats[name]["signal_entropy"] = float(_entropy(average).mean())
        elif peers:
            stats[name]["signal_entropy"] = float(torch.stack([_entropy(p).mean() for p in peers]).mean())
    return stats


@torch.no_grad()
def noisy_losses(model: torch.nn.Module, data: Dataset, sigmas: list[float], draws: int, seed: int,
                 log_probs=None) -> dict:
    """Mean training cross-entropy before and after adding N(0, σ²) to every parameter of `model`, `draws`
    times per σ; noise from a CPU generator seeded by `seed`, the weights restored after each draw.
    `log_probs()`: the training rows' log-probabilities the loss reads (by default `model`'s own)."""
    def loss() -> float:
        return float(F.nll_loss(log_probs() if log_probs is not None else train_log_probs(model, data), data.y_train))

    saved = [p.detach().clone() for p in model.parameters()]
    generator = torch.Generator().manual_seed(seed)
    result = {"loss": loss()}
    for sigma in sigmas:
        values = []
        for _ in range(draws):
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=generator).to(p) * sigma)
            values.append(loss())
            for p, s in zip(model.parameters(), saved):
                p.copy_(s)
        result[f"loss@{sigma:g}"] = values
    return result


def measure_run(run_dir: str | Path, measurements: dict, device: torch.device, replay: dict | None = None) -> dict:
    """The requested measurements of every student of the run in `run_dir`, sealed, with the sha256 of
    the weights and of the record they come from, and where they were measured (`measured_on`: the audit
    measures again exactly on the same CPU model and thread count, within a tolerance elsewhere). `replay`:
    the students of a measurement made elsewhere, whose PAC-Bayes σ searches are measured again along their
    recorded paths (rdml.analysis.pac_bayes.replay_sigmas), not searched anew."""
    unknown = sorted(set(measurements) - set(MEASUREMENTS))
    if unknown:
        raise ConfigError(f"measurements {unknown} are not known; allowed: {', '.join(MEASUREMENTS)}")
    run_dir = Path(run_dir)
    run = verified_run(run_dir, "rdml pipeline measure: ", FINISHED)
    record = run.record
    cfg = record["config"]
    head = {"format": MEASURES_FORMAT, "run": str(run_dir), "status": record["status"],
            "config_sha256": record["config_sha256"], "run_record_sha256": record.get("record_sha256"),
            "measurements": measurements, "measured_on": measured_on(device)}
    if record["status"] != "ok":  # a diverged run is counted as diverged in the tables, not measured
        return seal({**head, "model_sha256": None, "students": {}})
    data = load_dataset(cfg["dataset"], **data_keys(cfg)).to(device)
    if "landscape" in measurements:
        return seal({**head, "model_sha256": run.model_sha256, **landscape_students(run, data, measurements, device)})
    if run.saved.get("method"):  # the networks its method declares
        return seal({**head, "model_sha256": run.model_sha256, "students": declared_networks(run, data, measurements, device)})
    models, sha = [run.model(k, data).to(device) for k in range(cfg["students"])], run.model_sha256
    students = {f"student_{k}": {} for k in range(len(models))}
    if "predictions" in measurements:
        for name, values in prediction_statistics([train_log_probs(m, data) for m in models], cfg["method"]).items():
            students[name].update(values)
    if "noise" in measurements:
        spec = measurements["noise"]
        for k, model in enumerate(models):
            students[f"student_{k}"].update(noisy_losses(model, data, spec["sigmas"], spec["draws"], spec["seed"] + k))
    if "pac_bayes" in measurements:
        from rdml.analysis.pac_bayes import pac_bayes_of_students

        for name, values in pac_bayes_of_students(run, models, data, measurements["pac_bayes"], device, replay).items():
            students[name].update(values)
    if "pac_bayes_epochs" in measurements:
        for name, values in pac_bayes_epochs(run, models, data, measurements["pac_bayes_epochs"], device, replay).items():
            students[name].update(values)
    embedded = {}
    if "tsne" in measurements:  # the points under "tsne", each network's numbers beside its other measures
        from rdml.analysis.tsne import tsne_of_run

        summaries, embedded["tsne"] = tsne_of_run(run, data, measurements["tsne"])
        for name, values in summaries.items():
            students[name].update(values)
    return seal({**head, "model_sha256": sha, "students": students, **embedded})


def partner_dir(run_dir: str | Path, partner: str) -> Path:
    """Where the partner run `partner` (a run id, dataset/name) of the run at `run_dir` lives: beside it."""
    return Path(run_dir).parent.parent / partner


def landscape_students(run, data: Dataset, measurements: dict, device: torch.device) -> dict:
    """The landscape of `run` and its partner (rdml.analysis.landscape.landscape_of_runs): the partner's record
    and weights named by their sha256 (a table refuses the measurement once they change), the whole result
    under "landscape", and per trajectory (student) its end's loss and rise as `landscape_loss` and
    `landscape_rise`. The landscape is measured alone: its spec is the run's only measurement."""
    from rdml.analysis.landscape import landscape_of_runs

    if set(measurements) != {"landscape"}:
        raise ConfigError(f"landscape: run {run.directory} is also asked for {sorted(set(measurements) - {'landscape'})}; "
                          "a landscape is measured alone")
    spec = dict(measurements["landscape"])
    partner_id = spec.pop(PARTNER, None)
    if not isinstance(partner_id, str) or partner_id.count("/") != 1:
        raise ConfigError(f"landscape.{PARTNER}={partner_id!r}: allowed: the run id (dataset/name) of the run whose "
                          "trajectories join this run's")
    partner = verified_run(partner_dir(run.directory, partner_id), "rdml pipeline measure: landscape partner: ", FINISHED)
    if partner.record["status"] != "ok":
        raise ConfigError(f"landscape: partner run {partner.directory} has status {partner.record['status']!r}: a "
                          "diverged run has no trajectory to draw")
    result = landscape_of_runs(run, partner, data, spec, device)
    students = {label: {"landscape_loss": end["loss"], "landscape_rise": end["rise"]} for label, end in result["ends"].items()}
    return {PARTNER: {"run": partner_id, "run_record_sha256": partner.record.get("record_sha256"),
                      "model_sha256": partner.model_sha256}, "students": students, "landscape": result}


def epoch_measure(measure: str, epoch: int) -> str:
    """The name a per-epoch value goes by in a student's measurements, which a table's Entry.measure reads:
    "pac_bayes_orig@26"."""
    return f"{measure}@{epoch}"


def pac_bayes_epochs(run, final_models: list[torch.nn.Module], data: Dataset, spec: dict,
                     device: torch.device, replay: dict | None = None) -> dict[str, dict]:
    """The PAC-Bayes measures of each student at every epoch run `run` kept (its record's `kept_epochs`, each
    file checked against its sha256 by load_kept_epoch) and at its last epoch (`final_models`, model.pt), for
    the OKDPH supplement's Fig. 1 ("PAC-Bayes bound of models trained on VGG16 in different epochs"): per
    epoch exactly the final weights' measurement (rdml.analysis.pac_bayes.pac_bayes_of_students: the same
    σ search, student k's noise seeded by spec's seed + k at every epoch), against the same initial weights.
    Per student: `pac_bayes_epochs` (epoch → every measure) and each bound flat as "pac_bayes_orig@<epoch>".
    `replay`: a recorded measurement's students, each epoch's σ path measured again (measure_run)."""

    def replayed(epoch: int) -> dict | None:
        return None if replay is None else {name: (values.get("pac_bayes_epochs") or {}).get(str(epoch)) or {}
                                            for name, values in replay.items()}

    from rdml.analysis.pac_bayes import pac_bayes_of_students
    from rdml.train.checkpoint import load_kept_epoch

    kept = sorted(int(epoch) for epoch in run.record.get("kept_epochs") or {})
    if not kept:
        raise ConfigError(f"pac_bayes_epochs: run {run.directory} kept no epochs (keep_every="
                          f"{run.record['config'].get('keep_every', 0)}); the bound per epoch reads the networks its "
                          "keep_every keeps: train it with keep_every >= 1")
    last = len(run.record["epochs"])
    per_epoch = {}
    for epoch in kept:
        cohort, method = load_kept_epoch(run.directory, epoch, data, device, prefix="pac_bayes_epochs: ")
        if method is not None:  # measure_run refuses such runs before; a kept file never differs from model.pt's kind
            raise ConfigError(f"pac_bayes_epochs: {run.directory} epoch {epoch} holds the networks method "
                              f"{method.cfg.method} declares; the PAC-Bayes measure reads runs of one network per student")
        per_epoch[epoch] = pac_bayes_of_students(run, [s.model for s in cohort], data, spec, device, replayed(epoch))
    if last not in per_epoch:
        per_epoch[last] = pac_bayes_of_students(run, final_models, data, spec, device, replayed(last))
    students = {}
    for epoch, measured in per_epoch.items():
        for name, values in measured.items():
            student = students.setdefault(name, {"pac_bayes_epochs": {}})
            student["pac_bayes_epochs"][str(epoch)] = values
            student.update({epoch_measure(m, epoch): values[m] for m in PER_EPOCH})
    return students


def measured_on(device: torch.device) -> dict:
    """The device, its model, the torch and the thread count measurements (or an evaluation) ran with."""
    from rdml.train.record import environment

    return {k: v for k, v in environment(device).items() if k in ("device", "device_name", "torch", "threads")}


def declared_networks(run, data: Dataset, measurements: dict, device: torch.device) -> dict[str, dict]:
    """The measurements of each member of a run whose model.pt holds the networks its method declares,
    the networks rebuilt through the method and read through its outputs (rdml.train.evaluate)."""
    from rdml.train.cohort import rebuild
    from rdml.train.evaluate import split_log_probs

    if {"pac_bayes", "pac_bayes_epochs"} & set(measurements):  # its bound needs each student's initial network
        raise ConfigError(f"pac_bayes: run {run.directory} holds the networks method {run.saved['method']} declares; "
                          "the PAC-Bayes measure reads runs of one network per student")
    if "tsne" in measurements:
        raise ConfigError(f"tsne: run {run.directory} holds the networks method {run.saved['method']} declares; the "
                          "t-SNE of DML Fig. 5 reads runs of one network per student")
    cohort, method = rebuild(run.saved, run.record["config"], data, device)
    members = list(method.members(method.cfg))

    def log_probs() -> dict:
        return split_log_probs(cohort, data, "train", method=method)[0]

    students = {name: {} for name in members}
    if "predictions" in measurements:
        outputs = log_probs()
        students.update(prediction_statistics([outputs[m] for m in members], method.cfg.method, members))
    if "noise" in measurements:
        spec, networks = measurements["noise"], torch.nn.ModuleList([s.model for s in cohort])
        for k, name in enumerate(members):
            students[name].update(noisy_losses(networks, data, spec["sigmas"], spec["draws"], spec["seed"] + k,
                                               log_probs=lambda name=name: log_probs()[name]))
    return students
