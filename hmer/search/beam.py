"""The one search: batched greedy and beam search, n-best, BTTR's bidirectional rescoring.

Written once over a :class:`~hmer.search.network.Network`, so PyTorch and onnxruntime run the
same code (:mod:`hmer.search.torch_backend`, :mod:`hmer.search.onnx_backend`). The bookkeeping
is numpy on the host; a step exchanges token ids and log-probabilities with the backend (the one
host-device sync per step), and an image leaves the batch as soon as its search is done.

Conventions:

- Scores are natural-log probabilities, the end token included. The padding id and the
  direction's start token are never emitted.
- Beam search follows BTTR: a beam of ``beam`` live hypotheses shrinks by one each time one ends,
  and the search of an image stops when ``beam`` hypotheses have ended (or at ``max_len`` tokens,
  where the live ones count as ended). A hypothesis of ``n`` tokens is ranked by
  ``log p / (n + 1) ** length_penalty``.
- Bidirectional search runs both directions side by side in the same decoder steps, scores every
  ended hypothesis with the opposite direction too (one teacher-forced pass for the whole batch)
  and ranks by the average of the two log-probabilities, length-normalized as above.

Where this does less work than BTTR, with the same results: ended hypotheses are not stepped
again (the rows of a step are the live hypotheses of the widest search); a hypothesis both
directions ended is not rescored (both log-probabilities are known); and :func:`beam_search`,
which wants only the best, never rescores a hypothesis whose upper bound cannot beat the best
score known (see :func:`_rescore`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hmer.search.network import Direction, Network, Specials, teacher_forced

__all__ = ["Hypothesis", "beam_search", "greedy", "nbest"]


@dataclass(frozen=True)
class Hypothesis:
    """A decoded expression: ``tokens`` (ids, reading order, no specials) and its ``score``
    (length-normalized log-probability, see the module docstring)."""

    tokens: list[int]
    score: float


def _directions(
    specials: Specials, directions: tuple[str, ...], vocab_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per direction: start ids ``(D,)``, end ids ``(D,)``, and the ``(D, V)`` bool mask of ids
    never emitted (padding and the start token)."""
    starts, ends = zip(*(specials.start_end(d) for d in directions), strict=True)
    banned = np.zeros((len(directions), vocab_size), bool)
    banned[:, specials.pad] = True
    banned[np.arange(len(directions)), list(starts)] = True
    return np.array(starts, np.int64), np.array(ends, np.int64), banned


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    """``(R, C)`` -> ``(R, k)`` column indices of each row's ``k`` largest values, largest
    first (ties: lower index first; NaN ranks below everything)."""
    if k < values.shape[1]:
        index = np.argpartition(-values, k - 1, axis=1)[:, :k]
    else:
        index = np.broadcast_to(np.arange(values.shape[1]), values.shape)
    order = np.lexsort((index, -np.take_along_axis(values, index, 1)))
    return np.take_along_axis(index, order, 1)


def _true_first(flags: np.ndarray) -> np.ndarray:
    """``(R, C)`` bool -> ``(R, C)`` column order putting each row's True entries first, each
    group in its original order."""
    return np.argsort(~flags, axis=1, kind="stable")


def _reverse_padded(tokens: np.ndarray, lengths: np.ndarray, pad: int) -> np.ndarray:
    """Reverse the first ``lengths[...]`` tokens of each ``(..., T)`` row; padding stays after."""
    index = lengths[..., None] - 1 - np.arange(tokens.shape[-1])
    picked = np.take_along_axis(tokens, np.maximum(index, 0), -1)
    return np.where(index >= 0, picked, pad)


def _beam(
    network: Network, memory: Any, directions: tuple[str, ...], beam: int, max_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BTTR's shrinking beam search, batched: ``B`` images × ``D`` directions × ``beam`` slots.

    Search ``s = b · D + d`` is image ``b`` in direction ``d``; arrays indexed by search follow
    ``active`` (the searches of the images not done yet, dropped image by image); the ended
    buffers are indexed by the original search.

    Returns:
        Per image, the ended hypotheses of every direction (``beam`` slots each, directions in
        order, slot order arbitrary): ``tokens`` ``(B, D · beam, T)`` in decoding order
        (reversed for R2L), ``lengths`` ``(B, D · beam)``, ``logp`` ``(B, D · beam)`` float32
        (-inf: an empty slot).
    """
    b, d, k = network.batch_size(memory), len(directions), beam
    pad = network.specials.pad
    starts, end_ids, banned = _directions(network.specials, directions, network.vocab_size)
    steps = network.start(memory)
    # Slot k of the ended buffers is a sink for candidates that do not end.
    ended_tokens = np.full((b * d, k + 1, max_len), pad, np.int64)
    ended_lengths = np.zeros((b * d, k + 1), np.int64)
    ended_logp = np.full((b * d, k + 1), -np.inf, np.float32)
    active = np.arange(b * d)
    n_ended = np.zeros(b * d, np.int64)
    scores = np.zeros((b * d, 1), np.float32)  # one live hypothesis (empty) per search
    history = np.zeros((b * d, 1, 0), np.int64)
    tokens = np.tile(starts, b)
    rank = np.arange(k)
    for t in range(max_len):
        width = scores.shape[1]  # slots per search: 1 at the first step, then at most beam
        logp = steps(tokens).reshape(len(active), width, -1)
        logp = np.where(banned[active % d][:, None, :], np.float32(-np.inf), logp)
        vocab = logp.shape[-1]
        candidates = (scores[:, :, None] + logp).reshape(len(active), -1)
        index = _top_k(candidates, k)  # (S', K), best first
        top = np.take_along_axis(candidates, index, 1)
        parent, token = index // vocab, index % vocab
        # BTTR: only the best (beam - ended) candidates survive this step.
        chosen = (rank < (k - n_ended)[:, None]) & np.isfinite(top)
        ends = chosen & (token == end_ids[active % d][:, None])
        live = chosen & ~ends
        # Live candidates first (slot order is free): the dead ones can then be cut off below.
        order = _true_first(live)
        live, top, parent, token, ends = (
            np.take_along_axis(x, order, 1) for x in (live, top, parent, token, ends)
        )
        history = np.concatenate(
            (np.take_along_axis(history, parent[:, :, None], 1), token[:, :, None]), 2
        )
        slot = np.where(ends, n_ended[:, None] + ends.cumsum(1) - 1, k)
        ended_tokens[active[:, None], slot, :t] = history[:, :, :t]
        ended_lengths[active[:, None], slot] = t
        ended_logp[active[:, None], slot] = top
        n_ended = n_ended + ends.sum(1)
        scores = np.where(live, top, np.float32(-np.inf))
        rows = parent + width * np.arange(len(active))[:, None]
        searching = live.reshape(-1, d * k).any(1)  # per image still in the batch
        if not searching.any():
            break
        # The most live hypotheses of any search is the next step's beam width: slots beyond
        # it are dead and never stepped. BTTR's beam shrinks, and so does the work.
        width = int(live.sum(1).max())
        scores, history, live, token, rows = (
            x[:, :width] for x in (scores, history, live, token, rows)
        )
        if not searching.all():  # drop the images that are done
            images = np.nonzero(searching)[0]
            keep = (images[:, None] * d + np.arange(d)).ravel()
            active, n_ended, scores, history, live, token, rows = (
                x[keep] for x in (active, n_ended, scores, history, live, token, rows)
            )
            steps.select(rows.ravel(), images)
        else:
            steps.select(rows.ravel())
        tokens = token.ravel()
    else:  # max_len reached: live hypotheses count as ended, in the free slots
        slot = np.where(live, n_ended[:, None] + live.cumsum(1) - 1, k)
        ended_tokens[active[:, None], slot] = history
        ended_lengths[active[:, None], slot] = max_len
        ended_logp[active[:, None], slot] = scores
    longest = int(ended_lengths.max())
    shape = (b, d * k)
    return (
        ended_tokens[:, :k, :longest].reshape(*shape, longest),
        ended_lengths[:, :k].reshape(shape),
        ended_logp[:, :k].reshape(shape),
    )


def _rescore(
    network: Network,
    memory: Any,
    tokens: np.ndarray,
    lengths: np.ndarray,
    logp: np.ndarray,
    max_len: int,
    length_penalty: float,
    best_only: bool,
) -> np.ndarray:
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
    norm = (lengths + 1).astype(np.float32) ** np.float32(length_penalty)
    # Ended by its end token (not cut at max_len), so the search's score is the full logp.
    ended = np.isfinite(logp) & (lengths < max_len)
    same = (
        (tokens[:, :k, None] == tokens[:, None, k:]).all(-1)
        & (lengths[:, :k, None] == lengths[:, None, k:])
        & ended[:, :k, None]
        & ended[:, None, k:]
    )  # (B, K, K): L2R slot i and R2L slot j hold the same expression
    partner = np.concatenate((k + same.argmax(2), same.argmax(1)), 1)
    has_partner = np.concatenate((same.any(2), same.any(1)), 1)
    opposite = np.where(has_partner, np.take_along_axis(logp, partner, 1), np.float32(-np.inf))
    pending = np.isfinite(logp) & ~has_partner
    if not best_only:
        _score_opposite(network, memory, tokens, lengths, pending, opposite)
        return (logp + opposite) / 2 / norm
    bound = logp / 2 / norm
    for first_round in (True, False):
        best = ((logp + opposite) / 2 / norm).max(1)
        candidates = pending & (bound > best[:, None])
        if first_round:
            top = np.argsort(-np.where(candidates, bound, -np.inf), axis=1, kind="stable")[:, :2]
            first = np.zeros_like(candidates)
            np.put_along_axis(first, top, True, 1)
            candidates &= first
        _score_opposite(network, memory, tokens, lengths, candidates, opposite)
        pending &= ~candidates
    return (logp + opposite) / 2 / norm


def _score_opposite(
    network: Network,
    memory: Any,
    tokens: np.ndarray,
    lengths: np.ndarray,
    which: np.ndarray,
    opposite: np.ndarray,
) -> None:
    """Write into ``opposite`` (``(B, 2K)``) the log-probability of the hypotheses ``which``
    (``(B, 2K)`` bool) in the direction that did not find them, in one teacher-forced pass of
    ``B · G`` rows (``G``: the most of any image). ``tokens``, ``lengths``: as in
    :func:`_rescore`."""
    b, slots = which.shape
    width = int(which.sum(1).max(initial=0))
    if width == 0:
        return
    order = _true_first(which)[:, :width]
    chosen = np.take_along_axis(which, order, 1)
    picked = np.take_along_axis(tokens, order[:, :, None], 1)
    picked_lengths = np.take_along_axis(lengths, order, 1)
    sequences = [picked[i, j, : picked_lengths[i, j]] for i in range(b) for j in range(width)]
    found_l2r = (order < slots // 2).ravel()  # found L2R: score R2L
    inputs, targets = teacher_forced(
        sequences, found_l2r, network.specials, width=tokens.shape[2] + 1
    )
    scored = network.score(memory, inputs, targets).reshape(b, width)
    rows = np.broadcast_to(np.arange(b)[:, None], (b, width))
    opposite[rows[chosen], order[chosen]] = scored[chosen]


def _to_hypotheses(
    tokens: np.ndarray, lengths: np.ndarray, scores: np.ndarray
) -> list[list[Hypothesis]]:
    """``(B, G, T)``, ``(B, G)``, ``(B, G)`` (reading order) -> per image, best first, unique.
    An image with no finite score (a network that returns NaN) gets one hypothesis: no tokens,
    score -inf."""
    result = []
    for seqs, ns, ss in zip(tokens, lengths, scores, strict=True):
        seen: set[tuple[int, ...]] = set()
        hyps = []
        for j in np.argsort(-ss, kind="stable"):
            key = tuple(int(x) for x in seqs[j, : ns[j]])
            if np.isfinite(ss[j]) and key not in seen:
                seen.add(key)
                hyps.append(Hypothesis(list(key), float(ss[j])))
        result.append(hyps or [Hypothesis([], float("-inf"))])
    return result


def nbest(
    network: Network,
    memory: Any,
    *,
    beam: int = 10,
    max_len: int = 200,
    length_penalty: float = 1.0,
    bidirectional: bool = True,
    direction: Direction = "l2r",
    best_only: bool = False,
) -> list[list[Hypothesis]]:
    """All ended hypotheses of a batched beam search, per image, best first, without duplicates
    (at least one: an image whose every hypothesis failed gets no tokens and a score of -inf).

    Args:
        memory: ``network.encode(...)`` of ``B`` images.
        beam: live hypotheses per image and direction (1 … vocabulary size).
        max_len: most tokens per hypothesis.
        length_penalty: exponent ``α`` of the ``(n + 1) ** α`` normalization.
        bidirectional: search both directions and rescore with the opposite one (BTTR);
            otherwise search ``direction`` only.
        best_only: the first hypothesis is still the best, but those that cannot beat it are
            left out unscored (what :func:`beam_search` wants: less work).
    """
    if not 1 <= beam <= network.vocab_size or max_len < 1:
        raise ValueError(
            f"need 1 <= beam <= vocabulary size ({network.vocab_size}) and max_len >= 1, "
            f"got beam={beam}, max_len={max_len}"
        )
    directions: tuple[str, ...] = ("l2r", "r2l") if bidirectional else (direction,)
    tokens, lengths, logp = _beam(network, memory, directions, beam, max_len)
    r2l = np.repeat(np.array([d == "r2l" for d in directions]), beam)
    reading = np.where(
        r2l[None, :, None], _reverse_padded(tokens, lengths, network.specials.pad), tokens
    )
    if bidirectional:
        scores = _rescore(
            network, memory, reading, lengths, logp, max_len, length_penalty, best_only
        )
    else:
        scores = logp / (lengths + 1).astype(np.float32) ** np.float32(length_penalty)
    return _to_hypotheses(reading, lengths, scores)


def beam_search(
    network: Network,
    memory: Any,
    *,
    beam: int = 10,
    max_len: int = 200,
    length_penalty: float = 1.0,
    bidirectional: bool = True,
    direction: Direction = "l2r",
) -> list[Hypothesis]:
    """The best hypothesis per image of :func:`nbest` (same arguments), found with less work:
    hypotheses that cannot be the best are not rescored. An image whose every hypothesis failed
    (a network that returns NaN) gets no tokens and a score of -inf."""
    found = nbest(
        network,
        memory,
        beam=beam,
        max_len=max_len,
        length_penalty=length_penalty,
        bidirectional=bidirectional,
        direction=direction,
        best_only=True,
    )
    return [hyps[0] for hyps in found]


def greedy(
    network: Network, memory: Any, *, max_len: int = 200, direction: Direction = "l2r"
) -> list[Hypothesis]:
    """Batched greedy decoding in one direction; ``score`` = log p / (n + 1) (as a beam of 1).

    Args:
        memory: ``network.encode(...)`` of ``B`` images.
    """
    if max_len < 1:
        raise ValueError(f"need max_len >= 1, got {max_len}")
    b, pad = network.batch_size(memory), network.specials.pad
    starts, ends, banned = _directions(network.specials, (direction,), network.vocab_size)
    steps = network.start(memory)
    active = np.arange(b)  # images still decoding
    tokens = np.repeat(starts, b)
    out = np.full((b, max_len), pad, np.int64)
    lengths = np.full(b, max_len, np.int64)
    logp = np.zeros(b, np.float32)
    for t in range(max_len):
        step_logp = np.where(banned, np.float32(-np.inf), steps(tokens))
        tokens = step_logp.argmax(1)
        logp[active] += np.take_along_axis(step_logp, tokens[:, None], 1)[:, 0]
        ended = tokens == ends[0]
        lengths[active] = np.where(ended, t, lengths[active])
        out[active, t] = np.where(ended, pad, tokens)
        if ended.all():
            break
        if ended.any():  # drop the images that are done
            keep = np.nonzero(~ended)[0]
            active, tokens = active[keep], tokens[keep]
            steps.select(keep, keep)
    out = out[:, : int(lengths.max())]
    if direction == "r2l":
        out = _reverse_padded(out, lengths, pad)
    scores = logp / (lengths + 1).astype(np.float32)
    return [h[0] for h in _to_hypotheses(out[:, None], lengths[:, None], scores[:, None])]
