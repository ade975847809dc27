"""Figure scripts: each reads ``experiments/results/eN.json`` (+ ``eN.h5``) and writes ``figures/eN.png``/``.pdf``."""
