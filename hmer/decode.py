"""Decoding: batched greedy and beam search with a key/value cache, BTTR's bidirectional rescoring.

All searches run a whole batch of images at once and decode one new token per hypothesis per step
(:meth:`hmer.model.decoder.Decoder.step`); the memory's keys/values are computed once per search,
and an image leaves the batch as soon as its search is done. One host sync per step decides that.
``use_cache=False`` recomputes the whole prefix at every step instead, as BTTR does (though the
memory's keys/values stay shared by an image's hypotheses): same results, kept as the reference
for tests and benchmarks.

Conventions:

- A direction's start/end tokens: L2R starts with ``sos`` and ends with ``eos``, R2L the reverse
  (see :mod:`hmer.model.hmer_model`). The padding id and the direction's start token are never
  emitted. Scores are natural-log probabilities, the end token included.
- Beam search follows BTTR: a beam of ``beam`` live hypotheses shrinks by one each time one ends,
  and the search of an image stops when ``beam`` hypotheses have ended (or at ``max_len`` tokens,
  where the live ones count as ended). A hypothesis of ``n`` tokens is ranked by
  ``log p / (n + 1) ** length_penalty``.
- Bidirectional search runs both directions, scores every ended hypothesis with the opposite
  direction too (one teacher-forced pass for the whole batch) and ranks by the average of the two
  log-probabilities, length-normalized as above.
- Decode with the model in eval mode (dropout off); nothing here changes the model's mode.

Where this does less work than BTTR, with the same results: ended hypotheses are not stepped
again (the rows of a step are the live hypotheses of the widest search); a hypothesis both
directions ended is not rescored (both log-probabilities are known); and :func:`beam_search`,
which wants only the best, never rescores a hypothesis whose upper bound cannot beat the best
score known (see :func:`_rescore`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hmer.model.hmer_model import Direction, HmerModel, reverse_padded

__all__ = [
    "Hypothesis",
    "attention_maps",
    "beam_search",
    "beam_search_from_memory",
    "greedy",
    "greedy_from_memory",
    "nbest",
    "nbest_from_memory",
]


@dataclass(frozen=True)
class Hypothesis:
    """A decoded expression: ``tokens`` (ids, reading order, no specials) and its ``score``
    (length-normalized log-probability, see the module docstring)."""

    tokens: list[int]
    score: float


def _start_end(model: HmerModel, direction: Direction) -> tuple[int, int]:
    if direction == "l2r":
        return model.sos_id, model.eos_id
    if direction == "r2l":
        return model.eos_id, model.sos_id
    raise ValueError(f"direction must be 'l2r' or 'r2l', got {direction!r}")


class _Stepper:
    """Next-token log-probabilities for ``N = B · G`` rows, fed one token per row per call.

    Rows and images can be reordered and dropped between calls (beam reordering, finished
    images), so that the work per step follows the hypotheses still searching.
    """

    def __init__(
        self, model: HmerModel, memory: Tensor, memory_mask: Tensor, use_cache: bool
    ) -> None:
        self.model = model
        self.memory, self.memory_mask = memory, memory_mask
        self.state = model.decoder.start(memory, memory_mask) if use_cache else None
        self.prefix: Tensor | None = None  # (N, t) tokens so far, without a cache

    def __call__(self, tokens: Tensor) -> Tensor:
        """``(N,)`` newest tokens -> ``(N, V)`` float32 log-probabilities of the next one."""
        if self.state is not None:
            logits = self.model.decoder.step(tokens, self.state)
        else:
            new = tokens[:, None]
            self.prefix = new if self.prefix is None else torch.cat((self.prefix, new), dim=1)
            logits = self.model.decoder(self.prefix, self.memory, self.memory_mask)[:, -1]
        return torch.log_softmax(logits.float(), dim=-1)

    def select(self, rows: Tensor, images: Tensor | None = None) -> None:
        """Row ``i`` continues old row ``rows[i]``; with ``images``, only those images (old
        indices, in order) remain, and ``rows`` must list the rows of exactly those images."""
        if self.state is not None:
            self.state.reorder(rows)
            if images is not None:
                self.state.select_images(images)
        else:
            self.prefix = self.prefix.index_select(0, rows)
            if images is not None:
                self.memory = self.memory.index_select(0, images)
                self.memory_mask = self.memory_mask.index_select(0, images)


def _directions(
    model: HmerModel, directions: tuple[Direction, ...], device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Per direction: start ids ``(D,)``, end ids ``(D,)``, and the ``(D, V)`` bool mask of ids
    never emitted (padding and the start token), built once per search."""
    starts, ends = zip(*(_start_end(model, d) for d in directions), strict=True)
    banned = torch.zeros(len(directions), model.vocab_size, dtype=torch.bool)
    banned[:, model.pad_id] = True
    banned[torch.arange(len(directions)), list(starts)] = True
    return (
        torch.tensor(starts, device=device),
        torch.tensor(ends, device=device),
        banned.to(device),
    )


@dataclass
class _Ended:
    """Ended hypotheses of one direction, ``K`` slots per image (slot order is arbitrary).

    ``tokens`` ``(B, K, T)`` long in decoding order (reversed for R2L), ``lengths`` ``(B, K)``,
    ``logp`` ``(B, K)`` float32 (-inf for an empty slot).
    """

    tokens: Tensor
    lengths: Tensor
    logp: Tensor


def _beam(
    model: HmerModel,
    memory: Tensor,
    memory_mask: Tensor,
    directions: tuple[Direction, ...],
    beam: int,
    max_len: int,
    use_cache: bool,
) -> list[_Ended]:
    """BTTR's shrinking beam search, batched: ``B`` images × ``D`` directions × ``beam`` slots.

    The directions of an image search side by side, in the same decoder steps (one pass over the
    weights per step for all of them). Search ``s = b · D + d`` is image ``b`` in direction
    ``d``; tensors indexed by search follow ``active`` (the searches of the images not done yet,
    dropped image by image); the ended buffers are indexed by the original search.
    """
    b, d, k = memory.shape[0], len(directions), beam
    device = memory.device
    starts, ends_ids, banned = _directions(model, directions, device)
    stepper = _Stepper(model, memory, memory_mask, use_cache)
    # Slot k of the ended buffers is a sink for candidates that do not end.
    ended_tokens = torch.full(
        (b * d, k + 1, max_len), model.pad_id, dtype=torch.long, device=device
    )
    ended_lengths = torch.zeros(b * d, k + 1, dtype=torch.long, device=device)
    ended_logp = torch.full((b * d, k + 1), float("-inf"), device=device)
    active = torch.arange(b * d, device=device)
    n_ended = torch.zeros(b * d, dtype=torch.long, device=device)
    scores = torch.zeros(b * d, 1, device=device)  # one live hypothesis (empty) per search
    history = torch.empty(b * d, 1, 0, dtype=torch.long, device=device)
    tokens = starts.repeat(b)
    rank = torch.arange(k, device=device)
    for t in range(max_len):
        width = scores.shape[1]  # slots per search: 1 at the first step, then at most beam
        logp = stepper(tokens).view(len(active), width, -1)
        logp = logp.masked_fill(banned[active % d][:, None, :], float("-inf"))
        vocab = logp.shape[-1]
        top, index = (scores[:, :, None] + logp).flatten(1).topk(k, dim=1)  # (S', K), sorted
        parent, token = index // vocab, index % vocab
        # BTTR: only the best (beam - ended) candidates survive this step.
        chosen = (rank < (k - n_ended)[:, None]) & top.isfinite()
        ends = chosen & (token == ends_ids[active % d][:, None])
        live = chosen & ~ends
        # Live candidates first (slot order is free): the dead ones can then be cut off below.
        order = _true_first(live)
        live, top, parent, token, ends = (
            x.gather(1, order) for x in (live, top, parent, token, ends)
        )
        history = torch.cat(
            (history.gather(1, parent[:, :, None].expand(-1, -1, t)), token[:, :, None]), 2
        )
        slot = torch.where(ends, n_ended[:, None] + ends.cumsum(1) - 1, k)
        ended_tokens[active[:, None], slot, :t] = history[:, :, :t]
        ended_lengths[active[:, None], slot] = t
        ended_logp[active[:, None], slot] = top
        n_ended = n_ended + ends.sum(1)
        scores = top.masked_fill(~live, float("-inf"))
        rows = parent + width * torch.arange(len(active), device=device)[:, None]
        searching = live.view(-1, d * k).any(1)  # per image still in the batch
        # The one host sync per step: how many images still search, and the most live
        # hypotheses of any search, the beam width of the next step. Slots beyond it are dead
        # and never stepped: BTTR's beam shrinks, and so does the work.
        n_searching, width = torch.stack((searching.sum(), live.sum(1).max())).tolist()
        if n_searching == 0:
            break
        scores, history, live, token, rows = (
            x[:, :width] for x in (scores, history, live, token, rows)
        )
        if n_searching < len(searching):  # drop the images that are done
            images = searching.nonzero()[:, 0]
            keep = (images[:, None] * d + torch.arange(d, device=device)).flatten()
            active, n_ended, scores, history, live, token, rows = (
                x[keep] for x in (active, n_ended, scores, history, live, token, rows)
            )
            stepper.select(rows.flatten(), images)
        else:
            stepper.select(rows.flatten())
        tokens = token.flatten()
    else:  # max_len reached: live hypotheses count as ended, in the free slots
        slot = torch.where(live, n_ended[:, None] + live.cumsum(1) - 1, k)
        ended_tokens[active[:, None], slot] = history
        ended_lengths[active[:, None], slot] = max_len
        ended_logp[active[:, None], slot] = scores
    longest = int(ended_lengths.max())
    ended_tokens = ended_tokens[:, :k, :longest].view(b, d, k, longest)
    ended_lengths, ended_logp = ended_lengths[:, :k].view(b, d, k), ended_logp[:, :k].view(b, d, k)
    return [_Ended(ended_tokens[:, i], ended_lengths[:, i], ended_logp[:, i]) for i in range(d)]


def _true_first(flags: Tensor) -> Tensor:
    """``(R, C)`` bool -> ``(R, C)`` long column order putting each row's True entries first,
    each group in its original order."""
    return flags.to(torch.uint8).argsort(dim=1, descending=True, stable=True)


def _sequence_logp(
    model: HmerModel,
    memory: Tensor,
    memory_mask: Tensor,
    tokens: Tensor,
    lengths: Tensor,
    direction: Tensor,
) -> Tensor:
    """Teacher-forced log-probability of each sequence, end token included, in one pass.

    Args:
        tokens: ``(B · G, T)`` reading-order ids, ``G`` rows per image.
        lengths: ``(B · G,)``.
        direction: ``(B · G,)`` bool, True = score right-to-left.

    Returns:
        ``(B · G,)`` float32.
    """
    l2r_in, l2r_out = model.sequences(tokens, lengths, "l2r")
    r2l_in, r2l_out = model.sequences(tokens, lengths, "r2l")
    inputs = torch.where(direction[:, None], r2l_in, l2r_in)
    targets = torch.where(direction[:, None], r2l_out, l2r_out)
    logp = torch.log_softmax(model.decoder(inputs, memory, memory_mask).float(), dim=-1)
    picked = logp.gather(2, targets[:, :, None])[:, :, 0]
    return picked.masked_fill(targets == model.pad_id, 0.0).sum(1)


def _rescore(
    model: HmerModel,
    memory: Tensor,
    memory_mask: Tensor,
    tokens: Tensor,
    lengths: Tensor,
    logp: Tensor,
    max_len: int,
    length_penalty: float,
    best_only: bool,
) -> Tensor:
    """BTTR's bidirectional score of each hypothesis: the mean of its log-probabilities in both
    directions, length-normalized.

    Args:
        tokens: ``(B, 2K, T)`` reading order: ``K`` slots found L2R, then ``K`` found R2L.
        lengths, logp: ``(B, 2K)``; ``logp`` is the finding search's own (-inf: empty slot).
        best_only: only the best hypothesis per image must be scored exactly.

    Returns:
        ``(B, 2K)`` float32 scores, -inf for empty slots (and with ``best_only``, for hypotheses
        that cannot be the best).

    Two savings, neither of which changes a result:

    - A hypothesis that both searches ended already has both log-probabilities.
    - With ``best_only``: the opposite log-probability is at most 0, so ``logp / 2`` (normalized)
      bounds a hypothesis's score from above; one whose bound does not beat the best score known
      cannot win and is never scored. The hypotheses with the two highest bounds per image are
      scored first, then only those still able to win.
    """
    k = logp.shape[1] // 2
    norm = (lengths + 1).float() ** length_penalty
    # Ended by its end token (not cut at max_len), so the search's score is the full logp.
    ended = logp.isfinite() & (lengths < max_len)
    same = (
        (tokens[:, :k, None] == tokens[:, None, k:]).all(-1)
        & (lengths[:, :k, None] == lengths[:, None, k:])
        & ended[:, :k, None]
        & ended[:, None, k:]
    )  # (B, K, K): L2R slot i and R2L slot j hold the same expression
    partner = torch.cat((k + same.int().argmax(2), same.int().argmax(1)), 1)
    has_partner = torch.cat((same.any(2), same.any(1)), 1)
    opposite = torch.where(has_partner, logp.gather(1, partner), float("-inf"))
    pending = logp.isfinite() & ~has_partner
    if not best_only:
        _score_opposite(model, memory, memory_mask, tokens, lengths, pending, opposite)
        return (logp + opposite) / 2 / norm
    bound = logp / 2 / norm
    for first_round in (True, False):
        best = ((logp + opposite) / 2 / norm).max(1).values
        candidates = pending & (bound > best[:, None])
        if first_round:
            top = bound.masked_fill(~candidates, float("-inf")).topk(2, dim=1).indices
            candidates &= torch.zeros_like(candidates).scatter_(1, top, True)
        _score_opposite(model, memory, memory_mask, tokens, lengths, candidates, opposite)
        pending &= ~candidates
    return (logp + opposite) / 2 / norm


def _score_opposite(
    model: HmerModel,
    memory: Tensor,
    memory_mask: Tensor,
    tokens: Tensor,
    lengths: Tensor,
    which: Tensor,
    opposite: Tensor,
) -> None:
    """Write into ``opposite`` (``(B, 2K)``) the log-probability of the hypotheses ``which``
    (``(B, 2K)`` bool) in the direction that did not find them, in one teacher-forced pass of
    ``B · G`` rows (``G``: the most of any image). ``tokens``, ``lengths``: as in
    :func:`_rescore`."""
    b, slots = which.shape
    width = int(which.sum(1).max())
    if width == 0:
        return
    order = _true_first(which)[:, :width]
    chosen = which.gather(1, order)
    scored = _sequence_logp(
        model,
        memory,
        memory_mask,
        tokens.gather(1, order[:, :, None].expand(-1, -1, tokens.shape[2])).flatten(0, 1),
        lengths.gather(1, order).flatten(),
        (order < slots // 2).flatten(),  # found L2R: score R2L
    ).view(b, width)
    rows = torch.arange(b, device=which.device)[:, None].expand(-1, width)
    opposite[rows[chosen], order[chosen]] = scored[chosen]


def _to_hypotheses(tokens: Tensor, lengths: Tensor, scores: Tensor) -> list[list[Hypothesis]]:
    """``(B, G, T)``, ``(B, G)``, ``(B, G)`` (reading order) -> per image, best first, unique."""
    order = scores.argsort(dim=1, descending=True, stable=True)
    tokens, lengths, scores = (
        x.gather(1, order.view(*order.shape, *[1] * (x.dim() - 2)).expand_as(x))
        for x in (tokens, lengths, scores)
    )
    result = []
    for seqs, ns, ss in zip(tokens.tolist(), lengths.tolist(), scores.tolist(), strict=True):
        seen: set[tuple[int, ...]] = set()
        hyps = []
        for seq, n, s in zip(seqs, ns, ss, strict=True):
            key = tuple(seq[:n])
            if s != float("-inf") and key not in seen:
                seen.add(key)
                hyps.append(Hypothesis(list(key), s))
        result.append(hyps)
    return result


@torch.no_grad()
def nbest(
    model: HmerModel,
    images: Tensor,
    image_mask: Tensor | None = None,
    *,
    beam: int = 10,
    max_len: int = 200,
    length_penalty: float = 1.0,
    bidirectional: bool = True,
    direction: Direction = "l2r",
    use_cache: bool = True,
) -> list[list[Hypothesis]]:
    """All ended hypotheses of a batched beam search, per image, best first, without duplicates.

    Args:
        images: ``(B, 1, H, W)`` float, ink 1 on 0.
        image_mask: ``(B, H, W)`` bool, True = padding (or None).
        beam: live hypotheses per image and direction.
        max_len: most tokens per hypothesis.
        length_penalty: exponent ``α`` of the ``(n + 1) ** α`` normalization.
        bidirectional: search both directions and rescore with the opposite one (BTTR);
            otherwise search ``direction`` only.
        use_cache: decode incrementally (False: recompute the prefix at every step).
    """
    memory, memory_mask = model.encode(images, image_mask)
    return nbest_from_memory(
        model,
        memory,
        memory_mask,
        beam=beam,
        max_len=max_len,
        length_penalty=length_penalty,
        bidirectional=bidirectional,
        direction=direction,
        use_cache=use_cache,
    )


@torch.no_grad()
def nbest_from_memory(
    model: HmerModel,
    memory: Tensor,
    memory_mask: Tensor,
    *,
    beam: int = 10,
    max_len: int = 200,
    length_penalty: float = 1.0,
    bidirectional: bool = True,
    direction: Direction = "l2r",
    use_cache: bool = True,
) -> list[list[Hypothesis]]:
    """:func:`nbest` from the encoder's output: memory ``(B, S, D)``, mask ``(B, S)``."""
    return _search(
        model,
        memory,
        memory_mask,
        beam,
        max_len,
        length_penalty,
        bidirectional,
        direction,
        use_cache,
        best_only=False,
    )


def beam_search(
    model: HmerModel,
    images: Tensor,
    image_mask: Tensor | None = None,
    *,
    beam: int = 10,
    max_len: int = 200,
    length_penalty: float = 1.0,
    bidirectional: bool = True,
    direction: Direction = "l2r",
    use_cache: bool = True,
) -> list[Hypothesis]:
    """The best hypothesis per image of :func:`nbest` (same arguments), found with less work:
    hypotheses that cannot be the best are not rescored."""
    memory, memory_mask = model.encode(images, image_mask)
    return beam_search_from_memory(
        model,
        memory,
        memory_mask,
        beam=beam,
        max_len=max_len,
        length_penalty=length_penalty,
        bidirectional=bidirectional,
        direction=direction,
        use_cache=use_cache,
    )


@torch.no_grad()
def beam_search_from_memory(
    model: HmerModel,
    memory: Tensor,
    memory_mask: Tensor,
    *,
    beam: int = 10,
    max_len: int = 200,
    length_penalty: float = 1.0,
    bidirectional: bool = True,
    direction: Direction = "l2r",
    use_cache: bool = True,
) -> list[Hypothesis]:
    """:func:`beam_search` from the encoder's output: memory ``(B, S, D)``, mask ``(B, S)``."""
    found = _search(
        model,
        memory,
        memory_mask,
        beam,
        max_len,
        length_penalty,
        bidirectional,
        direction,
        use_cache,
        best_only=True,
    )
    return [hyps[0] for hyps in found]


def _search(
    model: HmerModel,
    memory: Tensor,
    memory_mask: Tensor,
    beam: int,
    max_len: int,
    length_penalty: float,
    bidirectional: bool,
    direction: Direction,
    use_cache: bool,
    best_only: bool,
) -> list[list[Hypothesis]]:
    """Beam search in both directions (then rescored) or in ``direction``; hypotheses per
    image, best first."""
    if not 1 <= beam <= model.vocab_size or max_len < 1:
        raise ValueError(
            f"need 1 <= beam <= vocabulary size ({model.vocab_size}) and max_len >= 1, "
            f"got beam={beam}, max_len={max_len}"
        )
    directions: tuple[Direction, ...] = ("l2r", "r2l") if bidirectional else (direction,)
    found = _beam(model, memory, memory_mask, directions, beam, max_len, use_cache)
    b = memory.shape[0]
    width = max(e.tokens.shape[2] for e in found)
    tokens = []
    for d, e in zip(directions, found, strict=True):
        seqs = F.pad(e.tokens, (0, width - e.tokens.shape[2]), value=model.pad_id)
        if d == "r2l":
            seqs = reverse_padded(seqs.flatten(0, 1), e.lengths.flatten(), model.pad_id)
        tokens.append(seqs.view(b, beam, width))
    tokens = torch.cat(tokens, 1)
    lengths = torch.cat([e.lengths for e in found], 1)
    logp = torch.cat([e.logp for e in found], 1)
    if len(directions) == 2:
        scores = _rescore(
            model, memory, memory_mask, tokens, lengths, logp, max_len, length_penalty, best_only
        )
    else:
        scores = logp / (lengths + 1).float() ** length_penalty
    return _to_hypotheses(tokens, lengths, scores)


@torch.no_grad()
def greedy(
    model: HmerModel,
    images: Tensor,
    image_mask: Tensor | None = None,
    *,
    max_len: int = 200,
    direction: Direction = "l2r",
    use_cache: bool = True,
) -> list[Hypothesis]:
    """Batched greedy decoding in one direction; ``score`` = log p / (n + 1) (as a beam of 1).

    Args:
        images: ``(B, 1, H, W)`` float, ink 1 on 0.
        image_mask: ``(B, H, W)`` bool, True = padding (or None).
    """
    memory, memory_mask = model.encode(images, image_mask)
    return greedy_from_memory(
        model, memory, memory_mask, max_len=max_len, direction=direction, use_cache=use_cache
    )


@torch.no_grad()
def greedy_from_memory(
    model: HmerModel,
    memory: Tensor,
    memory_mask: Tensor,
    *,
    max_len: int = 200,
    direction: Direction = "l2r",
    use_cache: bool = True,
) -> list[Hypothesis]:
    """:func:`greedy` from the encoder's output: memory ``(B, S, D)``, mask ``(B, S)``."""
    b, device = memory.shape[0], memory.device
    starts, ends, banned = _directions(model, (direction,), device)
    stepper = _Stepper(model, memory, memory_mask, use_cache)
    active = torch.arange(b, device=device)  # images still decoding
    tokens = starts.expand(b)
    out = torch.full((b, max_len), model.pad_id, dtype=torch.long, device=device)
    lengths = torch.full((b,), max_len, dtype=torch.long, device=device)
    logp = torch.zeros(b, device=device)
    for t in range(max_len):
        best, tokens = stepper(tokens).masked_fill(banned, float("-inf")).max(dim=1)
        logp[active] += best
        ended = tokens == ends
        lengths[active] = torch.where(ended, t, lengths[active])
        out[active, t] = tokens.masked_fill(ended, model.pad_id)
        going = ~ended
        n_going = int(going.sum())  # the one host sync per step
        if n_going == 0:
            break
        if n_going < len(active):  # drop the images that are done
            keep = going.nonzero()[:, 0]
            active, tokens = active[keep], tokens[keep]
            stepper.select(keep, keep)
    longest = int(lengths.max())
    out = out[:, :longest]
    if direction == "r2l":
        out = reverse_padded(out, lengths, model.pad_id)
    scores = logp / (lengths + 1).float()
    return [h[0] for h in _to_hypotheses(out[:, None], lengths[:, None], scores[:, None])]


@torch.no_grad()
def attention_maps(
    model: HmerModel,
    image: Tensor,
    image_mask: Tensor | None,
    tokens: list[int],
    direction: Direction = "l2r",
) -> Tensor:
    """Where the decoder looked while predicting each token of one hypothesis.

    Args:
        image: ``(1, H, W)`` or ``(1, 1, H, W)`` float, ink 1 on 0.
        image_mask: ``(H, W)`` / ``(1, H, W)`` bool, True = padding, or None.
        tokens: the hypothesis, reading order, no specials.
        direction: the direction that predicts the tokens (teacher-forced).

    Returns:
        ``(len(tokens), h, w)`` float32 on the feature grid (stride ``model.encoder.backbone
        .stride``): map ``i`` is the last decoder layer's cross-attention, averaged over heads,
        of the step that predicted ``tokens[i]``; it sums to 1 and is 0 on padding cells.
    """
    images = image.reshape(1, 1, *image.shape[-2:])
    mask = None if image_mask is None else image_mask.reshape(1, *image_mask.shape[-2:])
    grid, grid_mask = model.encoder.forward_features(images, mask)
    ids = torch.tensor([tokens], dtype=torch.long, device=images.device)
    lengths = torch.tensor([len(tokens)], device=images.device)
    inputs, _ = model.sequences(ids, lengths, direction)
    _, weights = model.decoder.forward_with_attention(
        inputs, grid.flatten(1, 2), grid_mask.flatten(1)
    )
    maps = weights[0, : len(tokens)].float()  # step i predicts token i of the direction
    if direction == "r2l":
        maps = maps.flip(0)
    return maps.view(len(tokens), *grid.shape[1:3])
