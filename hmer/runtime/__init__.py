"""Inference for users: read pictures of formulas with PyTorch (:mod:`hmer.runtime.recognize`)
or with onnxruntime alone (:mod:`hmer.runtime.onnx`, which never imports torch).

Both recognizers share one reading path (:mod:`hmer.runtime.reading`: inputs, batching,
padding, the search of :mod:`hmer.search`) and differ only in the network they run. Nothing
here imports the training engine.
"""
