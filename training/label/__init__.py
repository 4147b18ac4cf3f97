"""Stage 1, ``image-utility label``: pristine photos -> distorted images, each labelled useful or not.

``cli`` (the command) plans the sources, ``parts`` labels one source (``distortions`` makes its
versions, the labelers of :mod:`training.labelers` decide, ``measure`` keeps their raw facts,
``groundtruth`` the reference), ``rows`` turns the parts into the manifest's rows, ``outdir`` owns
the output folder (settings, shards, merge) and ``summary`` writes its summary; ``snapshot`` is a
manifest of a run still in progress.
"""
