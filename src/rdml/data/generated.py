"""Data generated from a seed: `synthetic` (tests) and `tiny_<data set>` (smoke runs of a study's
tables on images shaped like the real data set's). Both are noisy copies of one prototype per class:
learnable, not trivially separable. The tiny photo sets are PIL photos of varied sizes, put through the
real sets' decoding (rdml.data.photos), with an official test set as theirs. The tiny text corpora are
sentences of class words and common words, put through the real corpora's tokenising and encoding
(rdml.data.text) with a GloVe-format table of their words, with an official test set as theirs. The tiny
Market-1501 is a folder in the archive's layout, read back by the real reader (rdml.data.market)."""

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
# tiny_market1501: training identities (the catalogue's classes) and others for query and gallery alone, as
# Market-1501's; each test identity is seen by three cameras, queried from two of them.
TINY_MARKET = {"test_ids": 8, "seed": 15, "train_per_camera": 3, "gallery_per_camera": 2, "multiquery_per_query": 2,
               "junk": 4, "distractors": 4}
MARKET_CROP = (128, 64)  # (H, W) of a crop, as the archive's detected boxes
MARKET_PALETTE = 6  # colours a person's pattern is drawn from
COMMON_WORDS = ("the", "a", "of", "and", "to", "in", "is", "was", "it", "that", "for", "on", "with", "as", "said",
                "new", "U.S.", "don't", "report", "people")


def load(name: str, data_dir: str | Path) -> RawData:
    if name == "synthetic":
        return _synthetic()
    if name in TINY_PHOTOS:
        return _tiny_photos(*TINY_PHOTOS[name], DATASETS[name].spec.num_classes)
    if name in TINY_TEXT:
        return _tiny_text(*TINY_TEXT[name])
    if name == "tiny_market1501":
        return _tiny_market(DATASETS[name].spec.num_classes, **TINY_MARKET)
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


def _tiny_market(train_ids: int, test_ids: int, seed: int, train_per_camera: int, gallery_per_camera: int,
                 multiquery_per_query: int, junk: int, distractors: int) -> RawData:
    """A Market-1501 folder written as JPEGs and read back by rdml.data.market (names, relabelling, decoding,
    the 160 × 64 resize, the count check). A person is a colour pattern (4 bands, head to feet, × 2 halves, from
    a small palette), tinted by the camera, lit brighter or darker, shifted up or down a few pixels, and noisy.
    Training identities are seen by two cameras; the test identities, none of them trained on, by three, with a
    query in each of the first two, gallery images in all three (matches in the query's own camera and in
    others) and gt_bbox images per query (identity, camera); the gallery also holds junk (-1) and distractor
    (0000) images of random patterns. Mean colours of 8 × 4 blocks retrieve the test identities at mAP 0.89, a
    gallery in shuffled order at 0.13 (tests/test_market_data.py): learnable, not trivially separable."""
    import tempfile

    from PIL import Image

    from rdml.data import market

    rng = np.random.default_rng(seed)
    identities = rng.choice(np.arange(1, 1502), size=train_ids + test_ids, replace=False)
    trained, tested = sorted(identities[:train_ids].tolist()), sorted(identities[train_ids:].tolist())
    palette = rng.integers(0, 256, size=(MARKET_PALETTE, 3))  # people share colours, as clothes do
    patterns = {identity: palette[rng.integers(0, MARKET_PALETTE, size=(4, 2))] for identity in trained + tested}
    tints = rng.normal(0, 25, size=(7, 3))  # per camera, 1..6
    frames = iter(range(1, 1_000_000))
    images: dict[str, list[tuple[str, np.ndarray]]] = {split: [] for split in market.FOLDERS}

    def add(split: str, identity: int, camera: int, pattern: np.ndarray | None = None) -> None:
        pattern = patterns[identity] if pattern is None else pattern
        base = np.repeat(np.repeat(pattern, MARKET_CROP[0] // 4, axis=0), MARKET_CROP[1] // 2, axis=1)
        base = np.roll(base, int(rng.integers(-10, 11)), axis=0) * rng.uniform(0.7, 1.2) + tints[camera]
        pixels = np.clip(base + rng.normal(0, 50, size=base.shape), 0, 255).astype(np.uint8)
        person = "-1" if identity == market.JUNK else f"{identity:04d}"
        box = 0 if split in ("query", "multiquery") else int(rng.integers(1, 8))
        name = f"{person}_c{camera}s{rng.integers(1, 7)}_{next(frames):06d}_{box:02d}.jpg"
        images[split].append((name, pixels))

    for identity in trained:
        for camera in rng.choice(np.arange(1, 7), size=2, replace=False).tolist():
            for _ in range(train_per_camera):
                add("train", identity, camera)
    for identity in tested:
        cameras = rng.choice(np.arange(1, 7), size=3, replace=False).tolist()
        for camera in cameras[:2]:
            add("query", identity, camera)
            for _ in range(multiquery_per_query):
                add("multiquery", identity, camera)
        for camera in cameras:
            for _ in range(gallery_per_camera):
                add("gallery", identity, camera)
    for identity, n in ((market.JUNK, junk), (market.DISTRACTOR, distractors)):
        for _ in range(n):
            add("gallery", identity, int(rng.integers(1, 7)), palette[rng.integers(0, MARKET_PALETTE, size=(4, 2))])
    expected = {"train images": train_ids * 2 * train_per_camera, "train identities": train_ids,
                "query images": test_ids * 2, "query identities": test_ids,
                "gallery images": test_ids * 3 * gallery_per_camera + junk + distractors,
                "gallery junk (-1)": junk, "gallery distractors (0000)": distractors}
    with tempfile.TemporaryDirectory(prefix="tiny-market1501-") as root:
        for split, folder in market.FOLDERS.items():
            (Path(root) / folder).mkdir()
            (Path(root) / folder / "Thumbs.db").write_bytes(b"")  # as in the archive; the reader skips it
            for name, pixels in images[split]:
                Image.fromarray(pixels).save(Path(root) / folder / name, format="JPEG", quality=90)
        tensors = market.read(Path(root), expected)
    files = {"generated": f"tiny_market1501(train_ids={train_ids}, test_ids={test_ids}, seed={seed}, "
                          f"crop={MARKET_CROP}, stored={(market.HEIGHT, market.WIDTH)}, resize={market.RESIZE})"}
    return market.raw_data(tensors, files)
