"""E1, 2-D tests: a sinusoidal band and two crossing bands of different width and amplitude on a cut.

Data: the ``sinusoid`` and ``crossing`` presets of :mod:`diffbands.synth` (one momentum axis x energy), noise-free
and with Poisson noise; the reference pipeline's Gaussian smoothing. Start: a theory-like distortion of the truth
(stretched about each band's maximum, then shifted). Methods (see :mod:`experiments._methods`): the reference ICM,
ChainDP (exact grid MAP of the same objective), GradientMAP alone, diffbands' Default. Result: per-band RMSE (meV)
against the truth where the true band is inside the window. Arrays (data, truth, init, every solution) go to
``results/e1.h5`` for the figure.

    python -m experiments.e1_2d_tests [--set eta=0.05] [--set cases.sinusoid.nk=64]
"""

from __future__ import annotations

import numpy as np

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "experiments"

from experiments._common import main
from experiments._methods import compare_methods

TITLE = "E1: 2-D tests (sinusoid, crossing bands): RMSE of reference ICM, ChainDP, GradientMAP, Default"


def run(config: dict, ctx) -> dict:
    arrays: dict = {}

    def store(key, bm, truth, init, outputs, mask):
        ctx.record_input(key, bm)
        arrays[key.replace(", ", "__").replace(" ", "_")] = {
            "title": key,
            "data": np.asarray(bm.intensity, np.float32),
            "k": np.asarray(bm.k_coords[0]),
            "energy": np.asarray(bm.energy),
            "truth": np.asarray(truth.energies),
            "init": np.asarray(init),
            "mask": np.asarray(mask),
            "methods": {m: np.asarray(b, np.float32) for m, b in outputs.items()},
        }

    results = compare_methods(config, ctx, store)
    ctx.save_arrays(extra=arrays)
    return results


if __name__ == "__main__":
    main("e1")
