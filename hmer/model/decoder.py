"""Transformer decoder over LaTeX tokens: teacher-forced passes and cached incremental steps.

The weights live in PyTorch's own :class:`torch.nn.TransformerDecoder` (batch-first layers), so a
state dict is the familiar one; the code here reads those weights directly and calls
:func:`torch.nn.functional.scaled_dot_product_attention`, in two forms of the same layer:

- training / teacher forcing (:meth:`Decoder.forward`): all positions at once, causal
  self-attention (``is_causal``: flash kernels on GPU; no target padding mask is needed because
  padding only ever follows a sequence's real tokens and its outputs are ignored), dropout as in
  ``nn.TransformerDecoderLayer``;
- incremental decoding (:meth:`Decoder.step`): one new token per row, self-attention
  keys/values cached per layer, the memory keys/values computed once per search
  (:meth:`Decoder.start`), functional calls only (a step's matrices are small, so per-call
  overhead would otherwise dominate on CPU). Tests check that both give the same logits.

Rows and images: the memory holds ``B`` images and the token batch ``N = B · G`` rows, the ``G``
rows of image ``b`` being ``b·G … b·G + G - 1`` (two directions in training, beams in search).
Cross-attention folds the ``G`` rows of an image into its query length, so the memory is never
repeated: its keys/values are ``(B, heads, S, head_dim)`` whatever ``G`` is.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hmer.model.pos_enc import PositionEncoding1D

__all__ = ["Decoder", "DecoderState"]


@dataclass
class DecoderState:
    """Cache of an incremental decode over ``N = B · G`` rows.

    Attributes:
        memory_kv: per layer, cross-attention ``(keys, values)``, each ``(B, heads, S, head_dim)``.
        memory_bias: ``(B, 1, 1, S)`` float32 attention bias, ``-inf`` on padding cells.
        self_kv: per layer, self-attention ``(keys, values)`` of the tokens so far, each
            ``(N, heads, t, head_dim)`` (None before the first step).
        position: number of tokens decoded so far (``t``).
        positions: ``(T, d_model)`` 1D position encodings of positions ``0 … T - 1``, extended
            as needed (one lookup per step instead of building the encoding).
        layers: the weights each step reads, gathered at the first step.
    """

    memory_kv: list[tuple[Tensor, Tensor]]
    memory_bias: Tensor
    self_kv: list[tuple[Tensor, Tensor] | None] = field(default_factory=list)
    position: int = 0
    positions: Tensor | None = None
    layers: list[_StepWeights] = field(default_factory=list)

    def reorder(self, index: Tensor) -> None:
        """Make row ``i`` continue from old row ``index[i]`` (``(N',)`` long: beam reordering,
        dropping rows). Rows stay grouped by image, ``N' / G`` per image of the memory."""
        self.self_kv = [
            None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))
            for kv in self.self_kv
        ]

    def select_images(self, index: Tensor) -> None:
        """Keep the memory of images ``index`` (``(B',)`` long, old indices, in the new order)."""
        self.memory_kv = [
            (k.index_select(0, index), v.index_select(0, index)) for k, v in self.memory_kv
        ]
        self.memory_bias = self.memory_bias.index_select(0, index)


@dataclass(frozen=True)
class _StepWeights:
    """One layer's tensors as :meth:`Decoder.step` uses them, gathered (and the attention
    projections sliced) once per search: a step then calls no module and slices nothing."""

    qkv: tuple[Tensor, Tensor]
    self_out: tuple[Tensor, Tensor]
    cross_q: tuple[Tensor, Tensor]
    cross_out: tuple[Tensor, Tensor]
    ff1: tuple[Tensor, Tensor]
    ff2: tuple[Tensor, Tensor]
    norms: tuple[tuple[Tensor, Tensor, float], ...]

    @classmethod
    def of(cls, layer: nn.TransformerDecoderLayer) -> _StepWeights:
        d = layer.self_attn.embed_dim
        cross = layer.multihead_attn
        return cls(
            qkv=(layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias),
            self_out=(layer.self_attn.out_proj.weight, layer.self_attn.out_proj.bias),
            cross_q=(cross.in_proj_weight[:d], cross.in_proj_bias[:d]),
            cross_out=(cross.out_proj.weight, cross.out_proj.bias),
            ff1=(layer.linear1.weight, layer.linear1.bias),
            ff2=(layer.linear2.weight, layer.linear2.bias),
            norms=tuple((n.weight, n.bias, n.eps) for n in (layer.norm1, layer.norm2, layer.norm3)),
        )


def _sublayers(
    x: Tensor,
    norms: Sequence[Callable[[Tensor], Tensor]],
    sublayers: Sequence[Callable[[Tensor], Tensor]],
    pre_norm: bool,
) -> Tensor:
    """``x`` through a layer's sublayers (self-attention, cross-attention, feed-forward), each
    with its residual connection and LayerNorm, placed as ``nn.TransformerDecoderLayer`` does:
    before the sublayer (``pre_norm``) or after the sum (BTTR)."""
    for norm, sublayer in zip(norms, sublayers, strict=True):
        x = x + sublayer(norm(x)) if pre_norm else norm(x + sublayer(x))
    return x


def _attention_bias(memory_mask: Tensor) -> Tensor:
    """``(B, S)`` bool, True = padding -> ``(B, 1, 1, S)`` float32, 0 or ``-inf``: an additive
    mask (cheaper than a bool mask in ``scaled_dot_product_attention`` on CPU)."""
    bias = torch.zeros(memory_mask.shape, device=memory_mask.device)
    return bias.masked_fill_(memory_mask, float("-inf"))[:, None, None, :]


def _heads(x: Tensor, n: int, nhead: int) -> tuple[Tensor, ...]:
    """``(B, L, n · D)`` -> ``n`` tensors ``(B, heads, L, D / heads)``."""
    b, length, width = x.shape
    x = x.view(b, length, n, nhead, width // (n * nhead))
    return x.permute(2, 0, 3, 1, 4).unbind(0)


def _merge_heads(x: Tensor) -> Tensor:
    """``(B, heads, L, head_dim)`` -> ``(B, L, heads · head_dim)``."""
    b, nhead, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(b, length, nhead * head_dim)


class Decoder(nn.Module):
    """Token embedding + LayerNorm (BTTR) + 1D sinusoidal encoding -> transformer decoder -> logits.

    Args:
        vocab_size: number of token ids (specials included).
        d_model, nhead, num_layers, dim_feedforward, dropout: as ``nn.TransformerDecoderLayer``
            (ReLU, batch-first).
        norm_first: pre-norm layers (plus a final LayerNorm) instead of BTTR's post-norm.
        pos_temperature: frequency base of the 1D encoding.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 256,
        nhead: int = 8,
        num_layers: int = 3,
        dim_feedforward: int = 1024,
        dropout: float = 0.3,
        *,
        norm_first: bool = False,
        pos_temperature: float = 10000.0,
    ) -> None:
        super().__init__()
        self.nhead = nhead
        self.embed = nn.Embedding(vocab_size, d_model)
        self.embed_norm = nn.LayerNorm(d_model)
        self.pos = PositionEncoding1D(d_model, pos_temperature)
        layer = nn.TransformerDecoderLayer(
            d_model, nhead, dim_feedforward, dropout, batch_first=True, norm_first=norm_first
        )
        final_norm = nn.LayerNorm(d_model) if norm_first else None
        self.transformer = nn.TransformerDecoder(layer, num_layers, norm=final_norm)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        """Teacher-forced logits.

        Args:
            tokens: ``(N, L)`` long input ids (start token first), ``N = B · G``.
            memory: ``(B, S, d_model)`` encoder output.
            memory_mask: ``(B, S)`` bool, True = padding.

        Returns:
            ``(N, L, vocab_size)`` logits; position ``i`` predicts token ``i + 1``.
        """
        return self._run(tokens, memory, memory_mask, need_weights=False)[0]

    def forward_with_attention(
        self, tokens: Tensor, memory: Tensor, memory_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """:meth:`forward` plus the last layer's cross-attention averaged over heads:
        ``(N, L, S)``, each row a distribution over the valid memory cells."""
        return self._run(tokens, memory, memory_mask, need_weights=True)

    def start(self, memory: Tensor, memory_mask: Tensor) -> DecoderState:
        """Begin an incremental decode: memory ``(B, S, d_model)``, mask ``(B, S)`` True = pad."""
        return DecoderState(
            memory_kv=[self._memory_kv(layer, memory) for layer in self.transformer.layers],
            memory_bias=_attention_bias(memory_mask),
            self_kv=[None] * len(self.transformer.layers),
        )

    def step(self, tokens: Tensor, state: DecoderState) -> Tensor:
        """Feed one token per row, ``(N,)`` long at position ``state.position``; returns the
        ``(N, vocab_size)`` logits of the next token and advances ``state``.

        For inference: no dropout. The same computation as :meth:`forward` at the newest
        position, written with functional calls on ``(N, d_model)`` rows, since a step's
        matrices are small and per-call overhead would otherwise dominate on CPU.
        """
        t = state.position
        if state.positions is None or t >= len(state.positions):
            # The encoding of positions t … t + 63: what self.pos adds to a zero input.
            zeros = torch.zeros(1, 64, self.embed.embedding_dim, device=tokens.device)
            more = self.pos(zeros, start=t)[0]
            state.positions = (
                more if state.positions is None else torch.cat((state.positions, more))
            )
        if not state.layers:
            state.layers = [_StepWeights.of(layer) for layer in self.transformer.layers]
        norm = self.embed_norm
        x = F.layer_norm(self.embed.weight[tokens], norm.normalized_shape, norm.weight, norm.bias,
                         norm.eps) + state.positions[t]  # fmt: skip
        pre_norm = self.transformer.norm is not None
        for i, weights in enumerate(state.layers):
            x = self._step_layer(x, weights, state, i, pre_norm)
        state.position += 1
        if pre_norm:
            final = self.transformer.norm
            x = F.layer_norm(x, final.normalized_shape, final.weight, final.bias, final.eps)
        return F.linear(x, self.head.weight, self.head.bias)

    def _step_layer(
        self, x: Tensor, w: _StepWeights, state: DecoderState, index: int, pre_norm: bool
    ) -> Tensor:
        """One layer of :meth:`step` on ``(N, D)`` rows (post-norm as BTTR, or pre-norm)."""
        n, d, h = x.shape[0], self.embed.embedding_dim, self.nhead  # d, h: static when traced

        def self_attention(y: Tensor) -> Tensor:
            q, k, v = F.linear(y, *w.qkv).view(n, 3, h, 1, d // h).unbind(1)
            past = state.self_kv[index]
            if past is not None:
                k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
            state.self_kv[index] = (k, v)
            return F.linear(F.scaled_dot_product_attention(q, k, v).view(n, d), *w.self_out)

        def cross_attention(y: Tensor) -> Tensor:
            keys, values = state.memory_kv[index]
            b = keys.shape[0]
            q = F.linear(y, *w.cross_q).view(b, n // b, h, d // h).transpose(1, 2)
            mask = state.memory_bias.to(q.dtype)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
            return F.linear(out.transpose(1, 2).reshape(n, d), *w.cross_out)

        def feed_forward(y: Tensor) -> Tensor:
            return F.linear(F.relu(F.linear(y, *w.ff1)), *w.ff2)

        norms = [
            functools.partial(
                F.layer_norm, normalized_shape=(d,), weight=weight, bias=bias, eps=eps
            )
            for weight, bias, eps in w.norms
        ]
        return _sublayers(x, norms, (self_attention, cross_attention, feed_forward), pre_norm)

    def _embed(self, tokens: Tensor) -> Tensor:
        return self.pos(self.embed_norm(self.embed(tokens)))

    def _logits(self, x: Tensor) -> Tensor:
        if self.transformer.norm is not None:
            x = self.transformer.norm(x)
        return self.head(x)

    def _run(
        self, tokens: Tensor, memory: Tensor, memory_mask: Tensor, need_weights: bool
    ) -> tuple[Tensor, Tensor | None]:
        if tokens.shape[0] % memory.shape[0]:
            raise ValueError(
                f"{tokens.shape[0]} token rows are not a multiple of {memory.shape[0]} images"
            )
        x = self._embed(tokens)
        bias = _attention_bias(memory_mask)
        layers = self.transformer.layers
        weights = None
        for i, layer in enumerate(layers):
            last = need_weights and i == len(layers) - 1
            kv = self._memory_kv(layer, memory)
            x, weights = self._layer(layer, x, kv, bias, last)
        return self._logits(x), weights

    def _memory_kv(
        self, layer: nn.TransformerDecoderLayer, memory: Tensor
    ) -> tuple[Tensor, Tensor]:
        attn = layer.multihead_attn
        d = memory.shape[-1]
        kv = F.linear(memory, attn.in_proj_weight[d:], attn.in_proj_bias[d:])
        return _heads(kv, 2, self.nhead)

    def _layer(
        self,
        layer: nn.TransformerDecoderLayer,
        x: Tensor,
        memory_kv: tuple[Tensor, Tensor],
        bias: Tensor,
        need_weights: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """``nn.TransformerDecoderLayer.forward`` (both norm placements) on ``(N, L, D)``."""
        weights = None

        def cross(y: Tensor) -> Tensor:
            nonlocal weights
            out, weights = self._cross_attention(layer, y, memory_kv, bias, need_weights)
            return out

        sublayers = (
            lambda y: layer.dropout1(self._self_attention(layer, y)),
            lambda y: layer.dropout2(cross(y)),
            lambda y: self._feed_forward(layer, y),
        )
        norms = (layer.norm1, layer.norm2, layer.norm3)
        return _sublayers(x, norms, sublayers, layer.norm_first), weights

    def _self_attention(self, layer: nn.TransformerDecoderLayer, x: Tensor) -> Tensor:
        """Causal self-attention over ``(N, L, D)``."""
        attn = layer.self_attn
        q, k, v = _heads(F.linear(x, attn.in_proj_weight, attn.in_proj_bias), 3, self.nhead)
        dropout = attn.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        return attn.out_proj(_merge_heads(out))

    def _cross_attention(
        self,
        layer: nn.TransformerDecoderLayer,
        x: Tensor,
        memory_kv: tuple[Tensor, Tensor],
        bias: Tensor,
        need_weights: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """Attention of ``(N, L, D)`` queries to their image's memory; the ``G = N / B`` rows of
        an image become one query sequence of length ``G · L``."""
        attn = layer.multihead_attn
        n, length, d = x.shape
        k, v = memory_kv
        b = k.shape[0]
        q = F.linear(x, attn.in_proj_weight[:d], attn.in_proj_bias[:d])
        (q,) = _heads(q.reshape(b, n // b * length, d), 1, self.nhead)
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + bias
            probs = scores.softmax(dim=-1)
            out = probs @ v
            weights = probs.mean(dim=1).reshape(n, length, -1)
        else:
            dropout = attn.dropout if self.training else 0.0
            mask = bias.to(q.dtype)  # an additive mask must match the queries' dtype (autocast)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return attn.out_proj(_merge_heads(out).reshape(n, length, d)), weights

    @staticmethod
    def _feed_forward(layer: nn.TransformerDecoderLayer, x: Tensor) -> Tensor:
        return layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))))
