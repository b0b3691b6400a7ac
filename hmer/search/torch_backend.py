"""The search's network run by PyTorch: an :class:`~hmer.model.HmerModel` on any device.

:class:`TorchNetwork` implements :class:`hmer.search.network.Network`: the memory's keys/values
are computed once per search (:meth:`hmer.model.decoder.Decoder.start`) and each step feeds one
token per row (:meth:`~hmer.model.decoder.Decoder.step`). ``use_cache=False`` recomputes the
whole prefix at every step instead, as BTTR does (the memory's keys/values still shared by an
image's rows): same results, kept as the reference for tests and benchmarks.

:func:`greedy`, :func:`beam_search` and :func:`nbest` read a batch of image tensors in one call.
Decode with the model in eval mode (dropout off); nothing here changes the model's mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from hmer.model.hmer_model import HmerModel
from hmer.search import beam as search
from hmer.search.beam import Hypothesis
from hmer.search.network import Specials

__all__ = ["RecomputedSteps", "TorchMemory", "TorchNetwork", "beam_search", "greedy", "nbest"]


class TorchMemory(NamedTuple):
    """The encoder's output: ``memory`` ``(B, S, D)`` and ``mask`` ``(B, S)`` bool (True =
    padding)."""

    memory: Tensor
    mask: Tensor


class _CachedSteps:
    """Steps with the decoder's key/value cache (:class:`hmer.model.decoder.DecoderState`)."""

    def __init__(self, model: HmerModel, memory: TorchMemory) -> None:
        self.model, self.device = model, memory.memory.device
        self.state = model.decoder.start(memory.memory, memory.mask)

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        logits = self.model.decoder.step(torch.from_numpy(tokens).to(self.device), self.state)
        return torch.log_softmax(logits.float(), dim=-1).cpu().numpy()

    def select(self, rows: np.ndarray, images: np.ndarray | None = None) -> None:
        self.state.reorder(torch.from_numpy(rows).to(self.device))
        if images is not None:
            self.state.select_images(torch.from_numpy(images).to(self.device))


class RecomputedSteps:
    """Steps that run the teacher-forced decoder over the whole prefix (BTTR's way): the
    reference the cached steps are tested and benchmarked against."""

    def __init__(self, model: HmerModel, memory: TorchMemory) -> None:
        self.model, self.memory = model, memory
        self.prefix: Tensor | None = None  # (N, t) tokens so far

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        new = torch.from_numpy(tokens).to(self.memory.memory.device)[:, None]
        self.prefix = new if self.prefix is None else torch.cat((self.prefix, new), dim=1)
        logits = self.model.decoder(self.prefix, *self.memory)[:, -1]
        return torch.log_softmax(logits.float(), dim=-1).cpu().numpy()

    def select(self, rows: np.ndarray, images: np.ndarray | None = None) -> None:
        device = self.memory.memory.device
        self.prefix = self.prefix.index_select(0, torch.from_numpy(rows).to(device))
        if images is not None:
            index = torch.from_numpy(images).to(device)
            self.memory = TorchMemory(*(x.index_select(0, index) for x in self.memory))


class TorchNetwork:
    """An :class:`HmerModel` as the search's :class:`~hmer.search.network.Network`.

    Args:
        model: the model (in eval mode), on the device its inputs will be on.
        use_cache: decode incrementally (False: recompute the prefix at every step).
    """

    def __init__(self, model: HmerModel, use_cache: bool = True) -> None:
        self.model, self.use_cache = model, use_cache
        self.specials = Specials(model.pad_id, model.sos_id, model.eos_id)
        self.vocab_size = model.vocab_size

    def encode(self, images: Tensor, image_mask: Tensor | None) -> TorchMemory:
        """``(B, 1, H, W)`` float, ``(B, H, W)`` bool or None -> :class:`TorchMemory`."""
        return TorchMemory(*self.model.encode(images, image_mask))

    def batch_size(self, memory: TorchMemory) -> int:
        return memory.memory.shape[0]

    def start(self, memory: TorchMemory) -> _CachedSteps | RecomputedSteps:
        return (_CachedSteps if self.use_cache else RecomputedSteps)(self.model, memory)

    def score(self, memory: TorchMemory, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        device = memory.memory.device
        inputs_t, targets_t = (torch.from_numpy(x).to(device) for x in (inputs, targets))
        logp = torch.log_softmax(self.model.decoder(inputs_t, *memory).float(), dim=-1)
        picked = logp.gather(2, targets_t[:, :, None])[:, :, 0]
        summed = picked.masked_fill(targets_t == self.model.pad_id, 0.0).sum(1)
        return summed.cpu().numpy()


def _search_images(
    method: Callable[..., Any],
    model: HmerModel,
    images: Tensor,
    image_mask: Tensor | None,
    use_cache: bool,
    **settings: Any,
) -> Any:
    """Encode ``images`` and run the search ``method`` of :mod:`hmer.search.beam` on them."""
    network = TorchNetwork(model, use_cache)
    with torch.no_grad():
        return method(network, network.encode(images, image_mask), **settings)


def nbest(
    model: HmerModel,
    images: Tensor,
    image_mask: Tensor | None = None,
    *,
    use_cache: bool = True,
    **settings: Any,
) -> list[list[Hypothesis]]:
    """:func:`hmer.search.beam.nbest` (same ``settings``: beam, max_len, length_penalty,
    bidirectional, direction) of ``images`` ``(B, 1, H, W)`` float (ink 1 on 0) with
    ``image_mask`` ``(B, H, W)`` bool (True = padding, or None)."""
    return _search_images(search.nbest, model, images, image_mask, use_cache, **settings)


def beam_search(
    model: HmerModel,
    images: Tensor,
    image_mask: Tensor | None = None,
    *,
    use_cache: bool = True,
    **settings: Any,
) -> list[Hypothesis]:
    """:func:`hmer.search.beam.beam_search` of ``images`` (as :func:`nbest`)."""
    return _search_images(search.beam_search, model, images, image_mask, use_cache, **settings)


def greedy(
    model: HmerModel,
    images: Tensor,
    image_mask: Tensor | None = None,
    *,
    use_cache: bool = True,
    **settings: Any,
) -> list[Hypothesis]:
    """:func:`hmer.search.beam.greedy` (settings: max_len, direction) of ``images`` (as
    :func:`nbest`)."""
    return _search_images(search.greedy, model, images, image_mask, use_cache, **settings)
