"""AG News, Yahoo! Answers and Yelp Review Full, the RDML paper's text classification (Table 3): download
with checksum, then tokenise and encode once into tensors, with GloVe reduced to the vocabulary.

The files, addresses and md5 sums are torchtext's (torchtext/datasets/ag_news.py L11-19, yahooanswers.py
L11-20, yelpreviewfull.py L11-20: Zhang et al. 2015's CSVs), fetched with rdml.data.vision's download,
checksum and extract code into `<data_dir>/<name>/` (Google Drive through torchvision's
download_file_from_google_drive, which needs gdown). A row is read as torchtext reads it: csv.reader on the
UTF-8 file, label = class index − 1, text = the text columns joined with a space (`" ".join(t[1:])`,
ag_news.py L33-34). The released RDML code instead read files its conversion script wrote
(parklize/rdml text-clf/data/data_utils.py L17-22: the columns joined by their raw commas, every `"` removed);
rdml takes torchtext's reading.

The released code (parklize/rdml text-clf/, after AnubhavGupta3377/Text-Classification-Models-Pytorch, on
torchtext 0.3.1) feeds two models, and `prepare` encodes both inputs once into `<data_dir>/<name>/rdml-tensors.pt`:
- fastText: spaCy's English tokens (Model_fastText/utils.py L64-65), lower-cased, as ids into a vocabulary
  of the training rows (<unk> 0, <pad> 1, then by frequency, ties alphabetically: torchtext/vocab.py L70-72),
  stored as `Ragged` int64 ids; and glove.840B.300d reduced to that vocabulary, (V, 300) float32, zero rows
  for the specials and tokens GloVe lacks (vocab.py L155-159, L279-286);
- CharCNN: the text's last 300 characters, reversed, lower-cased, as uint8 indices into the 71 entries built
  from the paper's alphabet, <pad> after a short text (Model_CharCNN/utils.py L69, L72, L98; torchtext 0.3.1
  data/field.py L231-235).
Training then selects rows with tensor operations alone (rdml.data.sequences).
"""

from __future__ import annotations

import csv
import functools
import importlib.metadata
import io
import os
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rdml.data import vision
from rdml.data.base import RawData, restrict_embeddings
from rdml.data.sequences import Ragged, TextRows
from rdml.data.vision import TENSOR_CACHE, DataError, Source
from rdml.io import atomic_torch_save, sha256_file

__all__ = ["CLASSES", "ALPHABET", "CHARS", "GLOVE_SHA256", "sources", "fetch", "fetch_glove", "load", "prepare",
           "read_csv", "encode_corpus", "encode_words", "encode_chars", "char_vocab", "read_glove", "glove_vectors",
           "restrict_embeddings"]

CLASSES = {"ag_news": 4, "yahoo_answers": 10, "yelp_full": 5}
SPECIALS = ("<unk>", "<pad>")  # ids 0 and 1 of both vocabularies (torchtext/data/field.py L269-273)
UNK, PAD = 0, 1
# text-clf/Model_CharCNN/utils.py L98, as Python reads that literal: '-' twice, a backslash ("\|" keeps it)
# and a real newline; 69 distinct characters. No space: a space is <unk>.
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{}\n"
CHARS = 300  # fix_length: text-clf/Model_CharCNN/config.py L10 (seq_len; Zhang et al. used 1014)
TOKENIZE_BATCH = 1000  # texts per spaCy tokenizer.pipe batch
# spaCy 3.8 memoises the tokens of at most 10,000 distinct whitespace-separated chunks (Tokenizer.max_cache_size)
# and runs its affix rules again on every other one: 6x slower on a corpus of 64,000 distinct words. The memo
# changes no token; an entry takes some 100 bytes, so a corpus's few million distinct chunks a few hundred MB.
TOKENIZER_CACHE = 1 << 24
CHAR_BLOCK = 16384  # rows encoded at once: a block's (rows, CHARS) int64 gather indices stay ~40 MB

GLOVE_URL = "https://nlp.stanford.edu/data/glove.840B.300d.zip"  # torchtext 0.3.1 vocab.py L393, over https
GLOVE_ZIP, GLOVE_TXT, GLOVE_DIM = "glove.840B.300d.zip", "glove.840B.300d.txt", 300
# Stanford publishes no checksum. None: `fetch_glove` records the sha256 of the zip it finds in every data
# fingerprint (so a run names the GloVe it used, and a changed file invalidates the tensor cache). Pin the
# hex digest here once a download is trusted, and every fetch checks it.
GLOVE_SHA256: str | None = None

_DRIVE = "https://drive.google.com/uc?export=download&id="
_CSV_FOLDER = {"ag_news": None, "yahoo_answers": "yahoo_answers_csv", "yelp_full": "yelp_review_full_csv"}


# torchtext's addresses and md5 sums (torchtext/datasets/ag_news.py L11-19, yahooanswers.py L11-13,
# yelpreviewfull.py L11-13); the two archives are on Google Drive.
_SOURCES: dict[str, Source] = {
    "ag_news": Source(("https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/",),
                      (("train.csv", "b1a00f826fdfbd249f79597b59e1dc12"), ("test.csv", "d52ea96a97a2d943681189a97654912d"))),
    "yahoo_answers": Source((_DRIVE + "0Bz8a_Dbh9Qhbd2JNdDBsQUdocVU",),
                            (("yahoo_answers_csv.tar.gz", "f3f9899b997a42beb24157e62e3eea8d"),), "yahoo_answers_csv"),
    "yelp_full": Source((_DRIVE + "0Bz8a_Dbh9QhbZlU4dXhHTFhZQU0",),
                        (("yelp_review_full_csv.tar.gz", "f7ddfafed1033f68ec72b9267863af6c"),), "yelp_review_full_csv"),
}


def sources() -> dict[str, Source]:
    """Where each corpus comes from (the dict itself: tests point it at a local server)."""
    return _SOURCES


def fetch(name: str, data_dir: str | Path, download: bool = True) -> Path:
    """Make sure `<data_dir>/<name>` holds the verified (and extracted) files of `name`; returns that folder.
    A Google Drive archive is downloaded here first; rdml.data.vision.fetch verifies and extracts it."""
    source = _SOURCES[name]
    if download and source.urls[0].startswith(_DRIVE):
        (filename, md5), = source.files
        _from_drive(source.urls[0], Path(data_dir) / name / filename, md5)
    return vision.fetch(name, data_dir, download, source=source)


def _from_drive(url: str, path: Path, md5: str) -> None:
    if path.is_file():
        return
    from torchvision.datasets.utils import download_file_from_google_drive

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_file_from_google_drive(url.removeprefix(_DRIVE), str(path.parent), path.name)
    except Exception as exc:  # gdown missing, network errors, Drive's quota pages: many kinds
        path.unlink(missing_ok=True)
        raise DataError(f"{path} is missing and could not be downloaded from {url} ({exc}); "
                        f"place the file there by hand (expected md5 {md5})") from None


def fetch_glove(data_dir: str | Path, download: bool = True, dataset: str = "ag_news") -> tuple[Path, str]:
    """`<data_dir>/glove/glove.840B.300d.zip` and its sha256, downloaded if missing (to a partial name of this
    process, renamed once complete and readable as a zip: prepare steps of the three corpora may run at once)
    and checked against GLOVE_SHA256 where that is pinned."""
    path = Path(data_dir) / "glove" / GLOVE_ZIP
    expected = f"expected sha256 {GLOVE_SHA256}" if GLOVE_SHA256 else "no published checksum: its sha256 is recorded"
    if not path.is_file() and download:
        from torchvision.datasets.utils import download_url

        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        partial.unlink(missing_ok=True)  # download_url skips a file that exists when given no md5
        try:
            download_url(GLOVE_URL, str(path.parent), partial.name)
            with zipfile.ZipFile(partial) as archive:
                archive.getinfo(GLOVE_TXT)
        except Exception as exc:  # network errors, a truncated or wrong file
            partial.unlink(missing_ok=True)
            raise DataError(f"{path} is missing and could not be downloaded from {GLOVE_URL} ({exc}); "
                            f"place the file there by hand ({expected})") from None
        os.replace(partial, path)
    if not path.is_file():
        raise DataError(f"{path} is missing ({expected}); run `rdml pipeline prepare {dataset}` to download it")
    found = sha256_file(path)
    if GLOVE_SHA256 and found != GLOVE_SHA256:
        raise DataError(f"{path} is corrupt: sha256 {found}, expected {GLOVE_SHA256}; delete it and download it again")
    return path, found


def load(name: str, data_dir: str | Path) -> RawData:
    """Official train and test rows as TextRows, int64 labels, file hashes (the corpus's md5 sums, GloVe's
    sha256) and the (V, 300) float32 GloVe table as `embeddings`. The files are verified first; the tensors
    come from the cache when it was made from these files with this encoding."""
    folder = fetch(name, data_dir, download=False)
    glove, glove_sha256 = fetch_glove(data_dir, download=False, dataset=name)
    files = _file_hashes(name, glove_sha256)
    cache = folder / TENSOR_CACHE
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved.get("files") == files and saved.get("layout") == _layout():
            return _raw(saved, files)
    return _raw(_decode(name, folder, glove), files)


def prepare(name: str, data_dir: str | Path) -> Path:
    """Fetch and verify the corpus and GloVe, and encode them once into the tensor file `load` reads from then on."""
    folder = fetch(name, data_dir)
    glove, glove_sha256 = fetch_glove(data_dir, dataset=name)
    tensors = _decode(name, folder, glove)
    atomic_torch_save(folder / TENSOR_CACHE, {"files": _file_hashes(name, glove_sha256), "layout": _layout(), **tensors})
    return folder / TENSOR_CACHE


def _file_hashes(name: str, glove_sha256: str) -> dict[str, str]:
    return {**{f"{name}/{filename}": md5 for filename, md5 in _SOURCES[name].files}, f"glove/{GLOVE_ZIP}": glove_sha256}


def _layout() -> dict:
    """What the cached tensors depend on besides the files: a cache of another encoding is not used."""
    return {"tokenizer": f"spacy {importlib.metadata.version('spacy')} blank en", "lower": True, "join": " ",
            "alphabet": ALPHABET, "chars": CHARS, "glove": GLOVE_TXT}


def _raw(tensors: dict, files: dict) -> RawData:
    def rows(prefix: str) -> TextRows:
        return TextRows(Ragged(tensors[f"{prefix}_values"], tensors[f"{prefix}_offsets"]), tensors[f"{prefix}_chars"])

    return RawData(rows("x"), tensors["y"], files, rows("x_test"), tensors["y_test"], embeddings=tensors["embeddings"])


def _decode(name: str, folder: Path, glove: Path) -> dict:
    csvs = folder / _CSV_FOLDER[name] if _CSV_FOLDER[name] else folder
    texts, y = read_csv(csvs / "train.csv", CLASSES[name])
    texts_test, y_test = read_csv(csvs / "test.csv", CLASSES[name])
    train, test, embeddings, vocab = encode_corpus(texts, texts_test, functools.partial(read_glove, glove))
    return {"x_values": train.words.values, "x_offsets": train.words.offsets, "x_chars": train.chars, "y": y,
            "x_test_values": test.words.values, "x_test_offsets": test.words.offsets, "x_test_chars": test.chars,
            "y_test": y_test, "embeddings": embeddings, "vocab": vocab}


def read_csv(path: Path, classes: int) -> tuple[list[str], Tensor]:
    """Texts and 0-based int64 labels of a Zhang et al. CSV, as torchtext reads it: csv.reader on the file
    opened as UTF-8 text (torchdata's FileOpener and parse_csv), label int(t[0]), text " ".join(t[1:])
    (torchtext/datasets/ag_news.py L33-34), less trailing newlines (torchtext 0.3.1 data/example.py L46)."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            try:
                label = int(row[0])
            except (ValueError, IndexError):
                label = None
            if label is None or not 1 <= label <= classes:
                raise DataError(f"{path} row {number} does not start with a class index 1..{classes}: {row[:1]}; "
                                f"delete it to download and extract it again")
            labels.append(label - 1)
            texts.append(" ".join(row[1:]).rstrip("\n"))
    return texts, torch.tensor(labels, dtype=torch.int64)


def encode_corpus(texts: Sequence[str], texts_test: Sequence[str], glove: Callable[[list[str]], Tensor]
                  ) -> tuple[TextRows, TextRows, Tensor, list[str]]:
    """Training and test rows as TextRows (vocabulary from the training rows alone), `glove(vocabulary)`,
    the embedding table, and the vocabulary."""
    words, words_test, vocab = encode_words(texts, texts_test)
    return TextRows(words, encode_chars(texts)), TextRows(words_test, encode_chars(texts_test)), glove(vocab), vocab


def encode_words(texts: Sequence[str], texts_test: Sequence[str]) -> tuple[Ragged, Ragged, list[str]]:
    """Token ids of the training and test texts and the vocabulary (its strings, by id) built from the
    training texts: spaCy's English tokenizer without the single-space tokens (text-clf/Model_fastText/utils.py
    L64-65), each token lower-cased (torchtext 0.3.1 data/field.py L180-181), <unk> 0 and <pad> 1, then the
    tokens by descending count, ties in code-point order (vocab.py L70-72); test tokens missing from it: <unk>.

    Tokens are handled as spaCy's 64-bit hashes of their lower-cased strings (its LOWER attribute is
    `str.lower()` of the token), so no Python runs per token."""
    import spacy

    tokenizer = spacy.blank("en").tokenizer
    tokenizer.max_cache_size = TOKENIZER_CACHE
    hashes, offsets = _token_hashes(tokenizer, texts)
    hashes_test, offsets_test = _token_hashes(tokenizer, texts_test)
    unique, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    strings = [tokenizer.vocab.strings[int(h)] for h in unique.tolist()]
    ids = np.empty(len(unique), dtype=np.int64)
    # a token that is a special's own string takes its id, as torchtext drops it from the counts (vocab.py L63-66)
    special = np.array([s in SPECIALS for s in strings], dtype=bool)
    ids[special] = [SPECIALS.index(s) for s, is_special in zip(strings, special) if is_special]
    counts = counts.tolist()
    ranked = sorted(np.flatnonzero(~special).tolist(), key=lambda i: (-counts[i], strings[i]))
    ids[ranked] = np.arange(len(SPECIALS), len(SPECIALS) + len(ranked))
    vocab = [*SPECIALS, *(strings[i] for i in ranked)]
    where = np.minimum(np.searchsorted(unique, hashes_test), max(len(unique) - 1, 0))
    known = unique[where] == hashes_test if len(unique) else np.zeros(len(hashes_test), dtype=bool)
    ids_test = np.where(known, ids[where] if len(unique) else 0, UNK)
    return (Ragged(torch.from_numpy(ids[inverse.reshape(-1)]), torch.from_numpy(offsets)),
            Ragged(torch.from_numpy(ids_test.astype(np.int64)), torch.from_numpy(offsets_test)), vocab)


def _token_hashes(tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All tokens' LOWER hashes (uint64) in order, and each text's offsets into them."""
    from spacy.attrs import LOWER, ORTH

    space = tokenizer.vocab.strings.add(" ")
    rows, lengths = [], np.zeros(len(texts), dtype=np.int64)
    for i, doc in enumerate(tokenizer.pipe(texts, batch_size=TOKENIZE_BATCH)):
        both = doc.to_array([ORTH, LOWER]).reshape(-1, 2)
        rows.append(both[both[:, 0] != space, 1])
        lengths[i] = len(rows[-1])
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return (np.concatenate(rows) if rows else np.zeros(0, dtype=np.uint64)).astype(np.uint64), offsets


def char_vocab() -> list[str]:
    """The 71 entries torchtext 0.3.1 builds from ALPHABET (Field.build_vocab on the string, field.py L253-273):
    <unk>, <pad>, then its characters by count ('-' twice), ties in code-point order (vocab.py L70-72)."""
    counts = Counter(ALPHABET)
    return [*SPECIALS, *sorted(counts, key=lambda c: (-counts[c], c))]


@functools.lru_cache(maxsize=1)
def _char_table() -> np.ndarray:
    """uint8 index of every code point: that of its lower case where that is one character of the
    vocabulary (torchtext lower-cases each character token, field.py L180-181), else <unk>."""
    stoi = {c: i for i, c in enumerate(char_vocab())}
    table = np.full(0x110000, UNK, dtype=np.uint8)
    for point in range(0x110000):
        lower = chr(point).lower()
        if lower in stoi and len(lower) == 1:
            table[point] = stoi[lower]
    return table


def encode_chars(texts: Sequence[str]) -> Tensor:
    """uint8 (N, CHARS): each text reversed (`list(sent[::-1])`, Model_CharCNN/utils.py L69), cut to its first
    CHARS characters (the text's last ones), then <pad> (torchtext 0.3.1 Field.pad, field.py L231-235)."""
    table = _char_table()
    out = np.full((len(texts), CHARS), PAD, dtype=np.uint8)
    position = np.arange(CHARS)
    for start in range(0, len(texts), CHAR_BLOCK):
        block = texts[start : start + CHAR_BLOCK]
        codes = table[np.frombuffer("".join(block).encode("utf-32-le"), dtype=np.uint32)]
        lengths = np.fromiter(map(len, block), dtype=np.int64, count=len(block))
        ends = np.cumsum(lengths)
        kept = position < lengths[:, None]  # (rows, CHARS)
        out[start : start + len(block)][kept] = codes[(ends[:, None] - 1 - position)[kept]]
    return torch.from_numpy(out)


def glove_vectors(lines: Iterable[bytes], vocab: Sequence[str], source: str = "GloVe") -> Tensor:
    """float32 (len(vocab), 300): each token's GloVe vector, found by its exact string less surrounding
    whitespace (torchtext 0.3.1 vocab.py L155-159 looks up `token.strip()`); zero for tokens GloVe lacks and
    for <unk> and <pad> (unk_init zero_, vocab.py L279-286). `lines` are the text file's lines as bytes,
    streamed once: the vector is a line's last 300 fields split at single spaces and the token everything
    before them (a few tokens hold U+00A0 or spaces); a token listed twice takes its last vector, as
    torchtext's `stoi` keeps the last index (vocab.py L378); a token that is not UTF-8 is skipped (L363-367).
    Numbers are parsed as float64 and rounded to float32, as torchtext's `float(x)` into a float tensor."""
    wanted: dict[str, list[int]] = {}
    for i, token in enumerate(vocab):
        if i >= len(SPECIALS):
            wanted.setdefault(token.strip(), []).append(i)
    table = np.zeros((len(vocab), GLOVE_DIM), dtype=np.float32)
    for number, line in enumerate(lines, 1):
        line = line.rstrip()  # as torchtext (vocab.py L347): the newline and any trailing spaces
        spaces = line.count(b" ")
        if spaces < GLOVE_DIM:
            if not line:
                continue
            raise DataError(f"{source} line {number} has {spaces + 1} fields, expected a token and {GLOVE_DIM} "
                            f"numbers; delete the file and download it again")
        cut = line.index(b" ") if spaces == GLOVE_DIM else len(line.rsplit(b" ", GLOVE_DIM)[0])
        try:
            ids = wanted.get(line[:cut].decode("utf-8"))
        except UnicodeDecodeError:
            continue
        if ids:
            vector = np.array(line[cut + 1 :].split(b" "), dtype=np.float64)
            table[ids] = vector.astype(np.float32)
    return torch.from_numpy(table)


def read_glove(path: Path, vocab: Sequence[str]) -> Tensor:
    """glove_vectors of the text file inside the zip at `path`, streamed: it is never unpacked or held whole."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(GLOVE_TXT) as member:
            return glove_vectors(_lines(member), vocab, source=f"{path}:{GLOVE_TXT}")
    except (zipfile.BadZipFile, KeyError, zlib.error, EOFError) as exc:  # KeyError: no such member; the others: damage
        raise DataError(f"{path} cannot be read as a zip holding {GLOVE_TXT} ({type(exc).__name__}: {exc}); "
                        f"delete it and download it again") from None


def _lines(stream: io.RawIOBase | io.BufferedIOBase, chunk: int = 1 << 24) -> Iterator[bytes]:
    """The lines of a binary stream (without b"\\n"), read in large chunks: one pass over a 5.6 GB file."""
    tail = b""
    while block := stream.read(chunk):
        lines = (tail + block).split(b"\n")
        tail = lines.pop()
        yield from lines
    if tail:
        yield tail
