"""Text classifiers over padded int64 token ids (N x L), as the text loaders produce them.

Every model takes ``vocab_size`` and ``pad_id`` (the integrator passes the dataset's
``extra["vocab_size"]`` and ``extra["pad_id"]``) and ignores padding wherever it sits (left, right or
in between), so a record's prediction does not depend on how much padding it got. A record that is
all padding gives finite logits (the head's bias), never NaN.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cyphercat.errors import CyphercatError
from cyphercat.models.zoo import model


def _text_dims(input_shape: tuple[int, ...], name: str, vocab_size: int | None, pad_id: int) -> int:
    if len(input_shape) != 1:
        raise ValueError(f"{name} needs token ids of shape (L,), got shape {tuple(input_shape)}")
    if vocab_size is None:
        raise CyphercatError("model.params.vocab_size", f"{name} needs the vocabulary size",
                             "pass vocab_size (and pad_id) from the text dataset's extra metadata")
    if not 0 <= int(pad_id) < int(vocab_size):
        raise CyphercatError("model.params.pad_id", f"pad_id {pad_id} is outside the vocabulary 0..{vocab_size - 1}",
                             "pass the text dataset's extra['pad_id']")
    return int(input_shape[0])


def _check_tokens(x: torch.Tensor, name: str) -> None:
    # Shapes and dtypes only (no values), so this costs no device sync and is allowed under vmap.
    if x.ndim != 2 or x.is_floating_point():
        raise CyphercatError("model", f"{name} takes integer token ids of shape (N, L), got {x.dtype} "
                             f"of shape {tuple(x.shape)}", "use a text model only with a text dataset")


def _masked_mean(h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens; clamping the count keeps an all-padding record at zero instead of 0/0."""
    w = keep.to(h.dtype).unsqueeze(-1)
    return (h * w).sum(1) / w.sum(1).clamp(min=1.0)


class EmbeddingBagClassifier(nn.Module):
    def __init__(self, vocab_size: int, dim: int, num_classes: int, pad_id: int):
        super().__init__()
        # padding_idx drops pads from each bag's mean; an empty bag averages to zeros.
        self.embedding = nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=pad_id)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_tokens(x, "text_embedding_bag")
        return self.fc(self.embedding(x))


class BiLSTMClassifier(nn.Module):
    def __init__(self, vocab_size: int, dim: int, hidden: int, layers: int, num_classes: int, pad_id: int,
                 dropout: float):
        super().__init__()
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_tokens(x, "text_bilstm")
        is_pad = x == self.pad_id
        # Move real tokens to the front (stable, so their order is kept) so packing sees them whatever
        # the padding side; an all-padding record runs as one pad token (zero embedding).
        x = x.gather(1, torch.argsort(is_pad.to(torch.uint8), dim=1, stable=True))
        lengths = (~is_pad).sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(x), lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        # Last layer's final states, forward and backward direction.
        return self.fc(self.drop(torch.cat([h[-2], h[-1]], dim=1)))


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder layer, written out so that it runs under ``vmap`` and DP-SGD
    (only Linear/LayerNorm parameters) and so the padding mask is applied exactly as we need."""

    def __init__(self, dim: int, heads: int, ff: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(dim // self.heads)
        scores = scores.masked_fill(~attend[:, None, None, :], float("-inf"))
        att = self.drop(torch.softmax(scores, dim=-1)) @ v
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(n, length, dim)))
        return x + self.drop(self.ff(self.norm2(x)))


class TransformerClassifier(nn.Module):
    def __init__(self, vocab_size: int, max_len: int, dim: int, heads: int, layers: int, ff: int,
                 num_classes: int, pad_id: int, dropout: float):
        super().__init__()
        self.pad_id = pad_id
        self.max_len = max_len
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.position = nn.Embedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, ff, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_tokens(x, "text_transformer")
        if x.shape[1] > self.max_len:
            raise CyphercatError("model.params.max_len", f"token sequences have length {x.shape[1]}, "
                                 f"longer than the model's max_len {self.max_len}", "raise max_len")
        keep = x != self.pad_id
        # Positions count real tokens only, so left- and right-padded copies of a text look the same.
        pos = (keep.long().cumsum(1) - 1).clamp(min=0)
        h = self.drop(self.embedding(x) + self.position(pos))
        # Every query needs one key it may attend to, or softmax over all -inf gives NaN: in an all-padding
        # record key 0 (a pad token) is allowed; the mean-pool below ignores it anyway.
        attend = keep | (~keep.any(1, keepdim=True) & (torch.arange(x.shape[1], device=x.device) == 0))
        for block in self.blocks:
            h = block(h, attend)
        return self.fc(_masked_mean(self.norm(h), keep))


@model("text_embedding_bag", ("text",), "bag of embeddings (EmbeddingBag mean) + linear layer", batchable=True)
def text_embedding_bag(input_shape, num_classes, vocab_size: int | None = None, pad_id: int = 0,
                       dim: int = 64) -> nn.Module:
    _text_dims(input_shape, "text_embedding_bag", vocab_size, pad_id)
    return EmbeddingBagClassifier(int(vocab_size), int(dim), num_classes, int(pad_id))


@model("text_bilstm", ("text",), "bidirectional LSTM over word embeddings, final states -> linear")
def text_bilstm(input_shape, num_classes, vocab_size: int | None = None, pad_id: int = 0, dim: int = 64,
                hidden: int = 64, layers: int = 1, dropout: float = 0.0) -> nn.Module:
    _text_dims(input_shape, "text_bilstm", vocab_size, pad_id)
    return BiLSTMClassifier(int(vocab_size), int(dim), int(hidden), int(layers), num_classes, int(pad_id),
                            float(dropout))


@model("text_transformer", ("text",), "small transformer encoder (learned positions, padding mask, mean-pool)",
       batchable=True)
def text_transformer(input_shape, num_classes, vocab_size: int | None = None, pad_id: int = 0, dim: int = 64,
                     heads: int = 4, layers: int = 2, ff: int | None = None, dropout: float = 0.1,
                     max_len: int | None = None) -> nn.Module:
    length = _text_dims(input_shape, "text_transformer", vocab_size, pad_id)
    return TransformerClassifier(int(vocab_size), int(max_len or length), int(dim), int(heads), int(layers),
                                 int(ff or 4 * dim), num_classes, int(pad_id), float(dropout))
