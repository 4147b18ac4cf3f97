"""Stage 2, ``image-utility train``: a label manifest -> a ResNet-18 checkpoint that predicts utility.

``cli`` (the command: resume, checkpoints, the choice of the best epoch) runs ``epoch`` (one
balanced, augmented pass and its evaluation) on ``dataset`` (the splits' pixels, cached exactly as
the service preprocesses them) with the ``model``; ``targets`` are the dense soft targets, ``curves``
the training curves, ``speed`` measures this CPU before choosing sizes; ``distributed`` is what
changes under torchrun (DDP: each rank's share of the global batch, rank 0 writing the files).
"""
