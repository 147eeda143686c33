"""Every data set rdml knows, its kind and the spec that models are built from; torch-free, so that
configs and study plans are checked without importing torch.

A kind says which augmentations and normalisations its inputs take (images: the batched crops and
flips of rdml.data.augment, per-channel normalisation). A spec is what an architecture needs to know
about its input. A source names the module that reads it: `<module>.load(name, data_dir)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdml.registry import Registry

__all__ = ["Kind", "Task", "DataSpec", "DataSource", "Resource", "KINDS", "TASKS", "STORAGES", "DATASETS", "RESOURCES",
           "downloaded"]


@dataclass(frozen=True)
class Kind:
    name: str
    augmentations: tuple[str, ...]
    normalizations: tuple[str, ...]


@dataclass(frozen=True)
class Task:
    """What a data set's rows are for: the splits it has, what each row is labelled with, and so which
    metrics score a model on it (rdml.metrics). Classification: classes, a training, a test and an
    optional validation split, scored by top-1 and its kin. Retrieval (person re-identification,
    DML §4.1 on Market-1501): training identities, then a query and a gallery whose rows carry an identity
    and a camera, scored by mAP and CMC rank-k; its readers and metrics come with Market-1501."""

    name: str
    splits: tuple[str, ...]
    labels: tuple[str, ...]


TASKS: Registry[Task] = Registry("task")
TASKS.add("classification", Task("classification", ("train", "test", "val"), ("class",)))
TASKS.add("retrieval", Task("retrieval", ("train", "query", "gallery"), ("identity", "camera")))

# How a data set is read: held in memory as tensors, or, for a set larger than memory (ImageNet), streamed from
# shards on disk by decoding workers through the same loader interface (rdml.data.base.Dataset.train_batches;
# rdml.data.imagenet.StreamedDataset).
STORAGES = ("memory", "stream")


@dataclass(frozen=True)
class DataSpec:
    """What a model is built from. Images and photos: `input_shape` is (C, H, W) of a model's input;
    text: (L,), the characters of a row (word models take their vocabulary from the data set)."""

    kind: str
    num_classes: int
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class DataSource:
    name: str
    spec: DataSpec
    module: str  # rdml.data.<module>.load(name, data_dir) reads it
    downloaded: bool = False  # fetched by `rdml pipeline prepare` into <data_dir>/<name>, a DVC output
    official_split: bool = False  # otherwise split stratified by class from split_seed
    smoke: str | None = None  # a tiny generated stand-in of the same spec, for `<study>_smoke`
    needs: tuple[str, ...] = ()  # resources (RESOURCES) its prepare step reads, fetched by their own step first
    task: str = "classification"  # TASKS
    storage: str = "memory"  # STORAGES


@dataclass(frozen=True)
class Resource:
    """A download that several data sets read (word vectors): fetched once by its own prepare step into
    `<data_dir>/<folder>`, a DVC output, by `rdml.data.<fetch>`(data_dir)."""

    name: str
    fetch: str  # "module:function" under rdml.data
    folder: str


RESOURCES: Registry[Resource] = Registry("resource")
RESOURCES.add("glove_840b", Resource("glove_840b", "text:fetch_glove", "glove"))  # GloVe 840B.300d (Pennington et al. 2014)

KINDS: Registry[Kind] = Registry("data kind")
KINDS.add("images", Kind("images", ("none", "crop_flip", "crop_flip_reflect", "crop_flip_rotate", "resized_crop_flip",
                                    "crop_flip_cutout", "crop_randaugment", "crop_autoaugment"), ("dataset", "imagenet")))
# Photos of many sizes for pretrained 224-px networks (rdml.data.photos): training rows are cached at one
# size with each photo's own (H, W), and every augmentation crops them to the models' input size; test
# rows hold the test transform's output already. "none": raw [0, 1] pixels, as the released RDML code feeds them.
KINDS.add("photos", Kind("photos", ("resized_crop_flip", "rotate_resized_crop_flip"), ("none", "imagenet", "dataset")))
# Text (rdml.data.text): each row's word ids (fastText) and character ids (CharCNN), no augmentation.
KINDS.add("text", Kind("text", ("none",), ("none",)))
# Pedestrian crops for person re-identification (rdml.data.market): held as uint8 at the size the official
# DML code stores them (160 × 64), resized on the device to the models' input (`Dataset.inputs`) before the
# flip, as the official code does; `flip` is the official code's only augmentation (YingZhangDUT/Deep-Mutual-Learning
# preprocessing/reid_preprocessing.py L30-40), `inception` its scaling to [-1, 1].
KINDS.add("pedestrians", Kind("pedestrians", ("flip", "none"), ("inception", "imagenet", "dataset")))
# ImageNet photos at their own sizes, decoded and augmented per sample by a streamed set's workers
# (rdml.data.imagenet): `inception` is TF-slim's preprocess_for_train as it trained MobileNet v1 and Inception v1,
# `none` its preprocess_for_eval (central 87.5 %); both end in slim's scaling to [-1, 1], the one normalisation.
KINDS.add("imagenet_photos", Kind("imagenet_photos", ("inception", "none"), ("inception",)))

DATASETS: Registry[DataSource] = Registry("dataset")


def _images(name: str, module: str, classes: int, shape: tuple[int, int, int], **flags) -> None:
    DATASETS.add(name, DataSource(name, DataSpec("images", classes, shape), module, **flags))


_images("digits", "digits", 10, (1, 8, 8))  # embedded: ships inside scikit-learn
_images("synthetic", "generated", 10, (1, 8, 8))
for _name, _classes, _shape in (("cifar10", 10, (3, 32, 32)), ("cifar100", 100, (3, 32, 32)), ("fashion_mnist", 10, (1, 28, 28))):
    _images(f"tiny_{_name}", "generated", _classes, _shape)
    _images(_name, "vision", _classes, _shape, downloaded=True, official_split=True, smoke=f"tiny_{_name}")


for _name, _classes in (("dtd", 47), ("flowers102", 102)):
    DATASETS.add(f"tiny_{_name}", DataSource(f"tiny_{_name}", DataSpec("photos", _classes, (3, 224, 224)), "generated",
                                            official_split=True))
    DATASETS.add(_name, DataSource(_name, DataSpec("photos", _classes, (3, 224, 224)), "photos", downloaded=True,
                                   official_split=True, smoke=f"tiny_{_name}"))


# RDML Table 3: Zhang et al. (2015)'s corpora; input_shape is the characters CharCNN reads of a row.
for _name, _classes in (("ag_news", 4), ("yahoo_answers", 10), ("yelp_full", 5)):
    DATASETS.add(f"tiny_{_name}", DataSource(f"tiny_{_name}", DataSpec("text", _classes, (300,)), "generated",
                                            official_split=True))
    DATASETS.add(_name, DataSource(_name, DataSpec("text", _classes, (300,)), "text", downloaded=True,
                                   official_split=True, smoke=f"tiny_{_name}", needs=("glove_840b",)))


# DML §4.1: Market-1501, 751 training identities for a 751-way classification; query and gallery for retrieval.
# No address publishes the archive any more: the user puts it in place and `prepare` records its sha256.
DATASETS.add("tiny_market1501", DataSource("tiny_market1501", DataSpec("pedestrians", 12, (3, 224, 224)), "generated",
                                           official_split=True, task="retrieval"))
DATASETS.add("market1501", DataSource("market1501", DataSpec("pedestrians", 751, (3, 224, 224)), "market",
                                      downloaded=True, official_split=True, smoke="tiny_market1501", task="retrieval"))


# ILSVRC2012 (ImageNet): no public download; the user's three archives, prepared by `rdml pipeline prepare imagenet`
# into shards that the training loop streams (rdml.data.imagenet). 1,000 classes (TF-slim's checkpoints have 1,001,
# a background class first); the validation images are the official test split. tiny_imagenet: the same archive
# formats generated at a few KB, read by the same reader.
DATASETS.add("tiny_imagenet", DataSource("tiny_imagenet", DataSpec("imagenet_photos", 5, (3, 224, 224)), "imagenet",
                                         official_split=True, storage="stream"))
DATASETS.add("imagenet", DataSource("imagenet", DataSpec("imagenet_photos", 1000, (3, 224, 224)), "imagenet",
                                    downloaded=True, official_split=True, smoke="tiny_imagenet", storage="stream"))


def downloaded() -> list[str]:
    """Data sets that the pipeline downloads (and DVC tracks) before any job trains on them."""
    return [name for name, source in DATASETS.items() if source.downloaded]


# OKDPH (Zhang et al., CVPR 2023), supplement Table 4: "10 %" and "1 %" of the CIFAR training rows, as the
# index lists stored in tianlizhang/OKDPH experiment/sample/*.pkl name them (drawn per class with
# replacement, so with duplicates), and the full test sets (rdml.data.subsets). The lists are one shared
# download; each set reads its parent CIFAR set. Smoke runs use
# the parent's generated stand-in.
# The parent is prepared by its own step first (one download, DVC-tracked once, however many sets read it).
RESOURCES.add("okdph_samples", Resource("okdph_samples", "subsets:fetch_samples", "okdph_samples"))
for _parent, _classes in (("cifar10", 10), ("cifar100", 100)):
    for _percent in (10, 1):
        _images(f"{_parent}_{_percent}", "subsets", _classes, (3, 32, 32), downloaded=True, official_split=True,
                smoke=f"tiny_{_parent}", needs=("okdph_samples", _parent))
