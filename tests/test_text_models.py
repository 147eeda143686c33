"""fastText and CharCNN (RDML Table 3) against the released modules: outputs with the same weights,
parameter counts by hand, state-dict keys, the frozen embeddings and the padding difference."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import count, trace
from rdml.data.sequences import Ragged, TextRows
from rdml.keys import ConfigError
from rdml.models.text import SYMBOLS, CharCNN, FastText, charcnn, charcnn_logits, fasttext, fasttext_logits

# ---- the released modules ----------------------------------------------------------------------------
# Transcribed from parklize/rdml at cddd067: text-clf/Model_fastText/model.py l.8–31 (config.py l.4–6) and
# text-clf/Model_CharCNN/model.py l.8–77 (config.py l.4–11); the config's values are arguments here, the
# training methods (add_optimizer … run_epoch) are left out. Both take torchtext's (seq len, batch) ids.


class ReleasedFastText(nn.Module):
    def __init__(self, vocab_size, word_embeddings, output_size, embed_size=300, hidden_size=10):
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, embed_size)
        self.embeddings.weight = nn.Parameter(word_embeddings, requires_grad=False)
        self.fc1 = nn.Linear(embed_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, output_size)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        embedded_sent = self.embeddings(x).permute(1, 0, 2)
        h = self.fc1(embedded_sent.mean(1))
        z = self.fc2(h)
        return self.softmax(z)


class ReleasedCharCNN(nn.Module):
    def __init__(self, vocab_size, embeddings, output_size, num_channels=256, linear_size=256, seq_len=300,
                 dropout_keep=0.5):
        super().__init__()
        embed_size = vocab_size
        self.embeddings = nn.Embedding(vocab_size, embed_size)
        self.embeddings.weight = nn.Parameter(embeddings, requires_grad=False)
        conv1 = nn.Sequential(nn.Conv1d(in_channels=embed_size, out_channels=num_channels, kernel_size=7), nn.ReLU(),
                              nn.MaxPool1d(kernel_size=3))
        conv2 = nn.Sequential(nn.Conv1d(in_channels=num_channels, out_channels=num_channels, kernel_size=7), nn.ReLU(),
                              nn.MaxPool1d(kernel_size=3))
        conv3 = nn.Sequential(nn.Conv1d(in_channels=num_channels, out_channels=num_channels, kernel_size=3), nn.ReLU())
        conv4 = nn.Sequential(nn.Conv1d(in_channels=num_channels, out_channels=num_channels, kernel_size=3), nn.ReLU())
        conv5 = nn.Sequential(nn.Conv1d(in_channels=num_channels, out_channels=num_channels, kernel_size=3), nn.ReLU())
        conv6 = nn.Sequential(nn.Conv1d(in_channels=num_channels, out_channels=num_channels, kernel_size=3), nn.ReLU(),
                              nn.MaxPool1d(kernel_size=3))
        conv_output_size = num_channels * ((seq_len - 96) // 27)
        linear1 = nn.Sequential(nn.Linear(conv_output_size, linear_size), nn.ReLU(), nn.Dropout(dropout_keep))
        linear2 = nn.Sequential(nn.Linear(linear_size, linear_size), nn.ReLU(), nn.Dropout(dropout_keep))
        linear3 = nn.Sequential(nn.Linear(linear_size, output_size), nn.Softmax(dim=-1))
        self.convolutional_layers = nn.Sequential(conv1, conv2, conv3, conv4, conv5, conv6)
        self.linear_layers = nn.Sequential(linear1, linear2, linear3)

    def forward(self, x):
        embedded_sent = self.embeddings(x).permute(1, 2, 0)
        conv_out = self.convolutional_layers(embedded_sent)
        conv_out = conv_out.view(conv_out.shape[0], -1)
        return self.linear_layers(conv_out)


def pre_softmax(released):
    """The released module with its final Softmax replaced by the identity: its logits."""
    if isinstance(released, ReleasedFastText):
        released.softmax = nn.Identity()
    else:
        released.linear_layers[2][1] = nn.Identity()
    return released


# ---- data as the released loaders give it ----------------------------------------------------------
# torchtext's vocabulary starts <unk> = 0, <pad> = 1; word vectors missing from GloVe, those two included,
# are zeros (Vectors' unk_init = zero_). The CharCNN table is eye(71) (Model_CharCNN/utils.py l.11–16).
VOCAB, PAD = 50, 1


def glove_like(vocab=VOCAB, dim=300, seed=0):
    table = torch.randn(vocab, dim, generator=torch.Generator().manual_seed(seed))
    table[:2] = 0
    return table


def ragged(rows):
    lengths = torch.tensor([len(r) for r in rows])
    offsets = torch.zeros(len(rows) + 1, dtype=torch.int64)
    offsets[1:] = lengths.cumsum(0)
    return Ragged(torch.tensor([t for r in rows for t in r], dtype=torch.int64), offsets)


def padded(rows):
    """torchtext's batch: (longest row, N), short rows filled with <pad>."""
    longest = max(len(r) for r in rows)
    return torch.tensor([r + [PAD] * (longest - len(r)) for r in rows]).T


def random_rows(n, length, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, VOCAB, (length if isinstance(length, int) else length[i],), generator=g).tolist()
            for i in range(n)]


def text_rows(words, chars=None):
    return TextRows(words, torch.zeros(len(words), 300, dtype=torch.uint8) if chars is None else chars)


def released_fasttext_from(ours, table):
    released = ReleasedFastText(len(table), table, ours.fc2.out_features)
    released.load_state_dict({**ours.state_dict(), "embeddings.weight": table})
    return released


def released_charcnn_from(ours, classes, length=300):
    released = ReleasedCharCNN(SYMBOLS, torch.eye(SYMBOLS), classes, seq_len=length)
    released.load_state_dict({**ours.state_dict(), "embeddings.weight": torch.eye(SYMBOLS)})
    return released


# ---- fastText -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("classes", [4, 10, 5])
def test_fasttext_computes_what_the_released_module_computes_on_rows_of_equal_length(classes):
    table, rows = glove_like(), random_rows(6, 12)
    rows = [[0] + r[1:] for r in rows]  # a word missing from GloVe (<unk>, a zero vector) counts in both means
    torch.manual_seed(0)
    ours, logits = fasttext((300,), classes, embeddings=table), fasttext_logits((300,), classes, embeddings=table)
    logits.load_state_dict(ours.state_dict())
    released = released_fasttext_from(ours, table)
    with torch.no_grad():
        out = ours(text_rows(ragged(rows)))
        assert out.shape == (6, classes)
        assert torch.allclose(out, released(padded(rows)), atol=1e-6)
        assert torch.allclose(out.sum(1), torch.ones(6))
        assert torch.allclose(logits(text_rows(ragged(rows))), pre_softmax(released)(padded(rows)), atol=1e-6)


def test_fasttext_averages_a_row_over_its_own_words_where_the_released_code_averages_over_the_padded_batch():
    """The documented difference: a row of 3 words in a batch padded to 8 gets the released mean × 3/8."""
    table, rows = glove_like(), random_rows(2, [3, 8])
    ours = fasttext_logits((300,), 5, embeddings=table)
    released = pre_softmax(released_fasttext_from(ours, table))
    with torch.no_grad():
        alone = released(padded(rows[:1]))
        in_batch = released(padded(rows))
        ours_out = ours(ragged(rows))
        assert torch.allclose(ours_out[0], alone[0], atol=1e-6)  # our row equals the released row unpadded
        assert not torch.allclose(in_batch[0], alone[0], atol=1e-3)  # the released row depends on its batch
        shrunk = table[rows[0]].mean(0) * 3 / 8
        assert torch.allclose(in_batch[0], ours.fc2(ours.fc1(shrunk)), atol=1e-6)
        assert torch.allclose(ours_out[1], in_batch[1], atol=1e-6)  # the longest row: no padding, no difference
        assert torch.allclose(ours(ragged(rows[:1]))[0], ours_out[0], atol=1e-6)  # ours: whatever the batch


@pytest.mark.parametrize("classes,by_hand", [(4, 300 * 10 + 10 + 10 * 4 + 4), (10, 300 * 10 + 10 + 10 * 10 + 10),
                                             (5, 300 * 10 + 10 + 10 * 5 + 5)])
def test_fasttext_holds_only_its_3k_trainable_parameters(classes, by_hand):
    """3,054 / 3,120 / 3,065: what the released train.py l.82 prints (requires_grad only), the GloVe
    table left out; the table is not in the state dict either."""
    table = glove_like()
    ours = fasttext((300,), classes, embeddings=table)
    assert count(ours) == by_hand == count(ReleasedFastText(len(table), table, classes), trainable_only=True)
    assert list(ours.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert [name for name, _ in ours.named_buffers()] == ["embeddings"]


def test_fasttext_gradient_reaches_fc1_and_fc2_and_not_the_table():
    table = glove_like()
    ours = fasttext((300,), 4, embeddings=table)
    before = ours.embeddings.clone()
    optimizer = torch.optim.SGD(ours.parameters(), lr=0.5)
    loss = F.cross_entropy(ours(text_rows(ragged(random_rows(4, [3, 5, 7, 2])))), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ours.parameters())
    assert not ours.embeddings.requires_grad and ours.embeddings.grad is None
    optimizer.step()
    assert torch.equal(ours.embeddings, before)


def test_fasttext_rebuilt_from_a_state_dict_and_the_table_computes_the_same():
    table, rows = glove_like(), ragged(random_rows(3, [4, 9, 1]))
    first = fasttext((300,), 4, embeddings=table)
    again = fasttext((300,), 4, embeddings=table.clone())
    again.load_state_dict(first.state_dict())
    with torch.no_grad():
        assert torch.equal(first(rows), again(rows))
    released = ReleasedFastText(len(table), table, 4)
    state = {k: v for k, v in released.state_dict().items() if k != "embeddings.weight"}
    again.load_state_dict(state)  # a released checkpoint, less its table, loads strictly
    assert torch.equal(again.fc1.weight, released.fc1.weight)


@pytest.mark.parametrize("build", [fasttext, fasttext_logits])
def test_fasttext_without_the_table_says_so(build):
    with pytest.raises(ConfigError, match="word-embedding table"):
        build((300,), 4)


def test_fasttext_takes_the_tables_dimension_and_refuses_a_table_that_is_not_a_matrix():
    ours = FastText(glove_like(dim=8), 3, softmax=False)
    assert ours.fc1.in_features == 8 and ours.embeddings.dtype == torch.float32
    with pytest.raises(ConfigError):
        FastText(torch.zeros(300), 3)


# ---- CharCNN ------------------------------------------------------------------------------------------

def random_chars(n, length=300, seed=2):
    return torch.randint(0, SYMBOLS, (n, length), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("classes", [4, 5])
def test_charcnn_computes_what_the_released_module_computes(classes):
    chars = random_chars(4)
    torch.manual_seed(0)
    ours, logits = charcnn((300,), classes), charcnn_logits((300,), classes)
    logits.load_state_dict(ours.state_dict())
    released = released_charcnn_from(ours, classes)
    x = chars.T.long()  # torchtext's (seq len, batch)
    with torch.no_grad():
        out = ours.eval()(text_rows(ragged([[2]] * 4), chars))
        assert out.shape == (4, classes)
        assert torch.allclose(out, released.eval()(x), atol=1e-6)
        assert torch.allclose(logits.eval()(chars), pre_softmax(released)(x), atol=1e-5)
        released = released_charcnn_from(ours, classes).train()
        torch.manual_seed(7)
        train_ours = ours.train()(chars)
        torch.manual_seed(7)  # the same units dropped: two Dropout(0.5), at the same points
        assert torch.allclose(train_ours, released(x), atol=1e-6)
        assert not torch.allclose(train_ours, out, atol=1e-3)


def test_charcnn_one_hot_is_the_released_frozen_identity_embedding_permuted():
    chars = random_chars(3, 20)
    lookup = nn.Embedding(SYMBOLS, SYMBOLS)
    lookup.weight = nn.Parameter(torch.eye(SYMBOLS), requires_grad=False)
    released = lookup(chars.T.long()).permute(1, 2, 0)
    assert torch.equal(F.one_hot(chars.long(), SYMBOLS).float().permute(0, 2, 1), released)


def test_charcnn_runs_the_released_layers_in_order_and_flattens_256_by_7():
    chars = random_chars(2)
    ours = trace(charcnn((300,), 5), chars, (nn.Embedding,))  # the released Embedding left out
    assert ours == trace(ReleasedCharCNN(SYMBOLS, torch.eye(SYMBOLS), 5), chars.T.long(), (nn.Embedding,))
    lengths = [shape[-1] for name, shape in ours if name.startswith(("Conv1d", "MaxPool1d"))]
    assert lengths == [294, 98, 92, 30, 28, 26, 24, 22, 7]
    assert [shape for name, shape in ours if name.startswith("MaxPool1d")][-1] == (2, 256, 7)  # 256 × 7 = 1792
    assert ours[-1] == ("Softmax(dim=-1)", (2, 5))
    assert charcnn((300,), 5).linear_layers[0][0].in_features == 256 * 7 == 1792


def test_charcnn_released_length_formula_is_the_layer_by_layer_length():
    """model.py l.52 writes (seq_len − 96) // 27; the layers floor at each pool; the same for all lengths."""
    for length in range(123, 1100):
        n = (length - 6) // 3
        n = (n - 6) // 3
        n = (n - 8) // 3
        assert n == (length - 96) // 27
    with pytest.raises(ConfigError):
        CharCNN(122, 5)


def _charcnn_by_hand(classes, length=300):
    conv = lambda cin, k: k * cin * 256 + 256  # noqa: E731
    return (conv(71, 7) + conv(256, 7) + 4 * conv(256, 3)
            + 256 * ((length - 96) // 27) * 256 + 256 + 256 * 256 + 256 + 256 * classes + classes)


@pytest.mark.parametrize("classes", [4, 5, 10])
def test_charcnn_parameter_count_by_hand(classes):
    ours = charcnn((300,), classes)
    assert count(ours) == _charcnn_by_hand(classes) == count(ReleasedCharCNN(SYMBOLS, torch.eye(SYMBOLS), classes),
                                                             trainable_only=True)
    assert count(charcnn_logits((300,), classes)) == count(ours)
    assert _charcnn_by_hand(5) == 1_900_037
    released = ReleasedCharCNN(SYMBOLS, torch.eye(SYMBOLS), classes).state_dict()
    assert list(ours.state_dict()) == [k for k in released if k != "embeddings.weight"]


def test_charcnn_gradient_reaches_every_parameter():
    ours = charcnn_logits((300,), 4)
    F.cross_entropy(ours(random_chars(3)), torch.tensor([0, 1, 3])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ours.parameters())


def test_logits_variants_are_the_softmax_variants_before_their_softmax():
    torch.manual_seed(0)
    table, rows = glove_like(), ragged(random_rows(3, [2, 6, 4]))
    soft, raw = fasttext((300,), 4, embeddings=table), fasttext_logits((300,), 4, embeddings=table)
    raw.load_state_dict(soft.state_dict())
    cnn_soft, cnn_raw = charcnn((300,), 4).eval(), charcnn_logits((300,), 4).eval()
    cnn_raw.load_state_dict(cnn_soft.state_dict())
    chars = random_chars(3)
    with torch.no_grad():
        assert torch.allclose(raw(rows).softmax(-1), soft(rows), atol=1e-7)
        assert torch.allclose(cnn_raw(chars).softmax(-1), cnn_soft(chars), atol=1e-7)
        assert not torch.allclose(raw(rows), soft(rows))
