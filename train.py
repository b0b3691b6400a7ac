"""Train a handwritten-math recognizer: the same as ``hmer train``.

    python train.py CONFIG [KEY=VALUE ...] [--out RUN_DIR] [--time-budget 8m] [--resume RUN_DIR]
    python -m torch.distributed.run --nproc_per_node 8 train.py configs/crohme_h200.yaml

See ``hmer/engine/train.py`` for what a run writes.
"""

from __future__ import annotations

import time

# Time budgets count from here, before the heavy imports.
_STARTED = time.monotonic()

import sys  # noqa: E402

from hmer.cli.train import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main(sys.argv[1:], started=_STARTED))
