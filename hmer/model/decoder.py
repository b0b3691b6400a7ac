"""Transformer decoder over LaTeX tokens: teacher-forced passes and cached incremental steps.

The weights live in PyTorch's own :class:`torch.nn.TransformerDecoder` (batch-first layers), so a
state dict is the familiar one; :func:`_decoder_layer` reads those weights directly and calls
:func:`torch.nn.functional.scaled_dot_product_attention`. That one function is the layer, used
two ways:

- training / teacher forcing (:meth:`Decoder.forward`): all positions at once, causal
  self-attention (``is_causal``: flash kernels on GPU; no target padding mask is needed because
  padding only ever follows a sequence's real tokens and its outputs are ignored), dropout as in
  ``nn.TransformerDecoderLayer``;
- incremental decoding (:meth:`Decoder.step`): one new position per row, attending to the
  self-attention keys/values cached per layer plus its own, the memory keys/values computed once
  per search (:meth:`Decoder.start`), no dropout. Tests check that both give the same logits.

The layer makes functional calls only, on weights gathered once (:class:`_LayerWeights`): a step's
matrices are small, so per-call overhead of modules would otherwise dominate on CPU.

Rows and images: the memory holds ``B`` images and the token batch ``N = B · G`` rows, the ``G``
rows of image ``b`` being ``b·G … b·G + G - 1`` (two directions in training, beams in search).
Cross-attention folds the ``G`` rows of an image into its query length, so the memory is never
repeated: its keys/values are ``(B, heads, S, head_dim)`` whatever ``G`` is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hmer.model.pos_enc import PositionEncoding1D

__all__ = ["Decoder", "DecoderState"]


class _LayerWeights(NamedTuple):
    """One ``nn.TransformerDecoderLayer`` as :func:`_decoder_layer` reads it: ``(weight, bias)``
    of each projection (the cross-attention's query rows sliced out of its input projection),
    the ``F.layer_norm`` arguments (after the input) of each norm, dropout rates, activation, norm
    placement. Gathered once per search for :meth:`Decoder.step` (a step then calls no module and
    slices nothing), once per pass for :meth:`Decoder.forward`."""

    nhead: int
    head_dim: int
    self_qkv: tuple[Tensor, Tensor]
    self_out: tuple[Tensor, Tensor]
    cross_q: tuple[Tensor, Tensor]
    cross_out: tuple[Tensor, Tensor]
    ff1: tuple[Tensor, Tensor]
    ff2: tuple[Tensor, Tensor]
    norms: tuple[tuple[tuple[int, ...], Tensor, Tensor, float], ...]
    activation: Callable[[Tensor], Tensor]
    attn_drop: tuple[float, float]
    proj_drop: tuple[float, float, float]
    ff_drop: float
    norm_first: bool

    @classmethod
    def of(cls, layer: nn.TransformerDecoderLayer) -> _LayerWeights:
        self_attn, cross = layer.self_attn, layer.multihead_attn
        d = self_attn.embed_dim
        norms = (layer.norm1, layer.norm2, layer.norm3)
        return cls(
            nhead=self_attn.num_heads,
            head_dim=self_attn.head_dim,
            self_qkv=(self_attn.in_proj_weight, self_attn.in_proj_bias),
            self_out=(self_attn.out_proj.weight, self_attn.out_proj.bias),
            cross_q=(cross.in_proj_weight[:d], cross.in_proj_bias[:d]),
            cross_out=(cross.out_proj.weight, cross.out_proj.bias),
            ff1=(layer.linear1.weight, layer.linear1.bias),
            ff2=(layer.linear2.weight, layer.linear2.bias),
            norms=tuple((n.normalized_shape, n.weight, n.bias, n.eps) for n in norms),
            activation=layer.activation,
            attn_drop=(self_attn.dropout, cross.dropout),
            proj_drop=(layer.dropout1.p, layer.dropout2.p, layer.dropout3.p),
            ff_drop=layer.dropout.p,
            norm_first=layer.norm_first,
        )


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
    layers: list[_LayerWeights] = field(default_factory=list)

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


def _decoder_layer(
    w: _LayerWeights,
    x: Tensor,
    past: tuple[Tensor, Tensor] | None,
    memory_kv: tuple[Tensor, Tensor],
    memory_bias: Tensor,
    *,
    training: bool = False,
    need_weights: bool = False,
) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor | None]:
    """``nn.TransformerDecoderLayer.forward`` (either norm placement) on the new positions of
    ``N`` rows: self-attention, cross-attention to the rows' images, feed-forward.

    Args:
        x: ``(N, L, D)`` inputs of the new positions.
        past: self-attention ``(keys, values)``, each ``(N, heads, t, head_dim)``, of the ``t``
            positions before them (the cache of :meth:`Decoder.step`, one new position: ``L = 1``),
            or None: ``x`` is the whole sequence, attended causally.
        memory_kv: cross-attention ``(keys, values)``, each ``(B, heads, S, head_dim)``; the
            ``G = N / B`` rows of an image become one query sequence of length ``G · L``.
        memory_bias: ``(B, 1, 1, S)`` float32 attention bias, ``-inf`` on padding cells.
        training: apply dropout.
        need_weights: also return the cross-attention averaged over heads (explicit softmax).

    Returns:
        ``(N, L, D)`` outputs; self-attention ``(keys, values)`` of all ``t + L`` positions, each
        ``(N, heads, t + L, head_dim)``; cross-attention weights ``(N, L, S)`` or None.
    """
    n, length = x.shape[:2]
    h, head_dim = w.nhead, w.head_dim
    d = h * head_dim
    self_drop, cross_drop = w.attn_drop if training else (0.0, 0.0)
    x = x.reshape(n * length, d)  # the residual stream as rows: no reshaping inside F.linear

    y = _sublayer_input(x, w.norms[0], w.norm_first)
    q, k, v = _heads(F.linear(y, *w.self_qkv), n, 3, h, head_dim)
    if past is not None:
        k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
    y = F.scaled_dot_product_attention(q, k, v, dropout_p=self_drop, is_causal=past is None)
    y = F.linear(y.transpose(1, 2).reshape(n * length, d), *w.self_out)
    x = _residual(x, _dropout(y, w.proj_drop[0], training), w.norms[0], w.norm_first)

    y = _sublayer_input(x, w.norms[1], w.norm_first)
    keys, values = memory_kv
    q = F.linear(y, *w.cross_q).view(keys.shape[0], -1, h, head_dim).transpose(1, 2)
    weights = None
    if need_weights:
        scores = (q @ keys.transpose(-1, -2)) / math.sqrt(head_dim) + memory_bias
        probs = scores.softmax(dim=-1)
        y = probs @ values
        weights = probs.mean(dim=1).reshape(n, length, -1)
    else:
        mask = memory_bias.to(q.dtype)  # an additive mask must match the queries' dtype (autocast)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, dropout_p=cross_drop)
    y = F.linear(y.transpose(1, 2).reshape(n * length, d), *w.cross_out)
    x = _residual(x, _dropout(y, w.proj_drop[1], training), w.norms[1], w.norm_first)

    y = _sublayer_input(x, w.norms[2], w.norm_first)
    y = _dropout(w.activation(F.linear(y, *w.ff1)), w.ff_drop, training)
    y = F.linear(y, *w.ff2)
    x = _residual(x, _dropout(y, w.proj_drop[2], training), w.norms[2], w.norm_first)
    return x.view(n, length, d), (k, v), weights


def _sublayer_input(
    x: Tensor, norm: tuple[tuple[int, ...], Tensor, Tensor, float], norm_first: bool
) -> Tensor:
    """What a sublayer reads: ``x`` normalized (pre-norm) or ``x`` itself (post-norm, BTTR)."""
    return F.layer_norm(x, *norm) if norm_first else x


def _residual(
    x: Tensor, y: Tensor, norm: tuple[tuple[int, ...], Tensor, Tensor, float], norm_first: bool
) -> Tensor:
    """The residual sum of ``x`` and a sublayer's output ``y``, normalized after (post-norm)."""
    return x + y if norm_first else F.layer_norm(x + y, *norm)


def _dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout``, no call at all at inference (a step makes a dozen)."""
    return F.dropout(x, p, training=True) if training and p > 0 else x


def _attention_bias(memory_mask: Tensor) -> Tensor:
    """``(B, S)`` bool, True = padding -> ``(B, 1, 1, S)`` float32, 0 or ``-inf``: an additive
    mask (cheaper than a bool mask in ``scaled_dot_product_attention`` on CPU)."""
    bias = torch.zeros(memory_mask.shape, device=memory_mask.device)
    return bias.masked_fill_(memory_mask, float("-inf"))[:, None, None, :]


def _heads(x: Tensor, batch: int, n: int, nhead: int, head_dim: int) -> tuple[Tensor, ...]:
    """``(batch, L, n · heads · head_dim)`` or the same as ``(batch · L, …)`` rows -> ``n``
    tensors ``(batch, heads, L, head_dim)``."""
    x = x.view(batch, -1, n, nhead, head_dim)
    return x.permute(2, 0, 3, 1, 4).unbind(0)


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
        position (:func:`_decoder_layer` on one position per row, attending to the cache).
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
            state.layers = [_LayerWeights.of(layer) for layer in self.transformer.layers]
        norm = self.embed_norm
        x = F.layer_norm(self.embed.weight[tokens], norm.normalized_shape, norm.weight, norm.bias,
                         norm.eps) + state.positions[t]  # fmt: skip
        x = x[:, None]
        for i, weights in enumerate(state.layers):
            x, state.self_kv[i], _ = _decoder_layer(
                weights, x, state.self_kv[i], state.memory_kv[i], state.memory_bias
            )
        state.position += 1
        x = x[:, 0]
        if self.transformer.norm is not None:
            final = self.transformer.norm
            x = F.layer_norm(x, final.normalized_shape, final.weight, final.bias, final.eps)
        return F.linear(x, self.head.weight, self.head.bias)

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
            x, _, weights = _decoder_layer(
                _LayerWeights.of(layer),
                x,
                None,
                self._memory_kv(layer, memory),
                bias,
                training=self.training,
                need_weights=need_weights and i == len(layers) - 1,
            )
        return self._logits(x), weights

    def _memory_kv(
        self, layer: nn.TransformerDecoderLayer, memory: Tensor
    ) -> tuple[Tensor, Tensor]:
        attn = layer.multihead_attn
        d = memory.shape[-1]
        kv = F.linear(memory, attn.in_proj_weight[d:], attn.in_proj_bias[d:])
        return _heads(kv, memory.shape[0], 2, self.nhead, d // self.nhead)
