"""What a config builds for training: the model (from scratch or ``train.init_from``'s
weights) and its optimizer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from hmer.checkpoint import check_vocab, load_checkpoint, load_state_dict_checked
from hmer.errors import HmerError
from hmer.model.hmer_model import HmerModel

if TYPE_CHECKING:
    from hmer.config import Config
    from hmer.data.vocab import Vocab


def build_optimizer(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA) or Adadelta; no weight decay on biases and norm weights (ndim < 2)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    name = cfg.train.optimizer.lower()
    if name == "adamw":
        beta1, beta2 = (float(b) for b in cfg.train.betas)
        return torch.optim.AdamW(
            groups,
            lr=cfg.train.lr,
            betas=(beta1, beta2),
            eps=cfg.train.eps,
            fused=device.type == "cuda",
        )
    if name == "adadelta":
        return torch.optim.Adadelta(groups, lr=cfg.train.lr, eps=cfg.train.eps)
    raise HmerError(f"train.optimizer must be 'adamw' or 'adadelta', got {cfg.train.optimizer!r}")


def build_model(cfg: Config, vocab: Vocab) -> nn.Module:
    return HmerModel(
        cfg.model, len(vocab), pad_id=vocab.pad_id, sos_id=vocab.sos_id, eos_id=vocab.eos_id
    )


def init_weights(model: nn.Module, path: str, vocab: Vocab) -> None:
    """Load ``path``'s inference weights into ``model`` (CheckpointError naming the file when
    the vocabulary or the model's shape differs). Exported fp16 weights are cast on copy."""
    payload = load_checkpoint(path)
    check_vocab(payload, vocab, path)
    load_state_dict_checked(model, payload["model"], path)
