"""Training and evaluation on plain PyTorch (see each module's docstring).

- :mod:`hmer.engine.train`: the loop (``train(cfg, run_dir)``), built from
  :mod:`~hmer.engine.budget` (step plans, time budgets, the run's clock),
  :mod:`~hmer.engine.schedule` (learning rate), :mod:`~hmer.engine.ema`,
  :mod:`~hmer.engine.build` (model, optimizer), :mod:`~hmer.engine.batches` (batches on the
  device), :mod:`~hmer.engine.metrics_log` (metrics.jsonl, phases) and
  :mod:`~hmer.engine.signals` (SIGTERM / SIGINT).
- :mod:`hmer.engine.data`: in-RAM datasets, validation slice, bucketed loaders.
- :mod:`hmer.engine.evaluate`: greedy / beam scoring, the ExpRate table, per-expression TSVs.
- :mod:`hmer.engine.rng`: the RNG state saved in ``last.pt`` (the checkpoint format itself is
  :mod:`hmer.checkpoint`, shared with inference).
- :mod:`hmer.engine.distributed`: torchrun / DDP helpers. :mod:`hmer.engine.plot`: curves.
"""
