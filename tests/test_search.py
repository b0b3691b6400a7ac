"""The search (hmer.search) run by PyTorch: cached == recomputed, beam 1 == greedy, batch ==
alone, deterministic, rescoring; and the teacher-forced layout it scores with."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hmer.model import HmerModel, ModelConfig, directional_sequences
from hmer.model.attention import attention_maps
from hmer.search import beam as search
from hmer.search.network import Specials, teacher_forced
from hmer.search.torch_backend import TorchNetwork, beam_search, greedy, nbest

PAD, SOS, EOS = 0, 1, 2
VOCAB = 12
SIZES = [(40, 72), (33, 50), (48, 41)]


@pytest.fixture(scope="module")
def model() -> HmerModel:
    """A random tiny model; its hypotheses end after 0 to ~6 tokens. Its BatchNorm statistics
    come from a few images, so that its backbone does not map padding to zero by chance."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        growth_rate=8,
        block_config=[2, 2, 2],
        bn_size=2,
        d_model=32,
        nhead=4,
        num_decoder_layers=2,
        dim_feedforward=64,
    )
    model = HmerModel(cfg, VOCAB).train()
    with torch.no_grad():
        for _ in range(3):
            model.encode(torch.rand(4, 1, 40, 60))
        model.decoder.head.weight.mul_(4)  # peakier distributions: fewer near-ties
    model.eval()
    return model


def _image(size: tuple[int, int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, *size, generator=generator)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    height, width = max(s[0] for s in SIZES), max(s[1] for s in SIZES)
    images = torch.zeros(len(SIZES), 1, height, width)
    mask = torch.ones(len(SIZES), height, width, dtype=torch.bool)
    for i, (h, w) in enumerate(SIZES):
        images[i, :, :h, :w] = _image((h, w), i)
        mask[i, :h, :w] = False
    return images, mask


def _assert_same(a, b, atol=1e-4):
    assert [h.tokens for h in a] == [h.tokens for h in b]
    assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=atol)


def _teacher_forced_logp(model, images, mask, index, tokens, direction) -> float:
    memory, memory_mask = model.encode(images[index : index + 1], mask[index : index + 1])
    ids = torch.tensor([tokens], dtype=torch.long).view(1, len(tokens))
    inputs, targets = directional_sequences(ids, torch.tensor([len(tokens)]), direction)
    logp = model.decoder(inputs, memory, memory_mask).log_softmax(-1)
    return logp.gather(2, targets[:, :, None]).sum().item()


@pytest.mark.parametrize("bidirectional", [True, False])
def test_cached_search_equals_prefix_recomputation(model, batch, bidirectional):
    kwargs = {"beam": 4, "max_len": 12, "bidirectional": bidirectional, "direction": "r2l"}
    cached = nbest(model, *batch, **kwargs)
    recomputed = nbest(model, *batch, use_cache=False, **kwargs)
    for a, b in zip(cached, recomputed, strict=True):
        _assert_same(a, b)


@pytest.mark.parametrize("direction", ["l2r", "r2l"])
def test_beam_of_one_is_greedy(model, batch, direction):
    one = beam_search(model, *batch, beam=1, max_len=12, bidirectional=False, direction=direction)
    _assert_same(one, greedy(model, *batch, max_len=12, direction=direction))
    uncached = greedy(model, *batch, max_len=12, direction=direction, use_cache=False)
    _assert_same(one, uncached)


def test_a_batch_decodes_like_each_image_alone(model, batch):
    together = beam_search(model, *batch, max_len=12)  # beam 10, bidirectional
    alone = [
        beam_search(model, _image(s, i)[None], None, max_len=12)[0] for i, s in enumerate(SIZES)
    ]
    _assert_same(together, alone)
    greedy_alone = [greedy(model, _image(s, i)[None], max_len=12)[0] for i, s in enumerate(SIZES)]
    _assert_same(greedy(model, *batch, max_len=12), greedy_alone)


def test_decoding_is_deterministic(model, batch):
    first = nbest(model, *batch, beam=5, max_len=12)
    assert nbest(model, *batch, beam=5, max_len=12) == first


def test_rescoring_only_reorders_ended_hypotheses(model, batch):
    both = nbest(model, *batch, beam=4, max_len=12)
    one_way = {
        d: nbest(model, *batch, beam=4, max_len=12, bidirectional=False, direction=d)
        for d in ("l2r", "r2l")
    }
    best = beam_search(model, *batch, beam=4, max_len=12)
    for i, hyps in enumerate(both):
        candidates = {tuple(h.tokens) for d in one_way for h in one_way[d][i]}
        assert {tuple(h.tokens) for h in hyps} == candidates
        assert best[i] == hyps[0]
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        with torch.no_grad():
            for h in hyps[:3]:  # combined score: mean of both directions' log p, per token
                logps = [_teacher_forced_logp(model, *batch, i, h.tokens, d) for d in one_way]
                assert h.score == pytest.approx(sum(logps) / 2 / (len(h.tokens) + 1), abs=1e-4)


def test_one_way_scores_are_length_normalized_log_probabilities(model, batch):
    for direction in ("l2r", "r2l"):
        found = nbest(model, *batch, beam=3, max_len=12, bidirectional=False, direction=direction)
        with torch.no_grad():
            for i, hyps in enumerate(found):
                for h in hyps:
                    logp = _teacher_forced_logp(model, *batch, i, h.tokens, direction)
                    assert h.score * (len(h.tokens) + 1) == pytest.approx(logp, abs=1e-4)


def test_max_len_ends_every_search(model, batch):
    with torch.no_grad():
        saved = model.decoder.head.bias.clone()
        model.decoder.head.bias[[SOS, EOS]] = -1e4  # no hypothesis can end by itself
    try:
        results = nbest(model, *batch, beam=3, max_len=5)
        greedy_results = greedy(model, *batch, max_len=5)
    finally:
        with torch.no_grad():
            model.decoder.head.bias.copy_(saved)
    assert all(len(hyps) >= 1 for hyps in results)
    assert all(len(h.tokens) == 5 for hyps in results for h in hyps)
    assert all(len(h.tokens) == 5 for h in greedy_results)


def test_specials_are_never_emitted(model, batch):
    for hyps in nbest(model, *batch, beam=6, max_len=12):
        assert all(t > EOS for h in hyps for t in h.tokens)


@pytest.mark.parametrize("direction", ["l2r", "r2l"])
def test_attention_maps_are_distributions_on_the_grid(model, batch, direction):
    images, mask = batch
    tokens = [5, 6, 7, 8]
    maps = attention_maps(model, images[2], mask[2], tokens, direction)
    h, w = model.encoder.backbone.output_size(*images.shape[-2:])
    assert maps.shape == (4, h, w)
    assert torch.allclose(maps.sum((1, 2)), torch.ones(4), atol=1e-5)
    valid_h, valid_w = model.encoder.backbone.output_size(*SIZES[2])
    assert maps[:, valid_h:].abs().sum() == 0 and maps[:, :, valid_w:].abs().sum() == 0
    alone = attention_maps(model, _image(SIZES[2], 2), None, tokens, direction)
    assert torch.allclose(maps[:, :valid_h, :valid_w], alone, atol=1e-5)


def test_hypotheses_that_ended_are_not_stepped_again(model, batch, monkeypatch):
    """BTTR's beam shrinks as hypotheses end; so does the work: a step feeds only as many rows
    per direction as the search has live hypotheses (the widest search, in a batch)."""
    rows: list[int] = []
    step = model.decoder.step

    def counting_step(tokens, state):
        rows.append(tokens.shape[0])
        return step(tokens, state)

    monkeypatch.setattr(model.decoder, "step", counting_step)
    image = batch[0][:1, :, : SIZES[0][0], : SIZES[0][1]]
    found = nbest(model, image, beam=6, max_len=12)  # one image, both directions
    monkeypatch.undo()
    assert rows[0] == 2  # one start row per direction
    assert all(r % 2 == 0 and r <= 2 * 6 for r in rows)
    assert min(rows[1:]) < 2 * 6  # hypotheses ended, and their rows were dropped
    _assert_same([h[0] for h in found], [nbest(model, image, beam=6, max_len=12)[0][0]])


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("beam", [2, 5])
def test_the_best_hypothesis_is_the_best_of_all_ended_ones(model, batch, beam, length_penalty):
    """beam_search skips rescoring hypotheses that cannot win; its answer is still nbest's."""
    kwargs = {"beam": beam, "max_len": 12, "length_penalty": length_penalty}
    best = beam_search(model, *batch, **kwargs)
    _assert_same(best, [hyps[0] for hyps in nbest(model, *batch, **kwargs)])


def test_only_hypotheses_that_can_win_are_rescored(model, batch, monkeypatch):
    """Rescoring needs each hypothesis's log p in the direction that did not find it. One both
    searches ended has it already; with best_only, one whose own log p / 2 (an upper bound of
    its score, as the other half is <= 0) cannot beat the best known score is skipped."""
    scored: list[list[int]] = []

    class Recording(TorchNetwork):
        def score(self, memory, inputs, targets):
            for row in inputs.tolist():  # decoder inputs: start token, then decoding order
                body = [t for t in row[1:] if t != PAD]
                scored.append(body if row[0] == SOS else body[::-1])
            return super().score(memory, inputs, targets)

    network = Recording(model)
    # K = 2 slots per direction: [5, 6] ended both ways, [7] only L2R, [8, 8, 8] only R2L.
    tokens = np.array([[[5, 6, 0], [7, 0, 0], [5, 6, 0], [8, 8, 8]]])
    lengths = np.array([[2, 1, 2, 3]])

    def rescore(logp: list[float], best_only: bool) -> np.ndarray:
        scored.clear()
        logps = np.array([logp], np.float32)
        return search._rescore(network, memory, tokens, lengths, logps, 12, 1.0, best_only)

    with torch.no_grad():
        memory = network.encode(*[x[:1] for x in batch])
        everything = rescore([-0.2, -9.0, -0.3, -12.0], best_only=False)
        assert sorted(scored) == [[7], [8, 8, 8]]  # [5, 6] is not scored again
        assert everything[0, 0] == everything[0, 2] == pytest.approx((-0.2 - 0.3) / 2 / 3)
        best = rescore([-0.2, -9.0, -0.3, -12.0], best_only=True)
        assert scored == []  # -9 / 2 / 2 and -12 / 2 / 4 cannot beat -0.083
        assert best[0, 0] == everything[0, 0] and best[0, 1:].tolist()[::2] == [-math.inf] * 2
        rescore([-0.2, -0.1, -0.3, -12.0], best_only=True)
        assert scored == [[7]]  # -0.1 / 2 / 2 might win: it is scored


def test_the_search_scores_with_the_layout_training_uses():
    """teacher_forced (numpy, for rescoring) lays sequences out as directional_sequences (torch,
    for the training loss): [start, *body] predicts [*body, end], padding after."""
    sequences = [np.array([5, 6, 7]), np.array([8]), np.array([], np.int64)]
    lengths = torch.tensor([3, 1, 0])
    padded = torch.tensor([[5, 6, 7], [8, PAD, PAD], [PAD, PAD, PAD]])
    for direction in ("l2r", "r2l"):
        r2l = np.full(3, direction == "r2l")
        inputs, targets = teacher_forced(sequences, r2l, Specials(PAD, SOS, EOS))
        expected = directional_sequences(padded, lengths, direction)
        assert inputs.tolist() == expected[0].tolist()
        assert targets.tolist() == expected[1].tolist()


def test_an_image_whose_network_fails_gets_an_empty_reading(model, batch):
    """NaN weights must not crash the search: no hypothesis survives, so every image gets one
    empty reading scoring -inf, from the n-best and the best-only search alike."""
    with torch.no_grad():
        saved = model.decoder.head.bias.clone()
        model.decoder.head.bias[5] = float("nan")
    try:
        found = beam_search(model, *batch, beam=3, max_len=5)
        ranked = nbest(model, *batch, beam=3, max_len=5)
    finally:
        with torch.no_grad():
            model.decoder.head.bias.copy_(saved)
    assert [(h.tokens, h.score) for h in found] == [([], -math.inf)] * len(SIZES)
    assert [[(h.tokens, h.score) for h in hyps] for hyps in ranked] == [[([], -math.inf)]] * len(
        SIZES
    )
