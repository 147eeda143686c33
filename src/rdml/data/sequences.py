"""Text rows held as tensors: each row's words as token ids of variable length (`Ragged`, one flat
tensor and offsets, what `nn.EmbeddingBag` takes) and its characters as a fixed-length index sequence.
Selecting rows, slicing and moving to a device are tensor operations, so a training batch is built
without per-sample Python."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Ragged", "TextRows"]


@dataclass
class Ragged:
    """Sequences of int64 ids: row i is values[offsets[i]:offsets[i + 1]]."""

    values: Tensor  # (total,) int64
    offsets: Tensor  # (N + 1,) int64, offsets[0] = 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def __getitem__(self, rows: Tensor | slice) -> Ragged:
        if isinstance(rows, slice):
            rows = torch.arange(len(self), device=self.offsets.device)[rows]
        rows = rows.to(self.offsets.device)
        if rows.dtype == torch.bool:
            rows = rows.nonzero().flatten()
        starts, lengths = self.offsets[rows], self.lengths[rows]
        offsets = torch.zeros(len(rows) + 1, dtype=torch.int64, device=self.offsets.device)
        torch.cumsum(lengths, 0, out=offsets[1:])
        # each value's position: its row's start plus its place within the row
        within = torch.arange(int(offsets[-1]), device=self.offsets.device) - offsets[:-1].repeat_interleave(lengths)
        return Ragged(self.values[starts.repeat_interleave(lengths) + within], offsets)

    def to(self, device) -> Ragged:
        return Ragged(self.values.to(device), self.offsets.to(device))


@dataclass
class TextRows:
    """Rows of a text data set: `words` (token ids into the data set's vocabulary; fastText reads them)
    and `chars` ((N, L) uint8 indices into the character alphabet; CharCNN reads them)."""

    words: Ragged
    chars: Tensor

    def __len__(self) -> int:
        return len(self.chars)

    def __getitem__(self, rows: Tensor | slice) -> TextRows:
        index = rows.to(self.chars.device) if isinstance(rows, Tensor) else rows
        return TextRows(self.words[rows], self.chars[index])

    def to(self, device) -> TextRows:
        return TextRows(self.words.to(device), self.chars.to(device))

    @property
    def device(self) -> torch.device:
        return self.chars.device
