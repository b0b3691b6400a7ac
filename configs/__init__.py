"""The shipped training configs, installed as the package ``hmer.configs`` (pyproject.toml).

Name them on the command line (``hmer train tiny``); :func:`hmer.paths.config_path` finds them.
"""
