"""Stage 4, ``image-utility evaluate``: a model folder and a manifest -> the paper's experiments, re-measured.

``cli`` (the command) runs ``experiments`` (Tables I-II, continuous utility, beyond JPEG, Fig. 1
with the ``baselines`` and ``nriqa`` scores, Fig. 2 classification) and ``detection`` (Fig. 2 mAP);
``report`` writes report.md from ``claims`` (the verdicts), ``sections`` and ``figures``.
``scorecard`` measures the predictor's own goals per collection.
"""
