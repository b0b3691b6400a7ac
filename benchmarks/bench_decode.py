"""Decoding speed: formulas/s for beam-10 bidirectional search, cached vs prefix recomputation.

    python benchmarks/bench_decode.py [--device cpu|cuda] [--batch-sizes 1 16] [--threads 1]
                                      [--bf16] [--no-recompute] [--repeats N]

A model with BTTR's decoder (d_model 256, 8 heads, 3 layers, ff 1024) and a lighter DenseNet
(same stride 16, so the same memory length; ``--encoder bttr`` for the full one) is first overfit
on a few expressions so that its hypotheses end the way a trained model's do: 16 real CROHME
expressions rendered at the 32 px symbol scale when the data is there (``hmer.paths``), else
synthetic token strings drawn as text. Then the same expressions are decoded:

- ``greedy``: batched greedy, cached;
- ``beam cached``: beam 10, both directions + rescoring (:func:`hmer.search.beam_search` run by
  :class:`hmer.search.torch_backend.TorchNetwork`);
- ``beam recompute``: the same search recomputing the whole prefix at every step
  (``use_cache=False``), our strongest baseline: an image's hypotheses still share its memory's
  keys/values, and ended hypotheses are dropped;
- ``beam bttr``: prefix recomputation as BTTR's beam search does it, the image memory repeated
  for every hypothesis (so its keys/values are projected again per hypothesis and per step).

All beam rows return the best hypothesis (``beam_search``), so they share the rescoring, which
skips hypotheses that cannot win.

Decode rows start from the encoder's memory; the encoder's own time per formula is printed apart
(end-to-end = both). Times are CPU seconds of the process on CPU (``--threads 1`` by default, so
that a busy shared machine does not distort them), wall seconds with synchronization on GPU.
Target: cached >= 5x faster than prefix recomputation at batch 1 on CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hmer.data.vocab import Vocab
from hmer.metrics import exprate
from hmer.model import HmerModel, ModelConfig
from hmer.search import beam as search
from hmer.search.torch_backend import (
    RecomputedSteps,
    TorchMemory,
    TorchNetwork,
    beam_search,
    greedy,
)

N_EXPRESSIONS = 16
MAX_LEN = 120


def _crohme_expressions(n: int) -> tuple[list[np.ndarray], list[list[str]], str] | None:
    from hmer.data.inkml import RenderConfig, parse_inkml, render_traces
    from hmer.data.latex import normalize_latex
    from hmer.paths import crohme_root

    root = crohme_root()
    if root is None:
        return None
    images, truths = [], []
    for path in sorted((root / "inkml" / "train" / "MfrDB").glob("*.inkml")):
        ink = parse_inkml(path)
        tokens = normalize_latex(ink.latex, str(path))
        image = render_traces(ink.traces, RenderConfig())
        # Typical lengths (the CROHME median is ~20 tokens); bounded sizes keep training short.
        if 8 <= len(tokens) <= 48 and image.shape[0] <= 96 and image.shape[1] <= 320:
            images.append(image)
            truths.append(tokens)
        if len(truths) == n:
            break
    return images, truths, f"{n} CROHME train expressions (MfrDB), 32 px symbols"


def _synthetic_expressions(n: int, vocab: Vocab) -> tuple[list[np.ndarray], list[list[str]], str]:
    import cv2

    rng = np.random.default_rng(0)
    images, truths = [], []
    for _ in range(n):
        tokens = list(rng.choice(vocab.symbols, size=int(rng.integers(8, 40))))
        text = " ".join(tokens)
        (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        image = np.zeros((height + 24, width + 16), dtype=np.uint8)
        cv2.putText(image, text, (8, height + 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1)
        images.append(image)
        truths.append(tokens)
    return images, truths, f"{n} synthetic token strings drawn as text (CROHME not found)"


def _batch(images: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    height = max(i.shape[0] for i in images)
    width = max(i.shape[1] for i in images)
    batch = torch.zeros(len(images), 1, height, width)
    mask = torch.ones(len(images), height, width, dtype=torch.bool)
    for k, image in enumerate(images):
        batch[k, 0, : image.shape[0], : image.shape[1]] = torch.from_numpy(image) / 255.0
        mask[k, : image.shape[0], : image.shape[1]] = False
    return batch.to(device), mask.to(device)


def _train(model, images, ids, device, steps: int) -> tuple[int, float]:
    """Overfit until greedy reads every expression back (checked every 25 steps)."""
    batch, mask = _batch(images, device)
    lengths = torch.tensor([len(t) for t in ids], device=device)
    tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long, device=device)
    for k, seq in enumerate(ids):
        tokens[k, : len(seq)] = torch.tensor(seq)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    for step in range(1, steps + 1):
        model.train()
        loss = model(batch, mask, tokens, lengths)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                found = greedy(model, batch, mask, max_len=MAX_LEN)
            if exprate([h.tokens for h in found], ids)["exprate"] == 100.0:
                break
    model.eval()
    return step, loss.item()


def _timed(fns: dict[str, object], device: torch.device, repeats: int) -> tuple[dict, dict]:
    """Each ``fns[label]()``'s result (from a warm-up run) and its best time over ``repeats``
    rounds; a round times every function once, in turn, so that a machine whose speed drifts
    over minutes (a shared VM) slows all of them alike and their ratios stay fair. GPU wall
    time, or on CPU the process's CPU time (with one thread that is the compute time, unlike
    wall time on a shared machine)."""

    def seconds(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize(device)
            return time.perf_counter() - start
        start = time.process_time()
        fn()
        return time.process_time() - start

    results = {label: fn() for label, fn in fns.items()}
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for label, fn in fns.items():
            best[label] = min(best[label], seconds(fn))
    return results, best


def _print_lengths(what: str, sequences: list[list]) -> None:
    lengths = [len(s) for s in sequences]
    print(f"{what} lengths: mean {np.mean(lengths):.1f}, min {min(lengths)}, max {max(lengths)}")


class _BttrSteps(RecomputedSteps):
    """Prefix recomputation with the image memory repeated per hypothesis, as in BTTR."""

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        new = torch.from_numpy(tokens).to(self.memory.memory.device)[:, None]
        self.prefix = new if self.prefix is None else torch.cat((self.prefix, new), dim=1)
        per_image = len(tokens) // len(self.memory.memory)
        memory, memory_mask = (x.repeat_interleave(per_image, 0) for x in self.memory)
        logits = self.model.decoder(self.prefix, memory, memory_mask)[:, -1]
        return torch.log_softmax(logits.float(), dim=-1).cpu().numpy()


class _BttrNetwork(TorchNetwork):
    def start(self, memory: TorchMemory) -> _BttrSteps:
        return _BttrSteps(self.model, memory)


def _networks(model: HmerModel) -> dict[str, TorchNetwork]:
    """The network each decoder row runs."""
    return {
        "greedy": TorchNetwork(model),
        "beam cached": TorchNetwork(model),
        "beam recompute": TorchNetwork(model, use_cache=False),
        "beam bttr": _BttrNetwork(model),
    }


def _decode(network: TorchNetwork, memories: list[TorchMemory], label: str, beam: int) -> list:
    """Best hypothesis per formula over all batches: greedy, or bidirectional beam search."""
    found = []
    for memory in memories:
        if label == "greedy":
            found += search.greedy(network, memory, max_len=MAX_LEN)
        else:
            found += search.beam_search(network, memory, beam=beam, max_len=MAX_LEN)
    return found


def _report(model, images, ids, batch_size: int, args, device: torch.device) -> None:
    """Print one row per decoder for batches of ``batch_size`` formulas."""
    # Repeat the expressions to fill a batch larger than the set.
    order = [i % len(images) for i in range(max(batch_size, len(images)))]
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    inputs = [_batch([images[i] for i in chunk], device) for chunk in chunks]
    memories = [TorchMemory(*model.encode(*x)) for x in inputs]
    networks = _networks(model)
    truths = [ids[i] for i in order]
    n = len(order)
    labels = ["greedy", "beam cached"]
    labels += [] if args.no_recompute else ["beam recompute", "beam bttr"]
    fns = {label: lambda x=label: _decode(networks[x], memories, x, args.beam) for label in labels}
    fns["(encoder)"] = lambda: [model.encode(*x) for x in inputs]
    found, times = _timed(fns, device, args.repeats)
    for label in fns:
        seconds = times[label]
        rate = (
            ""
            if label == "(encoder)"
            else f"{exprate([h.tokens for h in found[label]], truths)['exprate']:>8.1f}%"
        )
        print(f"{batch_size:>5}  {label:<16}{n / seconds:>11.1f}{1000 * seconds / n:>11.2f}{rate}")
    for baseline in ("beam recompute", "beam bttr"):
        if baseline in times:
            ratio = times[baseline] / times["beam cached"]
            print(f"{batch_size:>5}  cached beam search is {ratio:.1f}x faster than {baseline}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--steps", type=int, default=400, help="most overfitting steps")
    parser.add_argument("--encoder", choices=["light", "bttr"], default="light")
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (best is kept)")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (small ops: 1 is fastest)"
    )
    parser.add_argument("--no-recompute", action="store_true", help="skip the slow baseline")
    parser.add_argument("--bf16", action="store_true", help="decode under bf16 autocast")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    vocab = Vocab.crohme()
    data = _crohme_expressions(N_EXPRESSIONS) or _synthetic_expressions(N_EXPRESSIONS, vocab)
    images, truths, origin = data
    ids = [vocab.encode(t) for t in truths]
    light = {"growth_rate": 16, "block_config": [4, 4, 4]} if args.encoder == "light" else {}
    cfg = ModelConfig(**light, encoder_dropout=0.0, dropout=0.0)
    model = HmerModel(cfg, len(vocab), vocab.pad_id, vocab.sos_id, vocab.eos_id).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"decode benchmark on {name}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"data: {origin}")
    print(
        f"model: {n_params / 1e6:.2f} M parameters ({args.encoder} DenseNet growth "
        f"{cfg.growth_rate} blocks {cfg.block_config}; decoder d={cfg.d_model} "
        f"h={cfg.nhead} L={cfg.num_decoder_layers} ff={cfg.dim_feedforward})"
    )
    start = time.perf_counter()
    steps, loss = _train(model, images, ids, device, args.steps)
    print(f"overfit: {steps} steps, loss {loss:.4f}, {time.perf_counter() - start:.0f} s")

    _print_lengths("truth", ids)
    header = f"{'batch':>5}  {'decoder':<16}{'formulas/s':>11}{'ms/formula':>11}{'ExpRate':>9}"
    print(header)
    print("-" * len(header))
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    with torch.no_grad(), amp:
        for batch_size in args.batch_sizes:
            _report(model, images, ids, batch_size, args, device)
    decoded = beam_search(model, *_batch(images, device), beam=args.beam, max_len=MAX_LEN)
    _print_lengths(f"decoded (beam {args.beam}, batch {len(images)})", [h.tokens for h in decoded])


if __name__ == "__main__":
    main()
