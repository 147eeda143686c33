"""The training rows each downloaded data set's reader yields, before rdml's own validation split
(`val_fraction`) and before unlabelled rows are dropped: what `make gpu-check` (benchmarks/gpu_check.py)
turns into steps per epoch, and so into a study's GPU-hours, without the download.

A module of its own, imported by no training run: a size describes the download and trains nothing,
so declaring or correcting one moves no run's code identity (rdml.dependencies). A set that is not
downloaded is counted by loading it instead.
"""

from __future__ import annotations

__all__ = ["TRAIN_ROWS"]

TRAIN_ROWS: dict[str, int] = {
    "cifar10": 50_000,  # CIFAR-10: 5 training batches of 10,000 (Krizhevsky 2009; rdml.data.vision)
    "cifar100": 50_000,  # CIFAR-100: 500 training images per class × 100 (Krizhevsky 2009)
    "fashion_mnist": 60_000,  # Fashion-MNIST: train-images-idx3-ubyte (Xiao et al. 2017)
    "dtd": 47 * 40,  # DTD partition 1's train1.txt, 40 per class (rdml.data.photos reads train1 only)
    "flowers102": 102 * 10,  # Flowers102 setid.mat trnid, 10 per class (the validation list is unused)
    "ag_news": 120_000,  # AG News train.csv: 30,000 per class × 4 (Zhang et al. 2015)
    "yahoo_answers": 1_400_000,  # Yahoo! Answers train.csv: 140,000 per class × 10 (Zhang et al. 2015)
    "yelp_full": 650_000,  # Yelp Review Full train.csv: 130,000 per class × 5 (Zhang et al. 2015)
    "market1501": 12_936,  # Market-1501 bounding_box_train: 751 identities (Zheng et al. 2015; rdml.data.market)
    "imagenet": 1_281_167,  # ILSVRC2012_img_train.tar: 1,000 classes, 732 to 1,300 each (rdml.data.imagenet)
    # OKDPH's index lists (rdml.data.subsets): per class round(the parent's class rows × percent / 100),
    # drawn with replacement and trained on duplicates included
    "cifar10_10": 10 * 500, "cifar10_1": 10 * 50, "cifar100_10": 100 * 50, "cifar100_1": 100 * 5,
}
