"""Encoder: timm backbones, exact mask downsampling, 2D encoding, channels-last and bf16."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hmer.errors import ConfigError
from hmer.model import Backbone, Encoder, HmerModel, ModelConfig

TINY_DENSENET = {"growth_rate": 8, "block_config": (2, 2, 2), "bn_size": 2}

BACKBONES = {
    "densenet": lambda: Encoder(32, "densenet", **TINY_DENSENET).eval(),
    "resnet18": lambda: Encoder(32, "resnet18").eval(),
    "convnext_atto": lambda: Encoder(32, "convnext_atto").eval(),
}


@pytest.fixture(scope="module", params=list(BACKBONES))
def encoder(request) -> Encoder:
    torch.manual_seed(0)
    return BACKBONES[request.param]()


def test_default_backbone_is_bttr_densenet():
    backbone = Backbone()  # DenseNet-B: growth 24, 3 blocks of 16 bottleneck layers
    blocks = [name for name, _ in backbone.body.features.named_children() if "denseblock" in name]
    assert len(blocks) == 3
    assert backbone.body.features.conv0.in_channels == 1
    assert backbone.body.features.conv0.out_channels == 48  # stem width 2 * growth
    assert backbone.channels == 684  # 48 + 16·24 -> 216 + 16·24 -> 300 + 16·24
    assert backbone.stride == 16
    with torch.no_grad():
        features, mask = backbone.eval()(torch.zeros(1, 1, 33, 47))
    assert features.shape == (1, 684, 2, 3) and mask.shape == (1, 2, 3) and not mask.any()


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    height=st.integers(16, 90),
    width=st.integers(16, 90),
    pad_h=st.integers(0, 40),
    pad_w=st.integers(0, 40),
)
def test_mask_is_downsampled_exactly_as_the_backbone(encoder, height, width, pad_h, pad_w):
    """The valid cells of a padded image are exactly the feature map of the image alone."""
    backbone = encoder.backbone
    with torch.no_grad():
        alone = backbone(torch.rand(1, 1, height, width))[0].shape[-2:]
        assert backbone.output_size(height, width) == tuple(alone)
        images = torch.zeros(2, 1, height + pad_h, width + pad_w)
        image_mask = torch.ones(2, height + pad_h, width + pad_w, dtype=torch.bool)
        image_mask[0, :height, :width] = False
        image_mask[1] = False
        grid, mask = encoder.forward_features(images, image_mask)
    assert tuple(grid.shape[1:3]) == backbone.output_size(height + pad_h, width + pad_w)
    valid = ~mask[0]
    assert valid.any(1).sum() == alone[0] and valid.any(0).sum() == alone[1]
    assert valid[: alone[0], : alone[1]].all()  # a rectangle at the top left
    assert not mask[1].any()


def test_memory_is_flat_grid_with_mask():
    torch.manual_seed(0)
    encoder = Encoder(32, "densenet", **TINY_DENSENET).eval()
    images = torch.rand(2, 1, 40, 72)
    image_mask = torch.zeros(2, 40, 72, dtype=torch.bool)
    image_mask[1, :, 40:] = True
    with torch.no_grad():
        grid, grid_mask = encoder.forward_features(images, image_mask)
        memory, memory_mask = encoder(images, image_mask)
    assert grid.shape == (2, 2, 4, 32)
    assert torch.equal(memory, grid.flatten(1, 2))
    assert torch.equal(memory_mask, grid_mask.flatten(1))
    assert memory_mask[1].view(2, 4)[:, 2:].all() and not memory_mask[0].any()
    # LayerNorm output: zero mean, unit variance per cell
    assert torch.allclose(memory.mean(-1), torch.zeros(2, 8), atol=1e-5)


def _randomize_batchnorm(module: torch.nn.Module) -> None:
    """Trained-like BatchNorm statistics and affine weights (fresh ones map 0 to 0)."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)


@pytest.mark.parametrize("size", [(37, 61), (64, 64), (17, 90)])
def test_padding_leaves_an_images_memory_unchanged(size):
    """Image alone vs the same image at the top left of a padded batch: same valid cells, same
    memory there (DenseNet masks padding inside; the 2D encoding counts valid cells only)."""
    torch.manual_seed(0)
    encoder = Encoder(32, "densenet", **TINY_DENSENET).eval()
    _randomize_batchnorm(encoder)
    height, width = size
    image = torch.rand(1, 1, height, width)
    canvas = torch.rand(2, 1, 80, 112)  # the padding holds junk: it must be ignored
    canvas[:1, :, :height, :width] = image
    canvas_mask = torch.zeros(2, 80, 112, dtype=torch.bool)
    canvas_mask[0, height:] = True
    canvas_mask[0, :, width:] = True
    with torch.no_grad():
        alone, _ = encoder.forward_features(image)
        padded, mask = encoder.forward_features(canvas, canvas_mask)
    h, w = alone.shape[1:3]
    assert torch.allclose(padded[0, :h, :w], alone[0], atol=1e-4)
    assert not mask[0, :h, :w].any() and mask[0].sum() == mask[0].numel() - h * w


def test_channels_last_and_bf16_autocast():
    torch.manual_seed(0)
    model = HmerModel(
        ModelConfig(**TINY_DENSENET, d_model=32, nhead=4, num_decoder_layers=1), 12
    ).eval()
    images = torch.rand(2, 1, 48, 80)
    image_mask = torch.zeros(2, 48, 80, dtype=torch.bool)
    image_mask[0, 30:] = True
    tokens = torch.randint(4, 12, (2, 5))
    lengths = torch.tensor([5, 3])
    with torch.no_grad():
        reference, ref_mask = model.encode(images, image_mask)
        model = model.to(memory_format=torch.channels_last)
        memory, memory_mask = model.encode(images.to(memory_format=torch.channels_last), image_mask)
        assert torch.equal(memory_mask, ref_mask)
        assert torch.allclose(memory, reference, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            memory_bf16, _ = model.encode(images.to(memory_format=torch.channels_last), image_mask)
            loss = model(images, image_mask, tokens, lengths)["loss"]
    assert (memory_bf16.float() - reference).abs().mean() < 0.1
    assert torch.isfinite(loss)


def test_bad_backbone_settings_raise_config_error():
    with pytest.raises(ConfigError, match="stride"):
        Backbone("densenet", stride=32, **TINY_DENSENET)
    with pytest.raises(ConfigError, match="no_such_net"):
        Backbone("no_such_net")
    with pytest.raises(ConfigError, match="strides"):
        Backbone("resnet18", stride=64)
