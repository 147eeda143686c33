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

# How a data set is read: held in memory as tensors (every set today). Sets larger than memory (ImageNet)
# are read as a stream of shards through the same loader interface (rdml.data.base.Dataset.train_batches).
STORAGES = ("memory",)


@dataclass(frozen=True)
class DataSpec:
    """What a model is built from. Images and photos: `input_shape` is (C, H, W) of a model's input;
    text: (L,), the characters of a row (word models take their vocabulary from the data set)."""

    kind: str
    num_classes: int
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class DataSource:
    """A data set: its spec, its reader and how it is prepared. Each entry of DATASETS also carries
    `train_size` (set at the end of this module; None for a set that is not downloaded, counted by loading
    it instead): the training rows its reader yields before any validation split, which
    benchmarks/gpu_check.py turns into steps per epoch."""

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


# `train_size` of each downloaded set: the rows of the training split its reader yields, before rdml's own
# validation split (val_fraction) and before any unlabelled rows are dropped. It describes the download and
# trains nothing, so it stays out of every identity: it is no field (an entry's repr is part of the code
# identity of the runs on it) and it is set by a filling loop (rdml.code leaves those out of the module's
# hash), so declaring or correcting a size moves no run and no prepared data set.
for _name, _source in DATASETS.items():  # none declared but those below
    object.__setattr__(_source, "train_size", None)
for _name, _rows in (
        ("cifar10", 50_000),  # CIFAR-10: 5 training batches of 10,000 (Krizhevsky 2009; rdml.data.vision)
        ("cifar100", 50_000),  # CIFAR-100: 500 training images per class × 100 (Krizhevsky 2009)
        ("fashion_mnist", 60_000),  # Fashion-MNIST: train-images-idx3-ubyte, 60,000 (Xiao et al. 2017)
        ("dtd", 47 * 40),  # DTD partition 1's train1.txt: 40 per class × 47 = 1,880 (rdml.data.photos reads train1 only)
        ("flowers102", 102 * 10),  # Flowers102 setid.mat trnid: 10 per class × 102 = 1,020 (valid unused)
        ("ag_news", 120_000),  # AG News train.csv: 30,000 per class × 4 (Zhang et al. 2015)
        ("yahoo_answers", 1_400_000),  # Yahoo! Answers train.csv: 140,000 per class × 10 (Zhang et al. 2015)
        ("yelp_full", 650_000),  # Yelp Review Full train.csv: 130,000 per class × 5 (Zhang et al. 2015)
        # OKDPH's index lists (rdml.data.subsets): per class, round(the parent's class rows × percent / 100),
        # drawn with replacement and trained on duplicates included: 500 or 50 per CIFAR-10 class, 50 or 5
        # per CIFAR-100 class
        ("cifar10_10", 10 * 500), ("cifar10_1", 10 * 50), ("cifar100_10", 100 * 50), ("cifar100_1", 100 * 5)):
    object.__setattr__(DATASETS[_name], "train_size", _rows)  # a frozen entry: set once, here
