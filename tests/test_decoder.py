"""Decoder and training objective: PyTorch-equivalent layers, exact KV cache, bidirectional loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hmer.model import Decoder, HmerModel, ModelConfig, directional_sequences, reverse_padded

PAD, SOS, EOS = 0, 1, 2
TINY = {
    "growth_rate": 8,
    "block_config": [2, 2, 2],
    "bn_size": 2,
    "d_model": 32,
    "nhead": 4,
    "num_decoder_layers": 2,
    "dim_feedforward": 64,
}


def _memory(b: int = 2, s: int = 7, d: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    memory = torch.randn(b, s, d)
    mask = torch.zeros(b, s, dtype=torch.bool)
    mask[1, 4:] = True  # the second image is shorter
    return memory, mask


def test_model_config_defaults_are_bttr():
    cfg = ModelConfig()
    assert (cfg.backbone, cfg.growth_rate, cfg.block_config, cfg.bn_size) == (
        "densenet",
        24,
        [16, 16, 16],
        4,
    )
    assert (cfg.d_model, cfg.nhead, cfg.num_decoder_layers) == (256, 8, 3)
    assert (cfg.dim_feedforward, cfg.dropout) == (1024, 0.3)


def test_reverse_and_directional_sequences():
    tokens = torch.tensor([[5, 6, 7], [8, 9, PAD]])
    lengths = torch.tensor([3, 2])
    assert reverse_padded(tokens, lengths, PAD).tolist() == [[7, 6, 5], [9, 8, PAD]]
    inputs, targets = directional_sequences(tokens, lengths, "l2r")
    assert inputs.tolist() == [[SOS, 5, 6, 7], [SOS, 8, 9, PAD]]
    assert targets.tolist() == [[5, 6, 7, EOS], [8, 9, EOS, PAD]]
    inputs, targets = directional_sequences(tokens, lengths, "r2l")
    assert inputs.tolist() == [[EOS, 7, 6, 5], [EOS, 9, 8, PAD]]
    assert targets.tolist() == [[7, 6, 5, SOS], [9, 8, SOS, PAD]]
    empty_in, empty_out = directional_sequences(tokens[:, :0], torch.tensor([0, 0]), "l2r")
    assert empty_in.tolist() == [[SOS], [SOS]] and empty_out.tolist() == [[EOS], [EOS]]


@pytest.mark.parametrize("norm_first", [False, True])
def test_forward_matches_pytorch_transformer_decoder(norm_first):
    """The SDPA code path computes what nn.TransformerDecoder computes with the same weights."""
    torch.manual_seed(0)
    decoder = Decoder(11, 32, 4, 2, 64, 0.1, norm_first=norm_first).eval()
    memory, mask = _memory()
    tokens = torch.randint(3, 11, (4, 6))  # two rows per image
    with torch.no_grad():
        ours = decoder(tokens, memory, mask)
        reference = _pytorch_logits(decoder, tokens, memory, mask)
    assert torch.allclose(ours, reference, atol=1e-5)


def _pytorch_logits(
    decoder: Decoder, tokens: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Teacher-forced logits through ``nn.TransformerDecoder.forward`` itself."""
    groups, length = tokens.shape[0] // memory.shape[0], tokens.shape[1]
    x = decoder.pos(decoder.embed_norm(decoder.embed(tokens)))
    causal = torch.nn.Transformer.generate_square_subsequent_mask(length)
    out = decoder.transformer(
        x,
        memory.repeat_interleave(groups, 0),
        tgt_mask=causal,
        tgt_is_causal=True,
        memory_key_padding_mask=mask.repeat_interleave(groups, 0),
    )
    return decoder.head(out)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("direction", ["l2r", "r2l"])
def test_cached_steps_equal_full_recomputation(direction, norm_first):
    torch.manual_seed(0)
    decoder = Decoder(11, 32, 4, 3, 64, 0.3, norm_first=norm_first).eval()
    memory, mask = _memory()
    tokens = torch.randint(3, 11, (6, 8))  # three rows per image
    lengths = torch.tensor([8, 5, 8, 1, 0, 8])
    inputs, _ = directional_sequences(tokens, lengths, direction)
    with torch.no_grad():
        full = decoder(inputs, memory, mask)
        state = decoder.start(memory, mask)
        cached = torch.stack([decoder.step(inputs[:, t], state) for t in range(9)], dim=1)
    assert state.position == 9
    assert torch.allclose(cached, full, atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_steps_and_forward_use_the_layers_activation(norm_first):
    """Both passes run the layer's own activation (GELU here), as nn.TransformerDecoder does."""
    torch.manual_seed(0)
    decoder = Decoder(11, 32, 4, 2, 64, 0.0, norm_first=norm_first).eval()
    memory, mask = _memory()
    tokens = torch.randint(3, 11, (4, 6))
    with torch.no_grad():
        relu = decoder(tokens, memory, mask)
        for layer in decoder.transformer.layers:
            layer.activation = F.gelu
        full = decoder(tokens, memory, mask)
        state = decoder.start(memory, mask)
        cached = torch.stack([decoder.step(tokens[:, t], state) for t in range(6)], dim=1)
        reference = _pytorch_logits(decoder, tokens, memory, mask)
    assert not torch.allclose(full, relu, atol=1e-3)
    assert torch.allclose(full, reference, atol=1e-5)
    assert torch.allclose(cached, full, atol=1e-5)


def test_cache_reorder_follows_rows():
    torch.manual_seed(0)
    decoder = Decoder(11, 32, 4, 2, 64, 0.0).eval()
    memory, mask = _memory()
    tokens = torch.randint(3, 11, (4, 5))
    order = torch.tensor([1, 0, 3, 3])  # rows stay with their image
    with torch.no_grad():
        state = decoder.start(memory, mask)
        for t in range(4):
            decoder.step(tokens[:, t], state)
        state.reorder(order)
        stepped = decoder.step(tokens[order, 4], state)
        full = decoder(tokens[order], memory, mask)[:, -1]
    assert torch.allclose(stepped, full, atol=1e-5)


def _tiny_model(**overrides) -> HmerModel:
    torch.manual_seed(0)
    return HmerModel(ModelConfig(**{**TINY, **overrides}), vocab_size=12)


def _batch():
    images = torch.rand(2, 1, 40, 64)
    image_mask = torch.zeros(2, 40, 64, dtype=torch.bool)
    image_mask[1, :, 48:] = True
    tokens = torch.tensor([[4, 5, 6, 7], [8, 9, PAD, PAD]])
    return images, image_mask, tokens, torch.tensor([4, 2])


def test_bidirectional_loss_is_two_teacher_forced_directions():
    model = _tiny_model().eval()
    images, image_mask, tokens, lengths = _batch()
    with torch.no_grad():
        out = model(images, image_mask, tokens, lengths)
        memory, memory_mask = model.encode(images, image_mask)
        losses = []
        for direction in ("l2r", "r2l"):
            inputs, targets = directional_sequences(tokens, lengths, direction)
            logits = model.decoder(inputs, memory, memory_mask)  # one direction alone
            losses.append(F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=0))
    assert torch.allclose(out["loss_l2r"], losses[0], atol=1e-5)
    assert torch.allclose(out["loss_r2l"], losses[1], atol=1e-5)
    assert torch.allclose(out["loss"], (losses[0] + losses[1]) / 2, atol=1e-5)  # equal counts
    assert out["logits"].shape == (4, 5, 12)
    assert out["targets"][1].tolist() == [7, 6, 5, 4, SOS]


def test_training_step_reaches_every_parameter_and_smoothing_changes_loss():
    model = _tiny_model().train()
    images, image_mask, tokens, lengths = _batch()
    model(images, image_mask, tokens, lengths)["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
    smooth = _tiny_model(label_smoothing=0.1).eval()
    plain = _tiny_model().eval()
    with torch.no_grad():
        assert smooth(*_batch())["loss"] != plain(*_batch())["loss"]


def test_forward_never_reads_tensor_values_on_the_host():
    """On the meta device any .item(), .tolist() or branch on a tensor value raises: the
    training forward and loss can be queued on a GPU without a single sync."""
    model = _tiny_model().to("meta").train()
    images, image_mask, tokens, lengths = (t.to("meta") for t in _batch())
    out = model(images, image_mask, tokens, lengths)
    assert out["loss"].device.type == "meta" and out["loss"].shape == ()


def test_summary_counts_parameters_and_flops():
    from hmer.model.summary import summary

    model = _tiny_model().eval()
    info = summary(model, image_size=(48, 96), seq_len=10, repeats=1)
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert info.encoder_parameters + info.decoder_parameters == info.parameters
    assert info.memory_size == (3, 6)
    assert info.encoder_gflops > 0 and info.decoder_gflops > 0 and info.step_mflops > 0
    # A cached step costs about one token's share of a teacher-forced pass (2 rows of 11 tokens).
    assert info.step_mflops < 2 * 1000 * info.decoder_gflops / 22
    assert "parameters" in str(info) and info.forward_ms > 0
