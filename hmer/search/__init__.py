"""Search, written once: greedy, beam, n-best and BTTR's bidirectional rescoring
(:mod:`hmer.search.beam`) over a small network interface (:mod:`hmer.search.network`) that
PyTorch (:mod:`hmer.search.torch_backend`) and onnxruntime (:mod:`hmer.search.onnx_backend`)
implement. This package imports neither torch nor onnxruntime; the torch backend does.
"""

from hmer.search.beam import Hypothesis, beam_search, greedy, nbest
from hmer.search.network import Direction, Network, Specials, Steps

__all__ = [
    "Direction",
    "Hypothesis",
    "Network",
    "Specials",
    "Steps",
    "beam_search",
    "greedy",
    "nbest",
]
