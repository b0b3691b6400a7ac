"""The Python API: any input kind, batches, real-world picture variants, checkpoints.

The model is configs/tiny.yaml's, fitted for a few seconds to three synthetic expressions
(``hmer.data.synth``) so that it reads them back with short, stable hypotheses, and saved with
the engine's checkpoint format (``helpers.fit_checkpoint``; the fixtures are in ``conftest.py``).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers import CROHME_NAMES, LABELS, crohme_renders, paper, tiny_config, tiny_dataset, variants
from PIL import Image

from hmer.data.inkml import parse_inkml, render_traces
from hmer.data.latex import tokens_to_latex
from hmer.errors import DataError, HmerError
from hmer.runtime.reading import Prediction
from hmer.runtime.recognize import Recognizer

pytestmark = pytest.mark.usefixtures("single_thread")


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two ink images after bringing ``a`` to ``b``'s size and a 1.5 px blur
    (tolerates the one-pixel shifts of a crop or a rescale, not a different drawing)."""
    a = cv2.resize(a, b.shape[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
    a, b = (cv2.GaussianBlur(x.astype(np.float32), (0, 0), 1.5) for x in (a, b))
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _same(a: Prediction, b: Prediction) -> None:
    assert a.tokens == b.tokens and a.latex == b.latex
    assert a.score == pytest.approx(b.score, abs=1e-4)


# ----------------------------------------------------------------------------- tests


def test_fitted_model_reads_its_expressions_as_latex(recognizer, renders):
    for ink, tokens in zip(renders, LABELS, strict=True):
        prediction = recognizer.predict(paper(ink))
        assert prediction.tokens == tokens
        assert prediction.latex == tokens_to_latex(tokens)
        assert -1.0 < prediction.score <= 0.0  # a confident log-probability per token


def test_path_pil_numpy_and_tensor_inputs_give_the_same_prediction(recognizer, renders, tmp_path):
    path = tmp_path / "formula.png"
    Image.fromarray(paper(renders[0])).convert("RGB").save(path)
    from_path = recognizer.predict(path)
    assert from_path.tokens == LABELS[0]
    pil = Image.open(path)
    array = np.array(pil)
    chw = torch.from_numpy(array).permute(2, 0, 1)
    for other in (pil, array, chw, chw.float() / 255.0, str(path), array[:, :, 0]):
        _same(recognizer.predict(other), from_path)


def test_predict_batch_equals_one_image_at_a_time(recognizer, renders):
    inputs = [paper(ink) for ink in renders] + [renders[1], variants(renders[2])["color"]]
    batch = recognizer.predict_batch(inputs)
    assert [p.tokens for p in batch[:3]] == LABELS
    for x, prediction in zip(inputs, batch, strict=True):
        _same(recognizer.predict(x), prediction)
    assert recognizer.predict_batch([]) == []


def test_one_bad_input_costs_a_batch_nothing_with_return_errors(recognizer, renders, tmp_path):
    """predict_batch(..., return_errors=True): the unreadable input's slot holds the DataError
    naming it, the others read as they do alone; by default that error is raised."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    inputs = [paper(renders[0]), str(broken), np.zeros((20, 30), np.uint8), paper(renders[1])]
    found = recognizer.predict_batch(inputs, return_errors=True)
    assert isinstance(found[1], DataError) and "broken.png" in str(found[1])
    assert isinstance(found[2], DataError)  # a blank page shows no ink
    assert [p.tokens for p in (found[0], found[3])] == LABELS[:2]
    with pytest.raises(DataError, match=r"broken\.png"):
        recognizer.predict_batch(inputs)


@pytest.mark.parametrize("kind", ["reverse", "color", "photo", "huge"])
def test_picture_variants_read_like_the_clean_scan(recognizer, renders, kind):
    for ink, tokens in zip(renders, LABELS, strict=True):
        picture = variants(ink)[kind]
        assert similarity(recognizer.prepare(picture), recognizer.prepare(paper(ink))) > 0.9
        assert recognizer.predict(picture).tokens == tokens


@pytest.mark.crohme
def test_real_crohme_variants_preprocess_alike_and_are_recognized(recognizer, crohme):
    for ink in crohme_renders(crohme, CROHME_NAMES[:3]):
        pictures = variants(ink)
        prepared = {kind: recognizer.prepare(x) for kind, x in pictures.items()}
        predictions = recognizer.predict_batch(list(pictures.values()))
        clean = prepared["clean"]
        assert np.array_equal(prepared["reverse"], clean)  # polarity is undone exactly
        assert prepared["color"].shape == clean.shape
        assert np.abs(prepared["color"].astype(int) - clean).mean() < 1.0
        for kind in ("photo", "huge"):  # lighting, noise and resampling move a pixel here or there
            height, width = prepared[kind].shape
            assert abs(height - clean.shape[0]) <= 0.1 * clean.shape[0] + 2
            assert abs(width - clean.shape[1]) <= 0.1 * clean.shape[1] + 2
            assert similarity(prepared[kind], clean) > 0.95
        by_kind = dict(zip(pictures, predictions, strict=True))
        _same(by_kind["reverse"], by_kind["clean"])
        assert all(isinstance(p.latex, str) and np.isfinite(p.score) for p in predictions)


@pytest.mark.crohme
def test_inkml_files_are_rendered_at_the_models_scale(recognizer, crohme):
    path = crohme / "inkml" / "2014" / f"{CROHME_NAMES[0]}.inkml"
    render = render_traces(parse_inkml(path).traces, recognizer.config.render)
    _same(recognizer.predict(path), recognizer.predict(render))


def test_online_ink_is_read_as_inkml_training_ink_is(recognizer):
    """Strokes (lists of (x, y) points, e.g. from a pen tablet) or an Ink are drawn by the
    InkML renderer at the model's scale, whatever their unit."""
    pytest.importorskip("HersheyFonts", reason="synthetic handwriting needs hershey-fonts")
    from hmer.data.inkml import Ink
    from hmer.data.synth import draw

    traces = draw(LABELS[0], np.random.default_rng(0)).traces  # the hand of renders[0]
    as_lists = [trace.tolist() for trace in traces]
    in_pixels = [trace * 37.5 for trace in traces]  # another unit: same reading
    found = recognizer.predict_batch([as_lists, Ink(tuple(traces), None, "<pen>"), in_pixels])
    assert [p.tokens for p in found] == [LABELS[0]] * 3
    render = render_traces(traces, recognizer.config.render)
    _same(recognizer.predict(list(traces)), recognizer.predict(render))
    with pytest.raises(DataError, match="stroke 1"):
        recognizer.predict([[(0, 0), (1, 1)], [(2, float("nan"))]])
    with pytest.raises(DataError, match="stroke 0"):
        recognizer.predict([[1, 2, 3]])
    with pytest.raises(DataError, match="no strokes"):
        recognizer.predict([])


def test_unreadable_inputs_raise_errors_naming_them(recognizer, tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(DataError, match=r"missing\.png"):
        recognizer.predict(missing)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"corrupt\.jpg"):
        recognizer.predict(corrupt)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((40, 90), 255, np.uint8)).save(blank)
    with pytest.raises(DataError, match=r"blank\.png.*no ink"):
        recognizer.predict(blank)
    with pytest.raises(DataError, match="cannot read a dict"):
        recognizer.predict({"not": "an image"})


def test_attention_has_one_map_per_token_over_the_image(recognizer, renders):
    found = recognizer.attention(paper(renders[0]))
    assert found.tokens == LABELS[0]
    assert found.maps.shape[0] == len(LABELS[0])
    stride = recognizer.model.encoder.backbone.stride
    assert found.maps.shape[1:] == recognizer.model.encoder.backbone.output_size(*found.image.shape)
    assert abs(found.maps.shape[2] * stride - found.image.shape[1]) < stride
    np.testing.assert_allclose(found.maps.sum(axis=(1, 2)), 1.0, rtol=1e-4)


def test_exported_fp16_weights_read_like_the_checkpoint(recognizer, checkpoint, renders, tmp_path):
    from hmer.checkpoint import export_weights

    weights = export_weights(checkpoint, tmp_path / "model.pt")
    assert weights.stat().st_size < checkpoint.stat().st_size
    small = Recognizer.from_checkpoint(weights, device="cpu")
    assert [small.predict(paper(ink)).tokens for ink in renders] == LABELS


def test_checkpoint_of_a_training_run_loads(tmp_path, renders):
    from hmer.engine.train import train

    data = tiny_dataset(tmp_path / "data", n_train=4, n_test=1)
    cfg = tiny_config(data, "train.max_steps=2", "train.final_test=false", "train.val_every=0")
    train(cfg, tmp_path / "run")
    for name in ("best.pt", "last.pt"):
        loaded = Recognizer.from_checkpoint(tmp_path / "run" / name, device="cpu")
        assert loaded.config.model.d_model == cfg.model.d_model
        prediction = loaded.predict(paper(renders[0]), beam=3)
        assert isinstance(prediction.latex, str) and np.isfinite(prediction.score)


def test_from_pretrained_uses_the_shipped_model_or_says_how_to_get_one(
    checkpoint, monkeypatch, tmp_path
):
    import hmer.paths

    monkeypatch.setattr(hmer.paths, "default_model_path", lambda: tmp_path / "model.pt")
    with pytest.raises(HmerError, match=r"no shipped model.*export-weights.*from_checkpoint"):
        Recognizer.from_pretrained()
    (tmp_path / "model.pt").write_bytes(checkpoint.read_bytes())
    assert Recognizer.from_pretrained(device="cpu").vocab is not None


def test_public_names_load_lazily():
    import subprocess
    import sys

    import hmer
    from hmer.model import pos_enc

    # The PyTorch Recognizer imports torch when it is named; the onnxruntime one never does.
    code = (
        "import sys, hmer; assert 'torch' not in sys.modules; "
        "from hmer import OnnxRecognizer, Prediction; assert 'torch' not in sys.modules; "
        "from hmer import Recognizer; assert 'torch' in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    assert hmer.PositionEncoding2D is pos_enc.PositionEncoding2D
    assert hmer.sincos_2d is pos_enc.sincos_2d and hmer.Prediction is Prediction
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = hmer.nothing
