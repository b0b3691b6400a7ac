"""The example image, installed as the package ``hmer.examples`` (pyproject.toml), so that
``hmer demo`` finds it from any folder (:func:`hmer.paths.example_image`)."""
