"""AG News, Yahoo! Answers and Yelp through the real download, checksum, extract, tokenise and encode code,
on tiny files in the real formats (quoted CSV with commas, doubled quotes and escaped \\n; tar.gz archives
laid out as the real ones; GloVe's text format in its zip); words, characters and GloVe rows against
hand-worked examples and a per-token reference written after torchtext 0.3.1; and the tiny corpora."""

from collections import Counter
import hashlib
import io
import tarfile
import zipfile

import numpy as np
import pytest
import torch
import torchvision.datasets.utils

from conftest import md5
from rdml.data import generated, text
from rdml.data.base import load_dataset
from rdml.data.sequences import Ragged
from rdml.data.vision import DataError, Source


def zhang_csv(rows):
    """Bytes of a Zhang et al. CSV: every field quoted, quotes doubled, newlines written as the two characters \\n."""
    return "".join(",".join('"' + str(f).replace('"', '""') + '"' for f in row) + "\n" for row in rows).encode()


# Rows as the real files have them: commas and quotes inside fields, escaped newlines, entities, an empty field.
AG_TRAIN = [
    (3, "Wall St. Bears Claw Back Into the Black (Reuters)",
     "Reuters - Short-sellers, Wall Street's dwindling\\band of ultra-cynics, are seeing green again."),
    (4, "Oil and Economy Cloud Stocks' Outlook",
     'Soaring crude prices plus worries about the economy, "quoted" here \\n and there.'),
    (1, "U.S. Says It Won't Talk", "The U.S. won't  talk; see http://www.example.com/a?b=1 (it's FINAL!)"),
    (2, "Google IPO", "Google #39;s IPO: 3.5% of $10 shares, analysts said."),
]
AG_TEST = [(2, "Google's shares", "Zaphod said \"Don't panic\", unseen words."), (4, "", "x" * 320 + " TAIL")]
YAHOO_TRAIN = [
    (10, "why are Peanut plants illegal??", "",
     "They are not.The large seeded Virginia Group peanuts are grown.\\nThe U.S."),
    (5, "what is Gmail", "i heard of email, but what is Gmail?",
     "Get invites from http://www.bytetest.com/ ( it's automated )\\n\\n1. storage"),
    (1, "have the usa leaders started a \"genocide\"?", "no? \\n\\nthe millions", ""),
]
YAHOO_TEST = [(3, "Swedish Bitters?", "Has anyone tried this?", "I have tried it and it is HORRIBLE!"),
              (10, "peanuts", "", "")]
YELP_TRAIN = [(5, "dr. goldberg offers everything i look for in a general practitioner.  he's nice and easy to talk to"),
              (1, "Unfortunately, the frustration of being Dr. Goldberg's patient is a repeat of the experience "
                  "\"I've had\""),
              (3, "Been going to Dr. Goldberg for over 10 years.\\nI think I was one of his 1st patients")]
YELP_TEST = [(2, "All the food is great here. But the best thing they have is their wings.\\n\\n"
                 "Their wings are simply fantastic!!")]


def vector(seed):
    return np.random.default_rng(seed).normal(0, 1, text.GLOVE_DIM).astype(np.float32)


def glove_line(token, values):
    return token.encode() + b" " + " ".join(repr(float(v)) for v in values).encode()


def glove_zip(path, tokens):
    """glove.840B.300d.zip: one member glove.840B.300d.txt, a token then 300 numbers a line."""
    lines = [glove_line(t, vector(i)) for i, t in enumerate(tokens)]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(text.GLOVE_TXT, b"\n".join(lines) + b"\n")
    return {t: vector(i) for i, t in enumerate(tokens)}


GLOVE_TOKENS = ["the", "The", ",", ".", "u.s.", "google", "wall", "n't", "peanuts", "<unk>", "\xa0", "."]


def serve_glove(tmp_path, monkeypatch, http):
    vectors = glove_zip(tmp_path / "server" / text.GLOVE_ZIP, GLOVE_TOKENS)
    monkeypatch.setattr(text, "GLOVE_URL", http + text.GLOVE_ZIP)
    return vectors


def serve_ag_news(tmp_path, monkeypatch, http):
    server = tmp_path / "server"
    (server / "train.csv").write_bytes(zhang_csv(AG_TRAIN))
    (server / "test.csv").write_bytes(zhang_csv(AG_TEST))
    source = Source((http,), (("train.csv", md5(server / "train.csv")), ("test.csv", md5(server / "test.csv"))))
    monkeypatch.setitem(text.sources(), "ag_news", source)
    return source


def serve_archive(name, tmp_path, monkeypatch, http):
    """yahoo_answers_csv.tar.gz or yelp_review_full_csv.tar.gz laid out as the real ones, behind a Google Drive
    id: torchvision's download_file_from_google_drive is replaced by a download from the local server."""
    folder, (train, test) = {"yahoo_answers": ("yahoo_answers_csv", (YAHOO_TRAIN, YAHOO_TEST)),
                             "yelp_full": ("yelp_review_full_csv", (YELP_TRAIN, YELP_TEST))}[name]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        members = {"train.csv": zhang_csv(train), "test.csv": zhang_csv(test), "readme.txt": b"Zhang et al.\n"}
        if name == "yahoo_answers":
            members["classes.txt"] = b"Society & Culture\nScience & Mathematics\n"
        for member, blob in members.items():
            info = tarfile.TarInfo(f"{folder}/{member}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    archive = tmp_path / "server" / f"{folder}.tar.gz"
    archive.write_bytes(buffer.getvalue())
    drive_id = f"drive-id-of-{name}"
    source = Source(("https://drive.google.com/uc?export=download&id=" + drive_id,), ((archive.name, md5(archive)),), folder)
    monkeypatch.setitem(text.sources(), name, source)
    asked = []

    def from_drive(file_id, root, filename=None, md5=None):
        asked.append(file_id)
        torchvision.datasets.utils.download_url(http + {drive_id: archive.name}[file_id], root, filename)

    monkeypatch.setattr(torchvision.datasets.utils, "download_file_from_google_drive", from_drive)
    return source, asked


def reference(train_texts, test_texts, glove):
    """The released pipeline one token and one character at a time, after torchtext 0.3.1: spaCy tokens
    without " ", lower-cased, Counter, sorted by token then by count descending; characters reversed,
    lower-cased, cut to 300, padded; GloVe by token.strip()."""
    import spacy

    nlp = spacy.blank("en")
    tokens = [[t.text.lower() for t in nlp.tokenizer(s) if t.text != " "] for s in train_texts]
    counts = Counter(t for row in tokens for t in row)
    ordered = sorted(counts.items(), key=lambda kv: kv[0])
    ordered.sort(key=lambda kv: kv[1], reverse=True)
    itos = ["<unk>", "<pad>"] + [t for t, _ in ordered]
    stoi = {t: i for i, t in enumerate(itos)}
    test_tokens = [[t.text.lower() for t in nlp.tokenizer(s) if t.text != " "] for s in test_texts]
    chars = {c: i for i, c in enumerate(text.char_vocab())}

    def quantised(s):
        row = [c.lower() for c in s[::-1]][:300]
        return [chars.get(c, 0) for c in row] + [1] * (300 - len(row))

    table = torch.stack([torch.from_numpy(glove[t.strip()]) if t.strip() in glove and i > 1 else torch.zeros(300)
                         for i, t in enumerate(itos)])
    return ([[stoi[t] for t in row] for row in tokens], [[stoi.get(t, 0) for t in row] for row in test_tokens], itos,
            [quantised(s) for s in train_texts], [quantised(s) for s in test_texts], table)


def rows_of(ragged):
    return [ragged.values[a:b].tolist() for a, b in zip(ragged.offsets[:-1].tolist(), ragged.offsets[1:].tolist())]


def check_against_reference(raw, train, test):
    texts = [" ".join(map(str, row[1:])) for row in train]
    texts_test = [" ".join(map(str, row[1:])) for row in test]
    glove = {t: vector(i) for i, t in enumerate(GLOVE_TOKENS)}  # the second "." overwrites the first
    words, words_test, vocab, chars, chars_test, table = reference(texts, texts_test, glove)
    assert raw.y.tolist() == [row[0] - 1 for row in train] and raw.y_test.tolist() == [row[0] - 1 for row in test]
    assert rows_of(raw.x.words) == words and rows_of(raw.x_test.words) == words_test
    assert raw.x.words.values.dtype == torch.int64 and raw.x.chars.dtype == torch.uint8
    assert raw.x.chars.tolist() == chars and raw.x_test.chars.tolist() == chars_test
    assert raw.embeddings.dtype == torch.float32 and torch.equal(raw.embeddings, table)
    return vocab


def test_ag_news_download_verify_prepare_and_load_equal_the_reference(tmp_path, monkeypatch, http):
    source = serve_ag_news(tmp_path, monkeypatch, http)
    serve_glove(tmp_path, monkeypatch, http)
    data_dir = tmp_path / "data"
    text.prepare("ag_news", data_dir)
    for file, _ in source.files:
        assert (data_dir / "ag_news" / file).read_bytes() == (tmp_path / "server" / file).read_bytes()
    glove = data_dir / "glove" / text.GLOVE_ZIP
    assert glove.read_bytes() == (tmp_path / "server" / text.GLOVE_ZIP).read_bytes()
    raw = text.load("ag_news", data_dir)
    sha256 = hashlib.sha256(glove.read_bytes()).hexdigest()
    assert raw.files == {"ag_news/train.csv": source.files[0][1], "ag_news/test.csv": source.files[1][1],
                         f"glove/{text.GLOVE_ZIP}": sha256}
    vocab = check_against_reference(raw, AG_TRAIN, AG_TEST)
    assert raw.embeddings.shape == (len(vocab), 300)
    # title and description joined with a space, as torchtext joins the columns: "(Reuters) Reuters - Short-sellers,"
    first = [vocab[i] for i in rows_of(raw.x.words)[0]]
    assert first[8:17] == ["(", "reuters", ")", "reuters", "-", "short", "-", "sellers", ","]
    assert "the" in vocab and "The" not in vocab and "u.s." in vocab and "dwindling\\band" in vocab
    assert raw.x_test.words.values.eq(text.UNK).sum() >= 4  # zaphod, panic, unseen, words: only the training rows count
    # found in GloVe by the exact lower-cased string: "the" (never "The"); "google" though only "Google" occurs
    assert torch.equal(raw.embeddings[vocab.index("the")], torch.from_numpy(vector(0)))
    assert torch.equal(raw.embeddings[vocab.index("google")], torch.from_numpy(vector(5)))
    assert torch.equal(raw.embeddings[vocab.index(".")], torch.from_numpy(vector(11)))  # listed twice: the last
    assert raw.embeddings[text.UNK].eq(0).all() and raw.embeddings[vocab.index("bears")].eq(0).all()

    data = load_dataset("ag_news", split_seed=0, test_fraction=0.25, data_dir=data_dir, normalize="none")
    assert data.fingerprint["files"] == raw.files and data.fingerprint["split"]["split"] == "official"
    assert torch.equal(data.x_train.chars, raw.x.chars) and torch.equal(data.embeddings, raw.embeddings)


@pytest.mark.parametrize("name", ["yahoo_answers", "yelp_full"])
def test_google_drive_archives_are_fetched_extracted_and_read(tmp_path, monkeypatch, http, name):
    source, asked = serve_archive(name, tmp_path, monkeypatch, http)
    serve_glove(tmp_path, monkeypatch, http)
    data_dir = tmp_path / "data"
    text.prepare(name, data_dir)
    assert asked == [source.urls[0].rsplit("id=", 1)[1]]
    assert (data_dir / name / source.extracted / "train.csv").is_file()
    raw = text.load(name, data_dir)
    train, test = (YAHOO_TRAIN, YAHOO_TEST) if name == "yahoo_answers" else (YELP_TRAIN, YELP_TEST)
    check_against_reference(raw, train, test)
    if name == "yahoo_answers":
        assert raw.y.tolist() == [9, 4, 0]  # class 10 is label 9
        # empty content and answer: "peanuts" and two spaces, the texts' last characters, so first when reversed
        last = raw.x_test.chars[1].tolist()
        assert last[:10] == [0, 0] + [text.char_vocab().index(c) for c in "stunaep"] + [1]


@pytest.mark.tamper
def test_corrupt_and_missing_files_name_the_path_and_checksum(tmp_path, monkeypatch, http):
    source = serve_ag_news(tmp_path, monkeypatch, http)
    serve_glove(tmp_path, monkeypatch, http)
    data_dir = tmp_path / "data"
    text.fetch("ag_news", data_dir)
    local, expected = data_dir / "ag_news" / "train.csv", source.files[0][1]
    blob = bytearray(local.read_bytes())
    blob[5] ^= 1
    local.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=f"{local} is corrupt: md5 [0-9a-f]+, expected {expected}"):
        text.load("ag_news", data_dir)
    local.unlink()
    missing = f"{local} is missing \\(expected md5 {expected}\\); run `rdml pipeline prepare ag_news`"
    with pytest.raises(DataError, match=missing):
        text.load("ag_news", data_dir)

    text.fetch("ag_news", data_dir)
    glove = data_dir / "glove" / text.GLOVE_ZIP
    with pytest.raises(DataError, match=f"{glove} is missing .*; run `rdml pipeline prepare ag_news`"):
        text.load("ag_news", data_dir)
    text.fetch_glove(data_dir)
    monkeypatch.setattr(text, "GLOVE_SHA256", "0" * 64)  # a pinned hash is checked
    with pytest.raises(DataError, match=f"{glove} is corrupt: sha256 [0-9a-f]{{64}}, expected {'0' * 64}"):
        text.fetch_glove(data_dir)
    monkeypatch.setattr(text, "GLOVE_SHA256", hashlib.sha256(glove.read_bytes()).hexdigest())
    assert text.fetch_glove(data_dir) == (glove, text.GLOVE_SHA256)
    monkeypatch.setattr(text, "GLOVE_URL", http + "nowhere.zip")
    failed = f"could not be downloaded from {http}nowhere.zip .*expected sha256 {text.GLOVE_SHA256}"
    with pytest.raises(DataError, match=failed):
        text.fetch_glove(tmp_path / "other")
    assert not list((tmp_path / "other" / "glove").iterdir())  # no partial file left

    archive, _ = serve_archive("yahoo_answers", tmp_path, monkeypatch, http)
    (name, good), = archive.files

    def unreachable(*args, **kwargs):
        raise RuntimeError("To download files from GDrive, 'gdown' is required")

    monkeypatch.setattr(torchvision.datasets.utils, "download_file_from_google_drive", unreachable)
    with pytest.raises(DataError, match=f"{tmp_path / 'other/yahoo_answers' / name} is missing and could not be downloaded "
                                        f".*gdown.*expected md5 {good}"):
        text.fetch("yahoo_answers", tmp_path / "other")

    bad = tmp_path / "bad.csv"
    bad.write_bytes(zhang_csv([(1, "fine"), (11, "class 11 of 10")]))
    with pytest.raises(DataError, match=f"{bad} row 2 does not start with a class index 1..10"):
        text.read_csv(bad, 10)


def test_prepared_tensor_cache_is_loaded_and_ignored_when_stale(tmp_path, monkeypatch, http):
    serve_archive("yahoo_answers", tmp_path, monkeypatch, http)
    serve_glove(tmp_path, monkeypatch, http)
    data_dir = tmp_path / "data"
    cache = text.prepare("yahoo_answers", data_dir)
    decoded = text.load("yahoo_answers", data_dir)
    extracted = data_dir / "yahoo_answers/yahoo_answers_csv/train.csv"
    raw = extracted.read_bytes()
    extracted.unlink()  # decoding would now fail: what comes back is the cache
    cached = text.load("yahoo_answers", data_dir)
    for key in ("x", "x_test"):
        a, b = getattr(decoded, key), getattr(cached, key)
        assert torch.equal(a.words.values, b.words.values) and torch.equal(a.words.offsets, b.words.offsets)
        assert torch.equal(a.chars, b.chars)
    assert torch.equal(decoded.embeddings, cached.embeddings) and cached.files == decoded.files
    assert torch.load(cache, weights_only=True)["vocab"][:2] == ["<unk>", "<pad>"]
    saved = torch.load(cache, weights_only=True)
    torch.save({**saved, "files": {**saved["files"], f"glove/{text.GLOVE_ZIP}": "0" * 64}}, cache)
    with pytest.raises(FileNotFoundError, match="train.csv"):
        text.load("yahoo_answers", data_dir)  # made from another GloVe: not used
    torch.save(saved, cache)
    monkeypatch.setattr(text, "CHARS", 64)
    with pytest.raises(FileNotFoundError, match="train.csv"):
        text.load("yahoo_answers", data_dir)  # made with another encoding: not used
    extracted.write_bytes(raw)
    text.prepare("yahoo_answers", data_dir)
    extracted.unlink()
    assert text.load("yahoo_answers", data_dir).x.chars.shape == (3, 64)


def test_tokens_lower_cased_after_spacy_and_the_vocabulary_by_count_then_code_point():
    train = ["I don't think the U.S. can't win; see http://www.example.com/a?b=1 (it's CAPITALS!)",
             "The U.S. won't  say."]
    words, words_test, vocab = text.encode_words(train, ["Don't panic, Zaphod!", ""])
    # spaCy: contractions split ("do" "n't", "ca" "n't", "wo" "n't"), "U.S." and the URL kept whole, the extra
    # space of "won't  say" a " " token (dropped); then each token lower-cased
    assert vocab == ["<unk>", "<pad>", "n't", "the", "u.s.",  # 3, 2, 2 (ties: "the" < "u.s.")
                     "!", "'s", "(", ")", ".", ";", "ca", "capitals", "do", "http://www.example.com/a?b=1", "i", "it",
                     "say", "see", "think", "win", "wo"]  # once each, in code-point order
    ids = {t: i for i, t in enumerate(vocab)}
    first = ["i", "do", "n't", "think", "the", "u.s.", "ca", "n't", "win", ";", "see", "http://www.example.com/a?b=1",
             "(", "it", "'s", "capitals", "!", ")"]
    assert rows_of(words) == [[ids[t] for t in first], [ids[t] for t in ["the", "u.s.", "wo", "n't", "say", "."]]]
    assert rows_of(words_test) == [[ids["do"], ids["n't"], 0, 0, 0, ids["!"]], []]  # panic , zaphod: <unk>
    assert words.offsets.tolist() == [0, 18, 24] and words_test.offsets.tolist() == [0, 6, 6]


CHAR_VOCAB = ["<unk>", "<pad>", "-",  # '-' is in the alphabet twice
              "\n", "!", '"', "#", "$", "%", "&", "'", "(", ")", "*", "+", ",", ".", "/",
              "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ":", ";", "<", "=", ">", "?", "@",
              "[", "\\", "]", "^", "_", "`",
              "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t",
              "u", "v", "w", "x", "y", "z", "{", "|", "}", "~"]


def test_character_vocabulary_and_quantisation_by_hand():
    assert len(CHAR_VOCAB) == 71 and text.char_vocab() == CHAR_VOCAB
    assert len(text.ALPHABET) == 70 and len(set(text.ALPHABET)) == 69
    c = CHAR_VOCAB.index
    tail = "abcdefghij" + "x" * 284 + "Ta\nl\\é"  # 300 characters
    got = text.encode_chars(["Hi, Bob!", "QQ" + tail, "", "a-b \u212a\u0130"])
    assert got.dtype == torch.uint8 and got.shape == (4, 300)
    # reversed, lower-cased, the space <unk> (0), then <pad> (1) to 300
    assert got[0].tolist() == [c("!"), c("b"), c("o"), c("b"), 0, c(","), c("i"), c("h")] + [1] * 292
    # 302 characters: the reversed text cut to its first 300, so the first two of the original ("QQ") are gone;
    # é is <unk>, the newline and the backslash are in the alphabet
    assert got[1].tolist() == [0, c("\\"), c("l"), c("\n"), c("a"), c("t")] + [c("x")] * 284 + [c(ch) for ch in "jihgfedcba"]
    assert got[2].tolist() == [1] * 300
    # each character lower-cased on its own: the Kelvin sign becomes "k"; "İ" lower-cases to two characters: <unk>
    assert got[3].tolist()[:6] == [0, c("k"), 0, c("b"), c("-"), c("a")]


def test_glove_file_in_the_real_format_reduced_to_the_vocabulary(tmp_path):
    vocab = ["<unk>", "<pad>", "the", "a\xa0b", ". . .", "dup", "missing", "\xa0", "exp"]
    lines = [glove_line("The", vector(1)), glove_line("the", vector(2)), glove_line("a\xa0b", vector(3)),
             glove_line(". . .", vector(4)),  # a token holding spaces: the last 300 fields are its vector
             glove_line("dup", vector(5)), glove_line("dup", vector(6)),  # listed twice: the last one
             glove_line("<unk>", vector(7)), glove_line("<pad>", vector(8)),  # specials stay zero
             b"\xff\xfe " + b" ".join([b"1"] * 300),  # not UTF-8: skipped
             b"exp " + b" ".join([b"1e-05", b"-0.0", b"0.1"] * 100) + b" \r"]
    path = tmp_path / text.GLOVE_ZIP
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(text.GLOVE_TXT, b"\n".join(lines) + b"\n")
    table = text.read_glove(path, vocab)
    assert table.dtype == torch.float32 and table.shape == (9, 300)
    for row, seed in ((2, 2), (3, 3), (4, 4), (5, 6)):
        assert torch.equal(table[row], torch.from_numpy(vector(seed)))
    assert table[[0, 1, 6, 7]].eq(0).all()  # specials, a token GloVe lacks, a whitespace token (stripped: "")
    assert table[8, :3].tolist() == [np.float32(1e-05), 0.0, np.float32(0.1)]
    with pytest.raises(DataError, match="glove.txt line 2 has 300 fields, expected a token and 300 numbers"):
        text.glove_vectors([lines[0], b"short " + b" ".join([b"1"] * 299)], vocab, source="glove.txt")
    assert list(text._lines(io.BytesIO(b"\n".join(lines[:3]) + b"\n"), chunk=1000)) == lines[:3]  # across chunks

    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # inside the compressed text
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=f"{path} cannot be read as a zip holding {text.GLOVE_TXT} .*download it again"):
        text.read_glove(path, vocab)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("glove.6B.50d.txt", b"")
    with pytest.raises(DataError, match=f"{path} cannot be read as a zip holding {text.GLOVE_TXT} \\(KeyError"):
        text.read_glove(path, vocab)


def test_restrict_embeddings_zeroes_rows_no_training_row_holds():
    embeddings = torch.randn(7, 300)
    train = Ragged(torch.tensor([2, 3, 3, 6]), torch.tensor([0, 3, 4]))
    restricted = text.restrict_embeddings(embeddings, train)
    assert torch.equal(restricted[[2, 3, 6]], embeddings[[2, 3, 6]])
    assert restricted[[0, 1, 4, 5]].eq(0).all() and embeddings[4].ne(0).any()  # the input is left alone
    with pytest.raises(ValueError, match="word id 9 is outside the 7 rows"):
        text.restrict_embeddings(embeddings, Ragged(torch.tensor([9]), torch.tensor([0, 1])))


@pytest.mark.parametrize("name", sorted(generated.TINY_TEXT))
def test_tiny_text_corpora_are_encoded_as_the_real_ones_and_seeded(name):
    raw = generated.load(name, "unused")
    real, _ = generated.TINY_TEXT[name]
    classes = text.CLASSES[real]
    train, test = generated.TEXT_ROWS_PER_CLASS
    assert raw.y.tolist() == np.repeat(np.arange(classes), train).tolist()
    assert raw.y_test.tolist() == np.repeat(np.arange(classes), test).tolist()
    assert raw.x.chars.shape == (train * classes, 300) and raw.x.chars.dtype == torch.uint8
    assert len(raw.x) == train * classes and len(raw.x_test) == test * classes
    vocabulary = raw.embeddings.shape[0]
    assert raw.embeddings.shape[1] == 300 and raw.x.words.values.max() < vocabulary
    seen = torch.bincount(raw.x.words.values, minlength=vocabulary)
    assert seen[2:].gt(0).all()  # the vocabulary is the training rows'
    assert raw.x_test.words.values.eq(text.UNK).any()  # each test text holds an unseen word
    found = raw.embeddings.ne(0).any(1)
    assert not found[:2].any() and found.sum() > vocabulary // 2 and not found.all()
    again = generated.load(name, "unused")
    assert torch.equal(again.x.words.values, raw.x.words.values) and torch.equal(again.x_test.chars, raw.x_test.chars)
    assert torch.equal(again.embeddings, raw.embeddings) and again.files == raw.files
    data = load_dataset(name, split_seed=0, test_fraction=0.25, normalize="none")
    assert data.spec.kind == "text" and data.spec.input_shape == (300,) and data.num_classes == classes
    assert torch.equal(data.embeddings, raw.embeddings) and data.fingerprint["split"]["split"] == "official"
    # rows held out for validation: the table keeps only the rows of tokens the remaining training rows hold
    data = load_dataset(name, split_seed=0, test_fraction=0.25, normalize="none", val_fraction=0.5)
    assert len(data.x_train) == len(data.x_val) == train * classes // 2
    held = set(data.x_train.words.values.tolist())
    kept = data.embeddings.ne(0).any(1)
    assert kept.tolist() == [i in held and found[i].item() for i in range(vocabulary)]
    assert kept.any()
