"""The offline side of image-utility: the pipeline that makes the bundled utility models.

One package per stage, in the order they run, each with its command (``cli.py``: ``main(argv)``):

- :mod:`training.label`    ``image-utility label``    pristine photos -> distorted images + a labelled manifest
- :mod:`training.train`    ``image-utility train``    manifest -> ResNet-18 checkpoint
- :mod:`training.export`   ``image-utility export``   checkpoint -> ONNX model folder (+ int8, model card)
- :mod:`training.evaluate` ``image-utility evaluate`` model folder + manifest -> the paper's experiments, report

and the vocabulary they share: :mod:`~training.utility` (the paper's equations),
:mod:`~training.labelers` (the networks whose decisions define utility), :mod:`~training.manifest`
(reading and writing the manifest), :mod:`~training.metrics`, :mod:`~training.predict` (a model
folder run on image files through the service's engine), :mod:`~training.images` (the one image
loader), :mod:`~training.files` (atomic writes), :mod:`~training.provenance` (commit, portable
paths), :mod:`~training.markdown` (numbers and tables) and :mod:`~training.options` (every command's
flags, checked before torch is imported).
"""
