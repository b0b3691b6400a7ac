"""Specification of hmer.model.pos_enc: the maths of the encodings, not snapshots of outputs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hmer.model.pos_enc import (
    PositionEncoding1D,
    PositionEncoding2D,
    Rotary2D,
    apply_rotary,
    rotary_2d,
    sincos_1d,
    sincos_2d,
)

FAST = settings(max_examples=25, deadline=None)


def formula(position: float, channel: int, n: int, temperature: float) -> float:
    """Channel ``channel`` of an ``n``-channel block: sin/cos pairs, ω_i = T^(-2i/n)."""
    i, is_cos = divmod(channel, 2)
    angle = position * temperature ** (-2 * i / n)
    return math.cos(angle) if is_cos else math.sin(angle)


def padded(image_hw: tuple[int, int], canvas_hw: tuple[int, int], offset: tuple[int, int]):
    """A (1, H, W) mask with a valid image_hw rectangle at offset, the rest padding."""
    mask = torch.ones(1, *canvas_hw, dtype=torch.bool)
    (h, w), (oy, ox) = image_hw, offset
    mask[0, oy : oy + h, ox : ox + w] = False
    return mask


# --- 2D sinusoidal encoding -------------------------------------------------------------------


@FAST
@given(
    height=st.integers(1, 12),
    width=st.integers(1, 40),
    dim=st.sampled_from([4, 8, 32, 256]),
    temperature=st.sampled_from([100.0, 10000.0]),
    data=st.data(),
)
def test_sincos_2d_values_follow_the_formula(height, width, dim, temperature, data):
    pe = sincos_2d(height, width, dim, temperature=temperature)
    assert pe.shape == (height, width, dim) and pe.dtype == torch.float32
    half = dim // 2
    for _ in range(10):
        r = data.draw(st.integers(0, height - 1))
        c = data.draw(st.integers(0, width - 1))
        k = data.draw(st.integers(0, dim - 1))
        position, channel = (c, k) if k < half else (r, k - half)
        assert pe[r, c, k].item() == pytest.approx(
            formula(position, channel, half, temperature), abs=1e-5
        )


def test_x_half_depends_only_on_column_and_y_half_only_on_row():
    pe = sincos_2d(7, 11, 64)
    x_half, y_half = pe[..., :32], pe[..., 32:]
    assert torch.equal(x_half, x_half[:1].expand_as(x_half))  # same in every row
    assert torch.equal(y_half, y_half[:, :1].expand_as(y_half))  # same in every column
    # ...and each really varies along its own axis.
    assert not torch.allclose(x_half[:, 0], x_half[:, 1])
    assert not torch.allclose(y_half[0], y_half[1])


def test_2d_halves_are_the_1d_encoding_of_column_and_row():
    pe = sincos_2d(5, 9, 32, temperature=500.0)
    columns, rows = torch.arange(9), torch.arange(5)
    torch.testing.assert_close(pe[0, :, :16], sincos_1d(columns, 16, temperature=500.0))
    torch.testing.assert_close(pe[:, 0, 16:], sincos_1d(rows, 16, temperature=500.0))


@FAST
@given(k=st.integers(1, 20), axis=st.sampled_from(["x", "y"]))
def test_shift_by_k_rotates_every_pair_by_a_fixed_angle(k, axis):
    """pe(p + k) = R_i(k) · pe(p) for every pair i, with R_i(k) independent of p."""
    dim, n = 64, 40
    pe = sincos_2d(n, n, dim)
    line = pe[0, :, :32] if axis == "x" else pe[:, 0, 32:]  # (n, 32) along the chosen axis
    pairs = line.view(n, 16, 2).double()  # (position, pair, (sin, cos))
    # The angle each pair turns by over k cells, read off at p = 0, where (sin, cos) = (0, 1).
    theta = torch.atan2(pairs[k, :, 0], pairs[k, :, 1])
    rotation = torch.stack(
        (torch.stack((theta.cos(), theta.sin()), -1), torch.stack((-theta.sin(), theta.cos()), -1)),
        dim=-2,
    )  # (pair, 2, 2): (sin, cos) -> (sin cosθ + cos sinθ, cos cosθ - sin sinθ)
    shifted = torch.einsum("pij,npj->npi", rotation, pairs[:-k])
    torch.testing.assert_close(shifted, pairs[k:], atol=1e-5, rtol=0)
    # Consequence used by attention: <pe(p), pe(p + k)> is the same for every p.
    dots = (line[:-k] * line[k:]).sum(-1)
    torch.testing.assert_close(dots, dots[:1].expand_as(dots), atol=1e-4, rtol=0)


@pytest.mark.parametrize("normalize", [False, True])
@FAST
@given(
    h=st.integers(1, 6),
    w=st.integers(1, 12),
    pad_bottom=st.integers(0, 5),
    pad_right=st.integers(0, 9),
    offset=st.tuples(st.integers(0, 3), st.integers(0, 3)),
)
def test_valid_region_encoding_ignores_padding(normalize, h, w, pad_bottom, pad_right, offset):
    alone = sincos_2d(h, w, 16, normalize=normalize)
    canvas = (offset[0] + h + pad_bottom, offset[1] + w + pad_right)
    mask = padded((h, w), canvas, offset)
    pe = sincos_2d(*canvas, 16, mask=mask, normalize=normalize)
    oy, ox = offset
    torch.testing.assert_close(pe[0, oy : oy + h, ox : ox + w], alone)
    assert torch.all(pe[0][mask[0]] == 0)  # padding cells carry no encoding


def test_masked_batch_matches_each_image_alone():
    sizes = [(3, 10), (6, 4), (6, 10)]
    mask = torch.ones(3, 6, 10, dtype=torch.bool)
    for b, (h, w) in enumerate(sizes):
        mask[b, :h, :w] = False
    pe = sincos_2d(6, 10, 32, mask=mask, normalize=True)
    for b, (h, w) in enumerate(sizes):
        torch.testing.assert_close(pe[b, :h, :w], sincos_2d(h, w, 32, normalize=True))


@pytest.mark.parametrize("size", [(1, 1), (4, 9), (13, 2)])
def test_normalize_maps_the_valid_extent_to_zero_and_scale(size):
    h, w = size
    scale = 3.0
    mask = padded(size, (h + 2, w + 5), (0, 0))
    pe = sincos_2d(h + 2, w + 5, 8, mask=mask, normalize=True, scale=scale)[0]
    first, last_x = sincos_1d(torch.tensor(0.0), 4), sincos_1d(torch.tensor(scale), 4)
    torch.testing.assert_close(pe[0, 0, :4], first)
    torch.testing.assert_close(pe[0, 0, 4:], first)
    if w > 1:
        torch.testing.assert_close(pe[0, w - 1, :4], last_x)
    if h > 1:
        torch.testing.assert_close(pe[h - 1, 0, 4:], last_x)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_low_precision_in_same_dtype_out_close_to_float32(dtype, channels_last, masked):
    module = PositionEncoding2D(64, channels_last=channels_last)
    x = torch.randn(2, 64, 5, 12).to(dtype)
    mask = padded((4, 9), (5, 12), (0, 0)).expand(2, -1, -1) if masked else None
    if channels_last:
        x = x.permute(0, 2, 3, 1).contiguous()
    out = module(x, mask)
    reference = module(x.float(), mask)  # same inputs, float32 all the way
    assert out.dtype == dtype
    tolerance = torch.finfo(dtype).eps * reference.abs().max().item()
    torch.testing.assert_close(out.float(), reference, atol=tolerance, rtol=0)
    assert sincos_2d(5, 12, 64, dtype=dtype).dtype == dtype


def test_module_adds_the_builder_encoding_in_both_layouts():
    x = torch.randn(2, 32, 4, 7)
    mask = padded((3, 5), (4, 7), (0, 0)).expand(2, -1, -1)
    for m in (None, mask):
        pe = sincos_2d(4, 7, 32, mask=m)
        pe_first = pe.permute(2, 0, 1) if m is None else pe.permute(0, 3, 1, 2)
        torch.testing.assert_close(PositionEncoding2D(32)(x, m), x + pe_first)
        x_last = x.permute(0, 2, 3, 1)
        torch.testing.assert_close(
            PositionEncoding2D(32, channels_last=True)(x_last, m), x_last + pe
        )


def test_cached_grid_follows_device_dtype_and_size_and_is_not_state():
    module = PositionEncoding2D(16)
    assert len(module.state_dict()) == 0 and not list(module.parameters())
    for h, w, dtype in [(3, 4, torch.float32), (3, 4, torch.float16), (5, 2, torch.float32)]:
        out = module(torch.zeros(1, 16, h, w, dtype=dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(
            out[0].float(), sincos_2d(h, w, 16).permute(2, 0, 1), atol=1e-3, rtol=0
        )


def test_grid_cached_during_inference_still_serves_training():
    module = PositionEncoding2D(16)
    rotary = Rotary2D(8)
    with torch.inference_mode():
        module(torch.zeros(1, 16, 6, 5))
        rotary(torch.zeros(1, 30, 8), torch.zeros(1, 30, 8), 6, 5)
    x = torch.randn(1, 16, 6, 5, requires_grad=True)
    q = torch.randn(1, 30, 8, requires_grad=True)
    (module(x) ** 2).sum().backward()
    rq, rk = rotary(q, q, 6, 5)
    (rq * rk).sum().backward()  # multiplication by cached cos/sin saves them for backward
    assert x.grad is not None and q.grad is not None


# --- axial 2D rotary --------------------------------------------------------------------------


@FAST
@given(
    p=st.tuples(st.integers(0, 7), st.integers(0, 15)),
    p2=st.tuples(st.integers(0, 7), st.integers(0, 15)),
    d=st.tuples(st.integers(0, 8), st.integers(0, 16)),
    seed=st.integers(0, 2**16),
)
def test_rotary_scores_depend_only_on_relative_offset(p, p2, d, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 32, generator=g, dtype=torch.float64).unbind(0)
    cos, sin = rotary_2d(16, 32, 32)

    def score(a, b):
        qa = apply_rotary(q, cos[a].double(), sin[a].double())
        kb = apply_rotary(k, cos[b].double(), sin[b].double())
        return (qa * kb).sum().item()

    moved = ((p[0] + d[0], p[1] + d[1]), (p2[0] + d[0], p2[1] + d[1]))
    assert score(p, p2) == pytest.approx(score(*moved), abs=1e-4)


def test_rotary_turns_x_half_by_column_and_y_half_by_row():
    cos, sin = rotary_2d(4, 6, 16, temperature=100.0)
    half = 8
    # x half: angles vary with the column only; y half: with the row only.
    assert torch.equal(cos[..., :half], cos[:1, :, :half].expand(4, -1, -1))
    assert torch.equal(cos[..., half:], cos[:, :1, half:].expand(-1, 6, -1))
    # The angle of x pair i at column c is c·ω_i, the same schedule as sincos_2d.
    r, c = 3, 5
    angles = torch.atan2(sin[r, c, 0:half:2], cos[r, c, 0:half:2])
    expected = torch.tensor([c * 100.0 ** (-2 * i / half) for i in range(4)])
    torch.testing.assert_close(angles, torch.remainder(expected + math.pi, 2 * math.pi) - math.pi)
    # A rotation keeps lengths.
    v = torch.randn(4, 6, 16)
    torch.testing.assert_close(apply_rotary(v, cos, sin).norm(dim=-1), v.norm(dim=-1))


def test_rotary_module_matches_functions_in_every_layout():
    rotary = Rotary2D(16)
    q, k = torch.randn(2, 2, 4, 12, 16).unbind(0)  # (B=2, heads=4, H·W=12, head_dim)
    cos, sin = rotary_2d(3, 4, 16)
    rq, rk = rotary(q, k, 3, 4)
    torch.testing.assert_close(rq, apply_rotary(q, cos.view(12, 16), sin.view(12, 16)))
    torch.testing.assert_close(rk, apply_rotary(k, cos.view(12, 16), sin.view(12, 16)))
    grid_q, _ = rotary(q.view(2, 4, 3, 4, 16), k.view(2, 4, 3, 4, 16), 3, 4)
    torch.testing.assert_close(grid_q.view(2, 4, 12, 16), rq)
    assert rotary(q.half(), k.half(), 3, 4)[0].dtype == torch.float16


def test_rotary_with_mask_matches_each_image_alone():
    rotary = Rotary2D(8)
    mask = padded((2, 3), (3, 5), (0, 0))
    q = torch.randn(1, 2, 15, 8)  # (B, heads, H·W, head_dim) on the padded 3×5 grid
    rq, _ = rotary(q, q, 3, 5, mask)
    valid = q.view(1, 2, 3, 5, 8)[:, :, :2, :3].reshape(1, 2, 6, 8)
    alone, _ = rotary(valid, valid, 2, 3)
    torch.testing.assert_close(rq.view(1, 2, 3, 5, 8)[:, :, :2, :3].reshape(1, 2, 6, 8), alone)
    assert torch.equal(rq.view(1, 2, 3, 5, 8)[:, :, 2], q.view(1, 2, 3, 5, 8)[:, :, 2])  # padding


# --- 1D sinusoidal encoding -------------------------------------------------------------------


def test_sincos_1d_values_follow_the_formula():
    positions = torch.tensor([0.0, 1.0, 2.5, 17.0, 1000.0])
    pe = sincos_1d(positions, 12, temperature=10000.0)
    assert pe.shape == (5, 12)
    for a, p in enumerate(positions.tolist()):
        for k in range(12):
            assert pe[a, k].item() == pytest.approx(formula(p, k, 12, 10000.0), abs=1e-4)


@FAST
@given(
    cuts=st.lists(st.integers(1, 29), max_size=5).map(lambda c: sorted(set(c))),
    offset=st.integers(0, 50_000),
)
def test_1d_step_by_step_with_start_equals_whole(cuts, offset):
    module = PositionEncoding1D(32)
    x = torch.randn(2, 30, 32)
    whole = module(x, start=offset)
    bounds = [0, *cuts, 30]
    parts = [module(x[:, a:b], start=offset + a) for a, b in itertools.pairwise(bounds)]
    torch.testing.assert_close(torch.cat(parts, dim=1), whole)


def test_1d_has_no_length_limit_and_no_state():
    module = PositionEncoding1D(8)
    assert len(module.state_dict()) == 0
    out = module(torch.zeros(1, 3, 8), start=10**6)
    torch.testing.assert_close(out[0], sincos_1d(torch.arange(10**6, 10**6 + 3), 8))
    assert module(torch.zeros(1, 2, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


# --- rejecting nonsense -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sincos_2d(4, 4, 6), "multiple of 4"),
        (lambda: sincos_2d(4, 4, 0), "multiple of 4"),
        (lambda: PositionEncoding2D(30), "multiple of 4"),
        (lambda: sincos_1d(torch.arange(3), 7), "multiple of 2"),
        (lambda: PositionEncoding1D(5), "multiple of 2"),
        (lambda: rotary_2d(4, 4, 10), "multiple of 4"),
        (lambda: Rotary2D(6), "multiple of 4"),
        (lambda: sincos_2d(4, 4, 8, mask=torch.zeros(1, 4, 5, dtype=torch.bool)), "shape"),
        (lambda: sincos_2d(4, 4, 8, mask=torch.zeros(4, 4, dtype=torch.bool)), "shape"),
        (lambda: sincos_2d(4, 4, 8, mask=torch.zeros(1, 4, 4, dtype=torch.uint8)), "bool"),
        (lambda: rotary_2d(4, 4, 8, mask=torch.zeros(1, 4, 4)), "bool"),
        (lambda: PositionEncoding2D(8)(torch.zeros(1, 16, 4, 4)), "channels"),
        (lambda: PositionEncoding2D(8)(torch.zeros(16, 4, 4)), "4D"),
        (
            lambda: PositionEncoding2D(8)(torch.zeros(2, 8, 4, 4), torch.zeros(3, 4, 4).bool()),
            "batch",
        ),
        (lambda: PositionEncoding1D(8)(torch.zeros(1, 3, 4)), "dim=8"),
        (lambda: Rotary2D(8)(torch.zeros(1, 12, 8), torch.zeros(1, 12, 8), 3, 5), "H·W"),
        (lambda: Rotary2D(8)(torch.zeros(1, 12, 4), torch.zeros(1, 12, 4), 3, 4), "head_dim"),
    ],
)
def test_nonsense_is_rejected_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- the picture ------------------------------------------------------------------------------


def test_cli_draws_the_pos_enc_picture(tmp_path):
    from PIL import Image

    from hmer.cli import main

    out = tmp_path / "pictures" / "pos_enc.png"
    assert main(["viz", "pos-enc", "--out", str(out), "--height", "8", "--width", "32"]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = image.convert("L")
        assert width > height > 100
        assert pixels.getextrema()[0] < 64 < pixels.getextrema()[1]  # not a blank canvas
    assert [p.name for p in out.parent.iterdir()] == ["pos_enc.png"]  # no temp file left


def test_cli_rejects_a_dim_that_does_not_split_into_x_and_y_pairs(tmp_path, capsys):
    from hmer.cli import main

    with pytest.raises(SystemExit):
        main(["viz", "pos-enc", "--out", str(tmp_path / "x.png"), "--dim", "6"])
    assert "multiple of 4" in capsys.readouterr().err
    assert main(["viz", "pos-enc", "--out", str(tmp_path / "x.png"), "--channels", "0", "999"]) == 2
    assert "channels" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
