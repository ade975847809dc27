"""Reproducible experiments on synthetic data (issue 5): one module + one seeded config per experiment.

``python -m experiments`` runs every experiment and every figure script (see :mod:`experiments.run_all`);
``python -m experiments.e1_2d_tests --set key=value`` runs one. Results: ``experiments/results/eN.json``
(+ ``eN.h5`` where arrays matter).
"""
