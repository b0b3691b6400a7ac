"""A local web page to write a formula with a mouse, pen or finger, or to give a picture of one,
and read it as LaTeX: ``hmer serve``, then open http://127.0.0.1:8000.

The page (``hmer/assets/draw.html``) posts the strokes to ``POST /predict`` as JSON,
``{"strokes": [[[x, y], ...], ...]}``: one list of points per pen stroke, in page pixels, y
pointing down (as InkML). The strokes are drawn by the CROHME ink renderer, the one that draws
every InkML training sample, then prepared and decoded like any other input, so ink from the
page reaches the model as training ink did. Pictures go to ``POST /predict/image``. The answer
holds the compact LaTeX, its MathML preview, a confidence in words from the model card and the
other readings of the search.

- :mod:`hmer.serve.app`: the routes and refusals (FastAPI); :mod:`hmer.serve.schema`: what
  requests and answers hold, and the limits.
- :mod:`hmer.serve.worker`: the model, on one thread of its own.
- :mod:`hmer.serve.preview`: LaTeX -> MathML; :mod:`hmer.serve.about`: the model's card, in words.
- :mod:`hmer.serve.guard`, :mod:`hmer.serve.server`, :mod:`hmer.serve.logs`: body limits,
  uvicorn and its timeouts, escaped logs.

The server listens on 127.0.0.1 unless told otherwise. Nothing here imports torch.
"""

from hmer.serve.app import PAGE, make_app
from hmer.serve.preview import math_preview
from hmer.serve.server import LocalServer

__all__ = ["PAGE", "LocalServer", "make_app", "math_preview"]
