"""Specification of hmer.model.vit: a timm ViT with our 2D sinusoidal encoding, any size, masks."""

from __future__ import annotations

import pytest
import timm
import torch

from hmer.model.pos_enc import sincos_2d
from hmer.model.vit import add_sincos_2d, additive_key_mask, downsample_mask, sincos_vit


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return sincos_vit("vit_tiny_patch16_224", in_chans=1, depth=3).eval()


def test_learned_table_is_gone_and_nothing_else_is_added(vit):
    keys = vit.state_dict().keys()
    assert not any("pos_embed" in k for k in keys)
    assert all(k.startswith("vit.") for k in keys)  # no buffers from the encoding
    assert vit.vit.pos_embed is None


def test_224_square_tokens_carry_exactly_sincos_2d_on_the_patch_grid(vit):
    images = torch.randn(2, 1, 224, 224)
    seen = {}
    hook = vit.vit.blocks[0].register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    with torch.no_grad():
        tokens, token_mask = vit(images)
        patches = vit.vit.patch_embed(images)  # (B, 14, 14, 192)
    hook.remove()
    assert tokens.shape == (2, 1 + 14 * 14, 192) and token_mask is None
    added = seen["x"][:, 1:].view(2, 14, 14, 192) - patches
    torch.testing.assert_close(added, sincos_2d(14, 14, 192).expand(2, -1, -1, -1))
    torch.testing.assert_close(seen["x"][:, 0], vit.vit.cls_token[0].expand(2, -1))  # no position


@pytest.fixture(params=["fused", "unfused"])
def attention_path(request, vit):
    """Both attention paths of timm's blocks: fused (scaled_dot_product_attention) and unfused
    (scores + mask, softmax), which timm 1.0.16-1.0.25 fed a bool mask as +1 / 0."""
    fused = [block.attn.fused_attn for block in vit.vit.blocks]
    for block in vit.vit.blocks:
        block.attn.fused_attn = request.param == "fused"
    yield request.param
    for block, was in zip(vit.vit.blocks, fused, strict=True):
        block.attn.fused_attn = was


def test_wide_padded_batch_gives_each_image_the_tokens_it_has_alone(vit, attention_path):
    """160x352 batch: an image of 96x208 pixels (6x13 patches) padded with noise, and a full one."""
    torch.manual_seed(1)
    image = torch.randn(1, 1, 96, 208)
    batch = torch.randn(2, 1, 160, 352) * 5  # the padding holds garbage on purpose
    batch[0, :, :96, :208] = image[0]
    mask = torch.zeros(2, 160, 352, dtype=torch.bool)
    mask[0] = True
    mask[0, :96, :208] = False
    with torch.no_grad():
        tokens, token_mask = vit(batch, mask)
        alone, _ = vit(image)
        unmasked_full, _ = vit(batch[1:])
    assert tokens.shape == (2, 1 + 10 * 22, 192)
    assert token_mask.shape == (2, 1 + 10 * 22)
    assert not token_mask[:, 0].any()  # the class token is never padding
    expected_pad = torch.ones(10, 22, dtype=torch.bool)
    expected_pad[:6, :13] = False
    assert torch.equal(token_mask[0, 1:].view(10, 22), expected_pad)
    assert not token_mask[1].any()
    kept = tokens[0][~token_mask[0]]  # class token, then the 6x13 valid patches row by row
    torch.testing.assert_close(kept, alone[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(tokens[1], unmasked_full[0], atol=1e-4, rtol=1e-4)


def test_padding_mask_becomes_an_additive_bias_on_the_keys():
    token_mask = torch.tensor([[False, False, True], [False, True, True]])
    bias = additive_key_mask(token_mask, torch.bfloat16)
    assert bias.shape == (2, 1, 1, 3) and bias.dtype == torch.bfloat16
    assert torch.equal(bias[:, 0, 0] == float("-inf"), token_mask)
    assert torch.equal(bias[:, 0, 0][~token_mask], torch.zeros(3, dtype=torch.bfloat16))


def test_a_patch_with_any_valid_pixel_is_kept():
    mask = torch.ones(1, 20, 40, dtype=torch.bool)
    mask[0, :17, :3] = False  # reaches one pixel into patch row 2 (pixels 16..19); column 0 only
    patch_mask = downsample_mask(mask, (8, 8), (3, 5))  # 20x40 -> 3x5 (last row zero-padded)
    expected = torch.ones(1, 3, 5, dtype=torch.bool)
    expected[0, :3, 0] = False
    assert torch.equal(patch_mask, expected)


def test_non_multiple_sizes_work_with_dynamic_img_pad():
    model = sincos_vit("vit_tiny_patch16_224", in_chans=1, depth=1, dynamic_img_pad=True).eval()
    mask = torch.zeros(1, 50, 70, dtype=torch.bool)
    mask[0, 40:] = True
    with torch.no_grad():
        tokens, token_mask = model(torch.randn(1, 1, 50, 70), mask)
    assert tokens.shape == (1, 1 + 4 * 5, 192)
    assert token_mask[0, 1:].view(4, 5).all(dim=1).tolist() == [False, False, False, True]


def test_wrapping_requires_a_dynamic_size_vit():
    with pytest.raises(ValueError, match="dynamic_img_size"):
        add_sincos_2d(timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1))


def test_mask_must_match_the_images(vit):
    with pytest.raises(ValueError, match="mask must have shape"):
        vit(torch.randn(1, 1, 32, 48), torch.zeros(1, 32, 32, dtype=torch.bool))
