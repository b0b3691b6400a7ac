"""A tiny model learns a handful of real CROHME expressions by heart: 100% ExpRate on them.

Proof that targets, masks, both training directions and every decoder agree: any mismatch
(an off-by-one target, a reversed R2L sequence, a leaking padding mask, a wrong cache) keeps
some expression from being read back exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hmer.data.inkml import RenderConfig, parse_inkml, render_traces
from hmer.data.latex import normalize_latex
from hmer.data.vocab import Vocab
from hmer.metrics import exprate
from hmer.model import HmerModel, ModelConfig
from hmer.search.torch_backend import beam_search, greedy

NAMES = ["MfrDB0007", "MfrDB0009", "MfrDB0011", "MfrDB0017", "MfrDB0021", "MfrDB0025"]
RENDER = RenderConfig(symbol_height=16, stroke_width=1.5)  # small images: fast on CPU


def _load(crohme: Path) -> tuple[list[np.ndarray], list[list[str]]]:
    images, truths = [], []
    for name in NAMES:
        path = crohme / "inkml" / "train" / "MfrDB" / f"{name}.inkml"
        ink = parse_inkml(path)
        images.append(render_traces(ink.traces, RENDER))
        truths.append(normalize_latex(ink.latex, str(path)))
    return images, truths


def _pad(images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    height = max(i.shape[0] for i in images)
    width = max(i.shape[1] for i in images)
    batch = torch.zeros(len(images), 1, height, width)
    mask = torch.ones(len(images), height, width, dtype=torch.bool)
    for k, image in enumerate(images):
        h, w = image.shape
        batch[k, 0, :h, :w] = torch.from_numpy(image).float() / 255
        mask[k, :h, :w] = False
    return batch, mask


@pytest.mark.crohme
@pytest.mark.slow
def test_tiny_model_overfits_real_expressions(crohme):
    torch.manual_seed(0)
    images, truths = _load(crohme)
    vocab = Vocab.crohme()
    ids = [vocab.encode(t, strict=True) for t in truths]
    batch, mask = _pad(images)
    lengths = torch.tensor([len(i) for i in ids])
    tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for k, seq in enumerate(ids):
        tokens[k, : len(seq)] = torch.tensor(seq)
    cfg = ModelConfig(
        growth_rate=8,
        block_config=[2, 2, 2],
        bn_size=2,
        encoder_dropout=0.0,
        d_model=64,
        nhead=4,
        num_decoder_layers=2,
        dim_feedforward=128,
        dropout=0.0,
    )
    model = HmerModel(cfg, len(vocab), vocab.pad_id, vocab.sos_id, vocab.eos_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    decoded = {}
    for step in range(1, 601):
        model.train()
        loss = model(batch, mask, tokens, lengths)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            model.eval()
            decoded = {
                "greedy l2r": greedy(model, batch, mask, max_len=40),
                "greedy r2l": greedy(model, batch, mask, max_len=40, direction="r2l"),
                "beam 10 bidirectional": beam_search(model, batch, mask, max_len=40),
            }
            if all(
                exprate([h.tokens for h in hyps], ids)["exprate"] == 100.0
                for hyps in decoded.values()
            ):
                break
    for how, hyps in decoded.items():
        predictions = [vocab.decode(h.tokens) for h in hyps]
        assert exprate(predictions, truths)["exprate"] == 100.0, (how, predictions, loss.item())
