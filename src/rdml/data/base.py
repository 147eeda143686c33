"""Data sets held as tensors, with a fixed recorded split and a fingerprint of the files they come from.

A source module (see rdml.data.catalog) reads raw inputs (uint8 pixels, or floats in [0, 1]) and
labels; `load_dataset` splits them (stratified from `split_seed`, unless the source has an official
test set), hides labels for semi-supervised runs, and fixes the normalisation. `Dataset.inputs` turns
a batch into normalised floats on its device, after any augmentation, so no per-sample work happens
in Python.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rdml.core.losses import UNLABELLED
from rdml.data.catalog import DATASETS, DataSpec
from rdml.data.fixed_normalisation import FIXED, check_normalize, fixed_family
from rdml.data.sequences import Ragged
from rdml.io import sha256_bytes
from rdml.keys import ConfigError, one_of

__all__ = ["Dataset", "Batch", "RawData", "Probe", "PROBE_SPLITS", "load_dataset", "labelled_class_ids", "restrict_embeddings",
           "batch_starts", "epoch_batches", "student_epoch_batches", "own_stream_seed"]


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# `inception`: TF-slim's scaling of [0, 1] pixels to [-1, 1], (x − 0.5)·2, which the official DML re-ID code
# applies (YingZhangDUT/Deep-Mutual-Learning preprocessing/reid_preprocessing.py).
INCEPTION_MEAN, INCEPTION_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
PROBE_SPLITS = ("query", "gallery", "multiquery")  # a retrieval set's evaluated rows (rdml.data.catalog.TASKS)


@dataclass
class Probe:
    """Rows a retrieval set evaluates with (DML §4.1, Market-1501): raw inputs, each row's identity (−1 junk,
    0 distractor, as rdml.retrieval reads them) and camera. `query` are the single queries, `gallery` what they
    are matched against, `multiquery` the images pooled per (identity, camera) of a query (Market's gt_bbox)."""

    x: Tensor
    ids: Tensor
    cams: Tensor

    def to(self, device) -> Probe:
        return Probe(self.x.to(device), self.ids, self.cams)


@dataclass
class RawData:
    """What a source module reads: inputs, labels and file hashes; the test set where it is official."""

    x: Tensor
    y: Tensor
    files: dict
    x_test: Tensor | None = None
    y_test: Tensor | None = None
    sizes: Tensor | None = None  # (N, 2) original (H, W) of each row, where x holds photos resized to one size
    embeddings: Tensor | None = None  # (V, d) word vectors of a text set's vocabulary (rdml.data.text)
    probes: dict[str, Probe] | None = None  # a retrieval set's query, gallery and multiquery rows (PROBE_SPLITS)


@dataclass
class Dataset:
    """Raw train, test and (with val_fraction) validation inputs (uint8, or float in [0, 1], or text
    rows), int64 labels, the per-channel normalisation, and where the data came from."""

    name: str
    x_train: Tensor
    y_train: Tensor  # UNLABELLED (−1) on rows hidden for semi-supervised training
    x_test: Tensor
    y_test: Tensor
    spec: DataSpec
    mean: Tensor = None  # per channel, applied by `inputs`
    std: Tensor = None
    fingerprint: dict = field(default_factory=dict)
    train_sizes: Tensor | None = None  # (N, 2) original (H, W) of photos cached at one size (rdml.data.photos)
    x_val: Tensor | None = None  # held out of the training rows (val_fraction), stratified from split_seed
    y_val: Tensor | None = None
    embeddings: Tensor | None = None  # word vectors of a text set's vocabulary, restricted to the training rows
    probes: dict[str, Probe] | None = None  # a retrieval set's evaluated rows (PROBE_SPLITS); x_test is then empty

    def inputs(self, x: Tensor, augment: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """A batch of raw inputs as normalised float32, augmented first if given; text rows as they are.
        Pedestrian crops are resized to the models' input size first, as the official DML code resizes
        before its flip (rdml.data.resize)."""
        if self.mean is None:  # text: token and character ids
            return x
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if self.spec.kind == "pedestrians" and tuple(x.shape[2:]) != tuple(self.spec.input_shape[1:]):
            from rdml.data.resize import resize_tf

            x = resize_tf(x, tuple(self.spec.input_shape[1:]))
        if augment is not None:
            x = augment(x)
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    def train_inputs(self, rows: Tensor, augment: Callable[..., Tensor] | None = None) -> Tensor:
        """Training rows `rows` as normalised float32. `augment(x, sizes, size)` gets each row's original
        (H, W) where the rows are photos cached at one size, and the models' input size."""
        if augment is None:
            return self.inputs(self.x_train[rows])
        sizes = None if self.train_sizes is None else self.train_sizes[rows]
        size = tuple(self.spec.input_shape[1:])
        return self.inputs(self.x_train[rows], lambda x: augment(x, sizes=sizes, size=size))

    # How training and evaluation read the rows (the data set's loader): they never index its tensors, so a
    # set read from disk can stand where this in-memory one does.

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(batch_starts(len(self.y_train), batch_size))

    def train_batches(self, batch_size: int, *, seed: int, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The training batches of one epoch, in the order `epoch_batches` draws from (seed, epoch), from batch
        `start` on (a run resumed mid-epoch)."""
        for rows in islice(epoch_batches(len(self.y_train), batch_size, seed=seed, epoch=epoch), start, None):
            yield Batch(self, rows)

    def student_train_batches(self, batch_size: int, *, seed: int, epoch: int, student: int,
                              start: int = 0) -> Iterator[Batch]:
        """The training batches of one epoch in student `student`'s own order (`student_epoch_batches`), from batch
        `start` on: student 0's are `train_batches`."""
        batches = student_epoch_batches(len(self.y_train), batch_size, seed=seed, epoch=epoch, student=student)
        for rows in islice(batches, start, None):
            yield Batch(self, rows)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """(normalised inputs, labels) of an evaluated split (test, val or train; a retrieval set's probes:
        query, gallery, multiquery, labelled by identity) in row order."""
        x, y = self._split(split)
        for start in range(0, len(y), batch_size):
            yield self.inputs(x[start : start + batch_size]), y[start : start + batch_size]

    def split_size(self, split: str) -> int:
        """Rows of an evaluated split (0 for a split the data set does not have)."""
        return 0 if split == "val" and self.y_val is None else len(self._split(split)[1])

    def probe_labels(self, split: str) -> tuple[Tensor, Tensor]:
        """A retrieval split's identities and cameras, in row order."""
        probe = self._probe(split)
        return probe.ids, probe.cams

    def _probe(self, split: str) -> Probe:
        if not self.probes or split not in self.probes:
            raise ValueError(f"dataset {self.name} has no {split!r} split; it has: "
                             + ", ".join(self.probes or ("train", "test")))
        return self.probes[split]

    def _split(self, split: str) -> tuple[Tensor, Tensor]:
        if split in PROBE_SPLITS:
            probe = self._probe(split)
            return probe.x, probe.ids
        splits = {"train": (self.x_train, self.y_train), "test": (self.x_test, self.y_test), "val": (self.x_val, self.y_val)}
        if split not in splits or splits[split][1] is None:
            raise ValueError(f"dataset {self.name} has no {split!r} split; it has: "
                             + ", ".join(name for name, (_, y) in splits.items() if y is not None))
        return splits[split]

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def chance_accuracy(self) -> float:
        """Accuracy of always predicting the most frequent test class: what a crashed model scores (0 for a
        retrieval set, which has no classification test split)."""
        if not len(self.y_test):
            return 0.0
        return torch.bincount(self.y_test, minlength=self.num_classes).max().item() / len(self.y_test)

    def to(self, device: torch.device) -> Dataset:
        moved = {k: None if getattr(self, k) is None else getattr(self, k).to(device)
                 for k in ("x_train", "y_train", "x_test", "y_test", "mean", "std", "x_val", "y_val", "embeddings")}
        # train_sizes stay on the CPU, where the augmentation draws its crop boxes from them
        probes = None if self.probes is None else {k: p.to(device) for k, p in self.probes.items()}
        return Dataset(self.name, **moved, spec=self.spec, fingerprint=self.fingerprint, train_sizes=self.train_sizes,
                       probes=probes)


@dataclass
class Batch:
    """A training batch of an in-memory set: its labels, and its inputs under any augmentation (one call
    per view of the same rows)."""

    data: Dataset
    rows: Tensor

    @property
    def labels(self) -> Tensor:
        return self.data.y_train[self.rows]

    def inputs(self, augment: Callable[..., Tensor] | None = None) -> Tensor:
        return self.data.train_inputs(self.rows, augment)


def load_dataset(name: str, *, split_seed: int, test_fraction: float, labelled_fraction: float = 1.0,
                 unlabelled: str = "mimic", data_dir: str | Path = "data", normalize: str = "dataset",
                 val_fraction: float = 0.0, labelled_classes: int = 0, workers: int = 0) -> Dataset:
    """Load `name`, split it, hide labels, and set the normalisation (train statistics, ImageNet's, or
    the fixed constants of published code: rdml.data.fixed_normalisation).

    digits and synthetic are split stratified by class from split_seed; the vision sets keep their
    official test set. The labelled rows (labelled_fraction < 1) are chosen per class from split_seed,
    never from the training seed, so every run of a study sees the same data. `labelled_classes=M` instead
    keeps the labels of every row of M classes and hides the others' (DML §4.10 on Market-1501: "we randomly
    select M identities as labelled in the training set"; the classes: `labelled_class_ids`). `unlabelled="drop"`
    removes the other rows after the normalisation is fixed, so DML-labelled and DML-all differ in
    their losses' rows alone (DML §4.10). `val_fraction` of each class of the training rows is held out
    for validation (RDML §5.2: "20 % of the training set"), from split_seed, before any labels are
    hidden; a text set's vocabulary is then the one of the remaining training rows.

    A set with storage="stream" (ImageNet: rdml.data.catalog.STORAGES) is read from its prepared shards by
    `<module>.load(name, data_dir, workers=workers)`, `workers` decoding processes (0: in this process); it keeps
    its official split and every label.
    """
    source = DATASETS[name]
    check_normalize(normalize, name)
    one_of("unlabelled", unlabelled, ("mimic", "drop"))
    _check_labelled_classes(name, labelled_classes, labelled_fraction)
    if source.storage == "stream":
        changed = {key: value for key, value, default in (("labelled_fraction", labelled_fraction, 1.0),
                                                          ("labelled_classes", labelled_classes, 0),
                                                          ("val_fraction", val_fraction, 0.0)) if value != default}
        if changed:
            raise ConfigError(f"{', '.join(f'{k}={v}' for k, v in changed.items())}: dataset {name} is streamed from "
                              "its shards with its official split and every label; leave these at their defaults")
        return importlib.import_module(f"rdml.data.{source.module}").load(name, data_dir, workers=workers)
    rng = np.random.default_rng(split_seed)
    raw = importlib.import_module(f"rdml.data.{source.module}").load(name, data_dir)
    files = raw.files
    sizes = raw.sizes
    if source.official_split:
        x_train, y_train, x_test, y_test = raw.x, raw.y, raw.x_test, raw.y_test
        test_mask = np.zeros(0, dtype=bool)
        split = {"split": "official", "train_size": len(y_train), "test_size": len(y_test)}
    else:
        labels = raw.y.numpy()
        test_mask = _stratified(labels, test_fraction, rng)
        if test_mask.all() or not test_mask.any():
            raise ConfigError(f"test_fraction={test_fraction} leaves {'no training' if test_mask.all() else 'no test'} rows "
                              f"in dataset {name} ({len(labels)} rows); choose a fraction in (0, 1) that keeps both")
        x, y = raw.x, raw.y
        x_train, y_train, x_test, y_test = x[~test_mask], y[~test_mask], x[test_mask], y[test_mask]
        sizes = None if sizes is None else sizes[~test_mask]
        split = {"split_seed": split_seed, "test_fraction": test_fraction, "train_size": len(y_train),
                 "test_size": len(y_test)}
    x_val = y_val = None
    val_mask = np.zeros(0, dtype=bool)
    if val_fraction > 0:
        val_mask = _stratified(y_train.numpy(), val_fraction, rng)
        if val_mask.all() or not val_mask.any():
            raise ConfigError(f"val_fraction={val_fraction} leaves {'no training' if val_mask.all() else 'no validation'} "
                              f"rows in dataset {name} ({len(y_train)} training rows); choose a fraction that keeps both")
        held, kept = torch.from_numpy(val_mask), torch.from_numpy(~val_mask)
        x_val, y_val, x_train, y_train = x_train[held], y_train[held], x_train[kept], y_train[kept]
        sizes = None if sizes is None else sizes[kept]
        split.update({"val_fraction": val_fraction, "val_size": len(y_val), "train_size": len(y_train)})
    labelled_mask = np.zeros(len(y_train), dtype=bool)
    train_labels = y_train.numpy()
    if labelled_classes:
        labelled_mask = np.isin(train_labels, labelled_class_ids(source.spec.num_classes, labelled_classes, split_seed))
    else:
        for cls in np.unique(train_labels):
            rows = rng.permutation(np.flatnonzero(train_labels == cls))
            labelled_mask[rows[: max(1, int(round(labelled_fraction * len(rows))))]] = True
    y_train = torch.where(torch.from_numpy(labelled_mask), y_train, torch.tensor(UNLABELLED))
    split.update({
        "labelled_fraction": labelled_fraction,
        **({"labelled_classes": labelled_classes} if labelled_classes else {}),  # absent at 0: fingerprints kept
        "labelled_size": int(labelled_mask.sum()),
        "sha256": sha256_bytes(test_mask.tobytes() + labelled_mask.tobytes() + val_mask.tobytes()),
    })
    mean, std = _normalisation(x_train, normalize, name)
    if unlabelled == "drop" and not labelled_mask.all():
        keep = torch.from_numpy(labelled_mask)
        x_train, y_train = x_train[keep], y_train[keep]
        sizes = None if sizes is None else sizes[keep]
        split["unlabelled"] = "drop"
    fingerprint = {
        "files": files,
        "split": split,
        "normalize": normalize,
        "sha256": sha256_bytes(repr((sorted(files.items()), split)).encode()),
    }
    embeddings = raw.embeddings
    if embeddings is not None:  # the vocabulary of the rows it trains on, as the released text code builds it
        embeddings = restrict_embeddings(embeddings, x_train.words)
    return Dataset(name, x_train, y_train, x_test, y_test, source.spec, mean, std, fingerprint, sizes, x_val, y_val,
                   embeddings, raw.probes)


LABELLED_CLASSES_STREAM = 1  # the generator of the labelled classes: SeedSequence((split_seed, 1))


def labelled_class_ids(num_classes: int, count: int, split_seed: int) -> np.ndarray:
    """The classes whose training rows keep their labels under `labelled_classes=count`: the first `count` of a
    permutation of 0..num_classes − 1 that numpy's default_rng(SeedSequence((split_seed, LABELLED_CLASSES_STREAM)))
    draws. DML §4.10: "For Market-1501, we randomly select M identities as labelled in the training set, varying M
    from 100 to 751". A generator of its own, so the classes follow from split_seed alone (not from the test or
    validation rows drawn before them), and the classes of a smaller M are among those of a larger one."""
    order = np.random.default_rng(np.random.SeedSequence((split_seed, LABELLED_CLASSES_STREAM))).permutation(num_classes)
    return np.sort(order[:count])


def _check_labelled_classes(name: str, labelled_classes: int, labelled_fraction: float) -> None:
    """`labelled_classes` is 0 (off) or a number of the data set's classes, and never a fraction of each class too."""
    if not labelled_classes:
        return
    classes = DATASETS[name].spec.num_classes
    if isinstance(labelled_classes, bool) or not isinstance(labelled_classes, int | np.integer) \
            or not 1 <= labelled_classes <= classes:
        raise ConfigError(f"labelled_classes={labelled_classes!r} is not allowed for dataset {name}; it must be an "
                          f"integer in [1, {classes}] (its classes), or 0 (off)")
    if labelled_fraction < 1:
        raise ConfigError(f"labelled_classes={labelled_classes} with labelled_fraction={labelled_fraction}: "
                          "labelled_classes labels every row of M classes, labelled_fraction a fraction of every "
                          "class's rows; give one of them (labelled_fraction=1 or labelled_classes=0)")


def restrict_embeddings(embeddings: Tensor, words_train: Ragged) -> Tensor:
    """`embeddings` with zero rows for the tokens that no training row holds. A run that holds rows out for
    validation builds its vocabulary from its training rows alone, as the released code did from its 80 %
    split (Model_fastText/utils.py L87-89): a token seen only elsewhere is then <unk>, whose vector is zero,
    and with frozen embeddings a zero row is the same thing."""
    counts = torch.bincount(words_train.values, minlength=len(embeddings))
    if len(counts) > len(embeddings):
        raise ValueError(f"word id {len(counts) - 1} is outside the {len(embeddings)} rows of the embeddings")
    return torch.where((counts > 0)[:, None], embeddings, torch.zeros((), dtype=embeddings.dtype, device=embeddings.device))


def _stratified(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A mask of `fraction` of each class's rows (rounded), drawn from `rng`."""
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        mask[rows[: int(round(fraction * len(rows)))]] = True
    return mask


def _normalisation(x_train: Tensor, normalize: str, name: str) -> tuple[Tensor | None, Tensor | None]:
    """Per-channel (mean, std) of data set `name`: none, ImageNet's, fixed constants (FIXED: the training
    rows' statistics never enter, as in the code they come from), or the training rows' own."""
    if not isinstance(x_train, Tensor):  # text rows: ids, not pixels
        return None, None
    if normalize == "none":
        return torch.zeros(x_train.shape[1]), torch.ones(x_train.shape[1])
    if normalize == "inception":
        return torch.tensor(INCEPTION_MEAN), torch.tensor(INCEPTION_STD)
    if normalize == "imagenet":
        if x_train.shape[1] != 3:
            raise ConfigError(f"normalize=imagenet needs RGB images, got {x_train.shape[1]} channel(s)")
        return torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    if normalize in FIXED:
        mean, std = FIXED[normalize][fixed_family(normalize, name)]
        return torch.tensor(mean), torch.tensor(std)
    # Two passes over chunks of rows in float64: a float64 copy of a photo set at once would need 8 bytes a pixel.
    channels, chunks = x_train.shape[1], x_train.split(1024)
    scale = 255 if x_train.dtype == torch.uint8 else 1

    def per_channel(chunk: Tensor) -> Tensor:
        return chunk.transpose(0, 1).reshape(channels, -1).double() / scale

    count = x_train.numel() // channels
    mean = sum(per_channel(c).sum(1) for c in chunks) / count
    variance = sum((per_channel(c) - mean[:, None]).square().sum(1) for c in chunks) / (count - 1)
    return mean.float(), variance.sqrt().float()


def batch_starts(n_rows: int, batch_size: int) -> list[int]:
    """First row of every batch of an epoch; a last batch of one row joins the one before it."""
    starts = list(range(0, n_rows, batch_size))
    if len(starts) > 1 and n_rows - starts[-1] == 1:
        starts.pop()
    return starts


def epoch_batches(n_rows: int, batch_size: int, *, seed: int, epoch: int) -> Iterator[Tensor]:
    """Row indices of each batch of one epoch, shuffled from (seed, epoch) alone.

    Deriving the order from the epoch number instead of a running generator makes a resumed run see
    exactly the batches an uninterrupted one would. A last batch of one row is merged into the one
    before it, since batch norm cannot train on a single row.
    """
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    yield from _cut(order, batch_size)


def student_epoch_batches(n_rows: int, batch_size: int, *, seed: int, epoch: int, student: int) -> Iterator[Tensor]:
    """Row indices of each batch of one epoch in the order of a student of its own, for a run whose networks each
    step on a mini-batch of their own (dml's `batches=own`).

    Student 0's order is `epoch_batches`' (seed, epoch); student k ≥ 1's is torch.randperm(n_rows) under a
    generator seeded with `own_stream_seed(seed, epoch, k, "rows")`, cut into batches as `epoch_batches` cuts:
    every student sees every row once an epoch, each in an order of its own, from (seed, epoch, k) alone (so a
    resumed run sees the same batches).
    """
    if student == 0:
        yield from epoch_batches(n_rows, batch_size, seed=seed, epoch=epoch)
        return
    generator = torch.Generator().manual_seed(own_stream_seed(seed, epoch, student, "rows"))
    yield from _cut(torch.randperm(n_rows, generator=generator), batch_size)


OWN_STREAM_USES = ("rows", "draws")  # what a student's own stream seeds: its batch order, its augmentation draws


def own_stream_seed(seed: int, epoch: int, student: int, use: str) -> int:
    """The seed of student `student`'s own batch order (`use="rows"`) or augmentation draws (`"draws"`) in an
    epoch: the first 64-bit word numpy's SeedSequence((seed, epoch, student, OWN_STREAM_USES.index(use))) generates.
    A hash of all four, so no (seed, epoch, student) shares another's stream or the seed · 1,000,003 + epoch
    (+ 500,000,000) streams of `epoch_batches` and the shared augmentation draws but by chance."""
    one_of("use", use, OWN_STREAM_USES)
    entropy = (seed, epoch, student, OWN_STREAM_USES.index(use))
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def _cut(order: Tensor, batch_size: int) -> Iterator[Tensor]:
    """`order` cut into an epoch's batches (`batch_starts`)."""
    starts = batch_starts(len(order), batch_size)
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(order)
        yield order[start:end]
