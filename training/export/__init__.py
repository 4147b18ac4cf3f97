"""Stage 3, ``image-utility export``: a checkpoint -> an ONNX model folder the service loads.

``cli`` (the command: variants, the choice of precision, publishing a version) uses ``convert``
(PyTorch -> ONNX, checked against PyTorch), ``quantize`` (static int8) and ``card`` (the model
folder's README.md); the test split is measured through :mod:`training.predict`.
"""
