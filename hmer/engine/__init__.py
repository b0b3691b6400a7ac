"""Training and evaluation on plain PyTorch (see each module's docstring).

- :mod:`hmer.engine.train`: the loop (``train(cfg, run_dir)``), schedules, EMA, time budgets.
- :mod:`hmer.engine.data`: in-RAM datasets, validation slice, bucketed loaders.
- :mod:`hmer.engine.evaluate`: greedy / beam scoring, the ExpRate table, per-expression TSVs.
- :mod:`hmer.engine.checkpoint`: the one checkpoint format, ``load_model``, ``export_weights``.
- :mod:`hmer.engine.distributed`: torchrun / DDP helpers. :mod:`hmer.engine.plot`: curves.
"""
