"""ONNX export: files and dynamic axes, graph-level agreement with PyTorch, and token parity of
the search run by onnxruntime + numpy (beam search and greedy) with the search run by PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CROHME_NAMES, LABELS, crohme_renders, paper, variants

from hmer.cli import main
from hmer.config import config_to_dict
from hmer.data.batching import collate
from hmer.data.latex import tokens_to_latex
from hmer.data.preprocess import to_tensor
from hmer.errors import CheckpointError
from hmer.paths import crohme_root
from hmer.runtime.export import cached_export, export_onnx
from hmer.runtime.exports import FILES
from hmer.runtime.onnx import OnnxRecognizer
from hmer.search import beam as search
from hmer.search.network import teacher_forced
from hmer.search.torch_backend import beam_search, greedy

pytestmark = pytest.mark.usefixtures("single_thread")

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="session")
def onnx_dir(recognizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.getbasetemp() / "predict_onnx"
    if not (out / FILES["meta"]).is_file():
        export_onnx(recognizer.model, recognizer.vocab, recognizer.config, out)
    return out


@pytest.fixture(scope="session")
def onnx_recognizer(onnx_dir) -> OnnxRecognizer:
    return OnnxRecognizer(onnx_dir, threads=1)


@pytest.fixture(scope="session")
def parity_images(recognizer, renders) -> tuple[str, list[np.ndarray]]:
    """Model inputs for the parity checks: real CROHME test expressions when the data is
    there, else the synthetic expressions and their picture variants."""
    root = crohme_root()
    if root is not None:
        pictures = crohme_renders(root, CROHME_NAMES)
        origin = "CROHME 2014 test"
    else:
        pictures = [v for ink in renders for v in variants(ink).values()]
        origin = "synthetic"
    return origin, [recognizer.prepare(p) for p in pictures]


def _batch(images: list[np.ndarray]):
    return collate([(to_tensor(im), [], "") for im in images], 0)


def test_export_writes_graphs_with_dynamic_axes_and_metadata(onnx_dir, recognizer):
    import onnx

    assert sorted(p.name for p in onnx_dir.iterdir()) == sorted(FILES.values())
    meta = json.loads((onnx_dir / FILES["meta"]).read_text())
    assert meta["vocab"] == recognizer.vocab.to_dict()
    assert meta["config"]["preprocess"] == config_to_dict(recognizer.config)["preprocess"]
    assert meta["decoder"]["layers"] == recognizer.config.model.num_decoder_layers

    def dims(path: Path) -> dict[str, list[str | int]]:
        graph = onnx.load(str(path)).graph
        return {
            v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*graph.input, *graph.output]
        }

    encoder = dims(onnx_dir / FILES["encoder"])
    assert encoder["image"] == ["batch", 1, "height", "width"]
    assert encoder["memory_mask"] == ["batch", "cells"]
    step = dims(onnx_dir / FILES["step"])
    assert step["tokens"] == ["rows"]
    assert step["past_keys"][1] == "rows" and step["past_keys"][3] == "past"
    assert step["logp"] == ["rows", len(recognizer.vocab)]


def test_graphs_compute_what_the_pytorch_model_computes(onnx_recognizer, recognizer, renders):
    model = recognizer.model
    images = [recognizer.prepare(paper(ink)) for ink in renders[:2]]
    batch = _batch(images)  # two sizes: padding and its mask included
    network = onnx_recognizer.network
    encoded = network.encode(batch.images.numpy(), batch.image_mask.numpy())
    with torch.no_grad():
        memory, memory_mask = model.encode(batch.images, batch.image_mask)
        state = model.decoder.start(memory, memory_mask)
    np.testing.assert_array_equal(encoded.mask, memory_mask.numpy())
    np.testing.assert_allclose(encoded.memory, memory.numpy(), atol=1e-4)
    keys = torch.stack([k for k, _ in state.memory_kv]).numpy()
    np.testing.assert_allclose(encoded.keys, keys, atol=1e-4)
    # Three rows per image, five steps from an empty cache: positions and cache growth.
    rows = 3 * len(images)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, len(recognizer.vocab), (rows, 5), generator=generator)
    steps = network.start(encoded)
    for t in range(5):
        with torch.no_grad():
            expected = torch.log_softmax(model.decoder.step(tokens[:, t], state), -1).numpy()
        logp = steps(tokens[:, t].numpy())
        assert steps.cache[0].shape[3] == t + 1
        np.testing.assert_allclose(logp, expected, atol=1e-4)
    # Teacher-forced scoring of whole sequences, both directions, as the rescoring does.
    sequences = [[tokens[i, : 2 + i].numpy() for i in range(3)], [tokens[3, :4].numpy()] * 3]
    r2l = np.array([[False, True, False], [True, False, True]])
    flat = [seq for row in sequences for seq in row]
    inputs, targets = teacher_forced(flat, r2l.ravel(), network.specials)
    found = network.score(encoded, inputs, targets).reshape(2, 3)
    with torch.no_grad():
        for b in range(2):
            for g in range(3):
                seq = torch.as_tensor(sequences[b][g])[None]
                direction = "r2l" if r2l[b, g] else "l2r"
                inputs, targets = model.sequences(seq, torch.tensor([seq.shape[1]]), direction)
                logp = model.decoder(inputs, memory[b : b + 1], memory_mask[b : b + 1])
                expected = logp.log_softmax(-1).gather(2, targets[:, :, None]).sum().item()
                assert found[b, g] == pytest.approx(expected, abs=1e-4)


def test_onnx_beam_search_gives_the_pytorch_tokens(onnx_recognizer, recognizer, parity_images):
    origin, images = parity_images
    decode = recognizer.config.decode
    network = onnx_recognizer.network
    ours, best_only = [], []
    for start in range(0, len(images), 3):  # batches of 3 images: rows of several images at once
        chunk = images[start : start + 3]
        memory = network.encode(*_pad(chunk))
        ours += [h[0] for h in search.nbest(network, memory, beam=10, max_len=decode.max_len)]
        best_only += search.beam_search(network, memory, beam=10, max_len=decode.max_len)
    # Skipping hopeless rescoring never changes the best.
    assert [h.tokens for h in best_only] == [h.tokens for h in ours]
    np.testing.assert_allclose([h.score for h in best_only], [h.score for h in ours], atol=1e-5)
    with torch.no_grad():
        theirs = [
            beam_search(recognizer.model, *_tensors(im), beam=10, max_len=decode.max_len)[0]
            for im in images
        ]
    assert [h.tokens for h in ours] == [h.tokens for h in theirs], origin
    np.testing.assert_allclose([h.score for h in ours], [h.score for h in theirs], atol=1e-4)


def test_onnx_greedy_and_one_way_beam_give_the_pytorch_tokens(
    onnx_recognizer, recognizer, parity_images
):
    _, images = parity_images
    batch = _batch(images)
    network = onnx_recognizer.network
    memory = network.encode(batch.images.numpy(), batch.image_mask.numpy())
    max_len = recognizer.config.decode.max_len
    with torch.no_grad():
        for direction in ("l2r", "r2l"):
            expected = greedy(recognizer.model, batch.images, batch.image_mask, max_len=max_len,
                              direction=direction)  # fmt: skip
            found = search.greedy(network, memory, max_len=max_len, direction=direction)
            assert [h.tokens for h in found] == [h.tokens for h in expected]
            np.testing.assert_allclose(
                [h.score for h in found], [h.score for h in expected], atol=1e-4
            )
        expected = beam_search(recognizer.model, batch.images, batch.image_mask, beam=4,
                               max_len=max_len, bidirectional=False, direction="r2l")  # fmt: skip
        found = search.nbest(network, memory, beam=4, max_len=max_len, bidirectional=False,
                             direction="r2l")  # fmt: skip
        assert [h[0].tokens for h in found] == [h.tokens for h in expected]


def test_onnx_recognizer_reads_pictures_like_pytorch(onnx_recognizer, recognizer, renders):
    pictures = [paper(ink) for ink in renders] + [variants(renders[0])["photo"]]
    expected = recognizer.predict_batch(pictures)
    found = onnx_recognizer.predict_batch(pictures)
    assert [p.tokens for p in found] == [p.tokens for p in expected]
    assert [p.tokens for p in found[:3]] == LABELS
    assert onnx_recognizer.predict(pictures[1]).latex == expected[1].latex


def test_cli_exports_then_predicts_with_onnxruntime(checkpoint, renders, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "onnx"
    assert main(["export", "--onnx", str(out), "--checkpoint", str(checkpoint)]) == 0
    assert all((out / name).is_file() for name in FILES.values())
    image = tmp_path / "x.png"
    Image.fromarray(paper(renders[0])).save(image)
    capsys.readouterr()
    assert main(["predict", "--onnx", str(out), str(image)]) == 0
    assert capsys.readouterr().out.strip() == tokens_to_latex(LABELS[0])


def test_the_decoder_runs_on_one_thread_unless_asked(onnx_dir):
    def threads(recognizer: OnnxRecognizer) -> list[int]:
        network = recognizer.network
        sessions = (network.encoder, network.step, network.scorer)
        return [s.get_session_options().intra_op_num_threads for s in sessions]

    assert threads(OnnxRecognizer(onnx_dir, threads=2)) == [2, 1, 1]
    assert threads(OnnxRecognizer(onnx_dir, threads=2, decoder_threads=2)) == [2, 2, 2]


def test_a_checkpoint_is_exported_once_per_content(checkpoint, tmp_path, monkeypatch):
    import hmer.runtime.export

    monkeypatch.setenv("HMER_CACHE", str(tmp_path / "cache"))
    announced = []
    first = cached_export(checkpoint, announce=announced.append)
    assert announced == [first] and first.parent == tmp_path / "cache" / "onnx"
    assert sorted(p.name for p in first.iterdir()) == sorted(FILES.values())
    copy = tmp_path / "copy.pt"
    copy.write_bytes(checkpoint.read_bytes())

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(hmer.runtime.export, "export_onnx", no_export)
    assert cached_export(copy, announce=announced.append) == first  # same bytes: same export
    assert announced == [first]  # nothing to announce the second time
    assert (
        OnnxRecognizer.from_checkpoint(copy, threads=1).vocab.to_dict()
        == json.loads((first / FILES["meta"]).read_text())["vocab"]
    )


def test_an_interrupted_export_leaves_nothing_to_reuse(checkpoint, tmp_path, monkeypatch):
    import hmer.runtime.export

    monkeypatch.setenv("HMER_CACHE", str(tmp_path / "cache"))
    real = hmer.runtime.export.export_onnx

    def killed(model, vocab, config, out_dir, **kwargs):
        real(model, vocab, config, out_dir, **kwargs)
        (Path(out_dir) / FILES["step"]).unlink()  # a half-written folder...
        raise KeyboardInterrupt  # ...when the user presses Ctrl-C

    monkeypatch.setattr(hmer.runtime.export, "export_onnx", killed)
    with pytest.raises(KeyboardInterrupt):
        cached_export(checkpoint)
    assert list((tmp_path / "cache" / "onnx").iterdir()) == []
    monkeypatch.setattr(hmer.runtime.export, "export_onnx", real)
    done = cached_export(checkpoint)
    assert sorted(p.name for p in done.iterdir()) == sorted(FILES.values())


def test_the_cache_keeps_the_most_recently_used_exports(checkpoint, tmp_path, monkeypatch):
    import os

    import hmer.runtime.exports

    onnx = tmp_path / "cache" / "onnx"
    monkeypatch.setenv("HMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hmer.runtime.exports, "CACHED_EXPORTS", 3)
    for age, name in enumerate(["recent", "older", "oldest", "ancient"], start=1):
        (onnx / name).mkdir(parents=True)
        os.utime(onnx / name, (0, 1e9 - age))  # all used long before this test
    (onnx / ".killed-export").mkdir()
    os.utime(onnx / ".killed-export", (0, 1e9))
    made = cached_export(checkpoint)
    assert sorted(p.name for p in onnx.iterdir()) == sorted([made.name, "recent", "older"])
    os.utime(made, (0, 1e9 - 10))  # as if unused for years
    assert cached_export(checkpoint) == made  # a cache hit marks it used now
    assert made.stat().st_mtime > onnx.joinpath("recent").stat().st_mtime


def test_unreadable_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.pt"):
        cached_export(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        OnnxRecognizer.from_checkpoint(junk)


def _pad(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    batch = _batch(images)
    return batch.images.numpy(), batch.image_mask.numpy()


def _tensors(image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _batch([image])
    return batch.images, batch.image_mask
