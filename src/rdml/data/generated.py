"""Data generated from a seed: `synthetic` (tests) and `tiny_<data set>` (smoke runs of a study's
tables on images shaped like the real data set's). Both are noisy copies of one prototype per class:
learnable, not trivially separable. The tiny photo sets are PIL photos of varied sizes, put through the
real sets' decoding (rdml.data.photos), with an official test set as theirs. The tiny text corpora are
sentences of class words and common words, put through the real corpora's tokenising and encoding
(rdml.data.text) with a GloVe-format table of their words, with an official test set as theirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rdml.data.base import RawData
from rdml.data.catalog import DATASETS

__all__ = ["load"]

TINY = {"tiny_cifar10": (8, 10), "tiny_cifar100": (4, 100), "tiny_fashion_mnist": (8, 28)}  # per class, seed
TINY_PHOTOS = {"tiny_dtd": ("dtd", 11), "tiny_flowers102": ("flowers102", 12)}  # the real set decoded as, seed
PHOTO_SIDES = (40, 120)  # the range of a tiny photo's height and width, in pixels
PHOTOS_PER_CLASS = (2, 1)  # training, test
TINY_TEXT = {"tiny_ag_news": ("ag_news", 31), "tiny_yahoo_answers": ("yahoo_answers", 32),  # the real corpus, seed
             "tiny_yelp_full": ("yelp_full", 33)}
TEXT_ROWS_PER_CLASS = (6, 2)  # training, test
TEXT_WORDS = (6, 24)  # the range of a tiny text's number of words
COMMON_WORDS = ("the", "a", "of", "and", "to", "in", "is", "was", "it", "that", "for", "on", "with", "as", "said",
                "new", "U.S.", "don't", "report", "people")


def load(name: str, data_dir: str | Path) -> RawData:
    if name == "synthetic":
        return _synthetic()
    if name in TINY_PHOTOS:
        return _tiny_photos(*TINY_PHOTOS[name], DATASETS[name].spec.num_classes)
    if name in TINY_TEXT:
        return _tiny_text(*TINY_TEXT[name])
    per_class, seed = TINY[name]
    spec = DATASETS[name].spec
    return _tiny_images(spec.input_shape, spec.num_classes, per_class, seed)


def _synthetic(classes: int = 10, per_class: int = 80, seed: int = 1234) -> RawData:
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(classes, 1, 8, 8)).astype(np.float32)
    labels = np.repeat(np.arange(classes), per_class)
    images = prototypes[labels] + 1.5 * rng.normal(size=(len(labels), 1, 8, 8)).astype(np.float32)
    files = {"generated": f"synthetic(classes={classes}, per_class={per_class}, seed={seed})"}
    return RawData(torch.from_numpy(images), torch.from_numpy(labels), files)


def _tiny_images(shape: tuple[int, ...], classes: int, per_class: int, seed: int) -> RawData:
    """uint8 images: noisy class prototypes."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, size=(classes, *shape))
    labels = np.repeat(np.arange(classes), per_class)
    images = np.clip(prototypes[labels] + rng.normal(0, 40, size=(len(labels), *shape)), 0, 255).astype(np.uint8)
    files = {"generated": f"tiny(shape={tuple(shape)}, classes={classes}, per_class={per_class}, seed={seed})"}
    return RawData(torch.from_numpy(images), torch.from_numpy(labels), files)


def _tiny_photos(real: str, seed: int, classes: int) -> RawData:
    """RGB photos of random height and width: a 4×4 colour pattern per class stretched over the photo,
    plus noise; decoded as the real set `real` is, so the training rows are cached at its size with each
    photo's reference (H, W), and the test rows are the test transform's 224-px output."""
    from PIL import Image

    from rdml.data import photos

    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, size=(classes, 4, 4, 3), dtype=np.uint8)

    def photo(cls: int) -> Image.Image:
        height, width = (int(v) for v in rng.integers(PHOTO_SIDES[0], PHOTO_SIDES[1] + 1, size=2))
        base = np.asarray(Image.fromarray(prototypes[cls]).resize((width, height), Image.NEAREST), dtype=np.float64)
        return Image.fromarray(np.clip(base + rng.normal(0, 40, size=base.shape), 0, 255).astype(np.uint8))

    y, y_test = (np.repeat(np.arange(classes), n) for n in PHOTOS_PER_CLASS)
    train, test = [photo(c) for c in y], [photo(c) for c in y_test]
    x, sizes = photos.train_rows(real, train)
    files = {"generated": f"tiny_photos(as={real}, classes={classes}, per_class={PHOTOS_PER_CLASS}, sides={PHOTO_SIDES}, "
                          f"seed={seed}, cache_side={photos.CACHE_SIDE})"}
    return RawData(x, torch.from_numpy(y), files, photos.test_rows(test), torch.from_numpy(y_test), sizes)


def _tiny_text(real: str, seed: int, words_per_class: int = 6) -> RawData:
    """Texts of 6 to 24 words, about half of them from their class's own made-up words, with capitals,
    commas and end marks; each test text also holds a word no training text has (<unk>). Encoded as the
    real corpus `real` is (rdml.data.text.encode_corpus), with GloVe-format lines of 300 numbers for the
    common words and most class words (class words near their class's centre; every fourth class word and
    the capitalised forms left out, so some rows of the table are zero)."""
    from rdml.data import text

    classes = text.CLASSES[real]
    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "vo", "ri", "pe", "zu", "ga", "di", "fo", "be", "xi", "ju"]
    own = [["".join(rng.choice(syllables, 3)) + str(c) for _ in range(words_per_class)] for c in range(classes)]

    def sentence(cls: int, extra: str | None) -> str:
        n = int(rng.integers(TEXT_WORDS[0], TEXT_WORDS[1] + 1))
        words = [own[cls][rng.integers(words_per_class)] if rng.random() < 0.5
                 else COMMON_WORDS[rng.integers(len(COMMON_WORDS))] for _ in range(n)]
        if extra:
            words.insert(int(rng.integers(n)), extra)
        words = [w + "," if rng.random() < 0.1 else w for w in words]
        return " ".join([words[0].capitalize(), *words[1:]]) + str(rng.choice([".", "!", "?"]))

    y, y_test = (np.repeat(np.arange(classes), n) for n in TEXT_ROWS_PER_CLASS)
    texts = [sentence(c, None) for c in y]
    texts_test = [sentence(c, f"unseen{i}") for i, c in enumerate(y_test)]
    centres = rng.normal(0, 0.5, size=(classes, text.GLOVE_DIM))
    vectors = [(w.lower(), rng.normal(0, 0.3, text.GLOVE_DIM)) for w in COMMON_WORDS]
    vectors += [(w, centres[c] + rng.normal(0, 0.3, text.GLOVE_DIM)) for c in range(classes)
                for k, w in enumerate(own[c]) if k % 4 != 3]
    lines = [f"{w} {' '.join(f'{v:.5f}' for v in vector)}".encode() for w, vector in vectors]
    x, x_test, embeddings, _ = text.encode_corpus(texts, texts_test,
                                                  lambda vocab: text.glove_vectors(lines, vocab, source="generated GloVe"))
    files = {"generated": f"tiny_text(as={real}, classes={classes}, per_class={TEXT_ROWS_PER_CLASS}, words={TEXT_WORDS}, "
                          f"seed={seed}, dim={text.GLOVE_DIM}, chars={text.CHARS})"}
    return RawData(x, torch.from_numpy(y), files, x_test, torch.from_numpy(y_test), embeddings=embeddings)
