"""The two text classifiers of RDML Table 3, fastText and CharCNN, as the released code builds them
(parklize/rdml text-clf/ at cddd067, which follows AnubhavGupta3377/Text-Classification-Models-Pytorch
at 8571fe6). A batch is a `rdml.data.sequences.TextRows`: fastText reads its `words`, CharCNN its `chars`.

Both released modules end in `nn.Softmax(dim=-1)` (Model_fastText/model.py l.24, 31; Model_CharCNN/
model.py l.64–67; upstream's `nn.Softmax()` picks the same dim for a batch), and the released loop
applies `nn.CrossEntropyLoss` (dml.py l.96) and `RenyiLoss` (softmax of its inputs, dml.py l.47–48) to
those probabilities: a softmax taken twice. `fasttext` and `charcnn` keep it; `fasttext_logits` and
`charcnn_logits` are the same networks without the final Softmax (softmax taken once).

Weights start from PyTorch's defaults for nn.Linear/nn.Conv1d, as in the released modules. These first
draw an nn.Embedding's random weights and discard them (Model_fastText/model.py l.14, Model_CharCNN/
model.py l.15), so the same seed does not give the released initial values, only their distribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rdml.data.sequences import Ragged, TextRows
from rdml.keys import ConfigError

__all__ = ["FastText", "CharCNN", "EvaluationDropout", "fasttext", "fasttext_logits", "charcnn", "charcnn_logits",
           "charcnn_as_released", "SYMBOLS"]

# text-clf/Model_CharCNN/utils.py l.98: the 69 distinct characters of the fixed alphabet ("-" is listed
# twice) after torchtext's <unk> and <pad>; l.11–16 and l.99–100 give each its one-hot row of eye(71).
SYMBOLS = 71  # one-hot width (rdml.data.text.ALPHABET is the string these come from)


class FastText(nn.Module):
    """text-clf/Model_fastText/model.py l.8–31 with config.py l.4–6: the mean of the row's frozen word
    vectors → fc1 Linear(300, 10) → fc2 Linear(10, C) → Softmax (no activation, no dropout).

    The table is a non-persistent buffer (the caller's tensor, not copied): it is the data set's (GloVe
    840B 300d, utils.py l.89–90, train.py l.55), not trained (`requires_grad=False`, model.py l.15), so a
    state dict holds fc1 and fc2 only: 300·10+10 + 10·C+C parameters, the "≈3K" of the paper, which is what
    the released train.py l.82 counts (requires_grad only). The released config.py l.6 fixes C = 10
    whatever the data set's classes (3,120). The keys are the released module's, less `embeddings.weight`.

    The mean is over the row's own tokens (`embedding_bag`, mode="mean"), fastText's definition (Joulin
    et al. 2017, §2). The released forward (l.28–29) averages over the batch's padded length, <pad>
    vectors (zeros) included, so a row's output there depends on the longest row of its batch; the two
    agree when the rows of a batch are of equal length.
    """

    def __init__(self, embeddings: Tensor, num_classes: int, hidden: int = 10, softmax: bool = True):
        super().__init__()
        if embeddings.dim() != 2:
            raise ConfigError(f"fastText takes a (vocabulary, dimension) embedding table, "
                              f"not shape {tuple(embeddings.shape)}")
        self.register_buffer("embeddings", embeddings.detach().to(torch.float32), persistent=False)
        self.fc1 = nn.Linear(embeddings.shape[1], hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.softmax = nn.Softmax(dim=-1) if softmax else nn.Identity()

    def forward(self, rows: TextRows | Ragged) -> Tensor:
        words = rows.words if isinstance(rows, TextRows) else rows
        mean = F.embedding_bag(words.values, self.embeddings, words.offsets, mode="mean", include_last_offset=True)
        return self.softmax(self.fc2(self.fc1(mean)))


class EvaluationDropout(nn.Dropout):
    """nn.Dropout in training (the same draws from torch's stream); in eval mode it still drops, as the released
    CharCNN evaluation does (text-clf/Model_CharCNN/utils.py l.124–137 never calls `eval()`; dml.py l.111–112
    and l.207 leave the networks in train mode), with masks from `evaluation_draws`, a CPU generator that
    every evaluation seeds anew (rdml.train.evaluate.seed_evaluation_draws): the same weights give the same
    masks on any device, and evaluating does not move the training stream."""

    def __init__(self, p: float = 0.5):
        super().__init__(p)
        self.evaluation_draws = torch.Generator().manual_seed(0)  # until an evaluation seeds it

    def forward(self, x: Tensor) -> Tensor:
        if self.training or self.p == 0:
            return super().forward(x)
        if torch._C._functorch.is_batchedtensor(x):
            raise ConfigError("charcnn_as_released draws its evaluation dropout from a CPU generator, which a "
                              "fused cohort (fuse_students=true) cannot: set fuse_students=false")
        if self.p == 1:
            return torch.zeros_like(x)
        keep = torch.rand(x.shape, generator=self.evaluation_draws) >= self.p  # kept with probability 1 − p
        return x * keep.to(x.device, x.dtype) / (1 - self.p)  # scaled as F.dropout scales the kept units


def charcnn_output_length(length: int) -> int:
    """Positions left after the six convolutions and three poolings; text-clf/Model_CharCNN/model.py l.52
    writes it (seq_len − 96) // 27, which equals the layer-by-layer floors for every length."""
    return (length - 96) // 27


class CharCNN(nn.Module):
    """text-clf/Model_CharCNN/model.py l.8–77 with config.py l.4–11: one-hot characters (71 symbols, frozen
    identity embedding, l.15–18) → six Conv1d of 256 channels with ReLU, kernel 7, 7, 3, 3, 3, 3, no
    padding, MaxPool1d(3) after the 1st, 2nd and 6th → 256·7 = 1792 at length 300 → Linear(1792, 256), ReLU,
    Dropout(0.5) → Linear(256, 256), ReLU, Dropout(0.5) → Linear(256, C) → Softmax.

    The one-hot is `F.one_hot` (no parameters; the frozen eye(71) embedding's output) laid out
    (N, 71, L) as the released `permute(1, 2, 0)` of its (L, N, 71) lookup (l.73). The dropout
    probability is config `dropout_keep` = 0.5 passed as p (l.57, 62): 0.5 either way. Modules and
    state-dict keys are the released ones, less `embeddings.weight`. (The released evaluation, utils.py
    l.124–137 called from dml.py l.202–206 and train.py l.207–224, never calls `eval()`: its accuracies
    have dropout active; `dropout_in_evaluation=True` does the same, see `EvaluationDropout`.)
    """

    def __init__(self, length: int, num_classes: int, channels: int = 256, linear: int = 256,
                 dropout: float = 0.5, softmax: bool = True, dropout_in_evaluation: bool = False):
        super().__init__()
        if charcnn_output_length(length) < 1:
            raise ConfigError(f"CharCNN needs sequences of at least 123 characters, not {length}")

        def conv(cin: int, kernel: int, pool: bool) -> nn.Sequential:
            return nn.Sequential(nn.Conv1d(cin, channels, kernel), nn.ReLU(), *([nn.MaxPool1d(3)] if pool else []))

        self.convolutional_layers = nn.Sequential(
            conv(SYMBOLS, 7, True), conv(channels, 7, True), conv(channels, 3, False),
            conv(channels, 3, False), conv(channels, 3, False), conv(channels, 3, True))
        drop = EvaluationDropout if dropout_in_evaluation else nn.Dropout
        self.linear_layers = nn.Sequential(
            nn.Sequential(nn.Linear(channels * charcnn_output_length(length), linear), nn.ReLU(), drop(dropout)),
            nn.Sequential(nn.Linear(linear, linear), nn.ReLU(), drop(dropout)),
            nn.Sequential(nn.Linear(linear, num_classes), *([nn.Softmax(dim=-1)] if softmax else [])))

    def forward(self, rows: TextRows | Tensor) -> Tensor:
        chars = rows.chars if isinstance(rows, TextRows) else rows
        dtype = self.convolutional_layers[0][0].weight.dtype
        onehot = F.one_hot(chars.long(), SYMBOLS).to(dtype).permute(0, 2, 1)  # (N, 71, L)
        return self.linear_layers(self.convolutional_layers(onehot).flatten(1))


def _table(embeddings: Tensor | None) -> Tensor:
    if embeddings is None:
        raise ConfigError("arch=fasttext needs the data set's word-embedding table (embeddings=, a (V, 300) "
                          "float tensor): it is not saved with the model, so pass it to rebuild one as well")
    return embeddings


def fasttext(input_shape, num_classes, embeddings: Tensor | None = None) -> FastText:
    """As released: ends in Softmax. `input_shape` (the characters' length) does not enter."""
    return FastText(_table(embeddings), num_classes)


def fasttext_logits(input_shape, num_classes, embeddings: Tensor | None = None) -> FastText:
    return FastText(_table(embeddings), num_classes, softmax=False)


def charcnn(input_shape, num_classes) -> CharCNN:
    """As released: ends in Softmax. `input_shape` is (L,), the characters per row (300, config.py l.10)."""
    return CharCNN(input_shape[-1], num_classes)


def charcnn_logits(input_shape, num_classes) -> CharCNN:
    return CharCNN(input_shape[-1], num_classes, softmax=False)


def charcnn_as_released(input_shape, num_classes) -> CharCNN:
    """`charcnn` evaluated as the released code evaluates it: dropout 0.5 active in every evaluation, so its
    accuracies and its best-validation epoch are those of a dropped-out network (utils.py l.124–137). Training
    is `charcnn`'s, draw for draw; only evaluation differs."""
    return CharCNN(input_shape[-1], num_classes, dropout_in_evaluation=True)
