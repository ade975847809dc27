"""E2, 3-D single band: a Griewank-function surface (300 x 300 x 400) and graphene's pi/pi* bands
(200 x 200 x 400), noise-free and with Poisson noise.

Same protocol as E1 (:func:`experiments._methods.compare_methods`): theory-like start, the reference pipeline's
smoothing, per-band RMSE (meV) where the true band is visible (inside the window, below the Fermi level for
graphene). Methods: the reference ICM, GradientMAP alone, diffbands' Default, diffbands with a learned
perturbation. Arrays for the figure (``results/e2.h5``): the ky = middle slice of the data with every band
along it, and error maps (method - truth) every ``map_stride``-th momentum.

    python -m experiments.e2_3d_single_band [--set cases.griewank.nk=100 --set cases.graphene.nk=80]
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

TITLE = "E2: 3-D surfaces (Griewank, graphene), with and without noise: RMSE per method"


def run(config: dict, ctx) -> dict:
    arrays: dict = {}
    s = int(config.get("map_stride", 2))

    def store(key, bm, truth, init, outputs, mask):
        j = bm.intensity.shape[1] // 2  # the ky = middle slice
        t = np.asarray(truth.energies)
        arrays[key.replace(", ", "__").replace(" ", "_")] = {
            "title": key,
            "slice_data": np.asarray(bm.intensity[:, j, :], np.float32),
            "slice_ky": float(bm.k_coords[1][j]),
            "kx": np.asarray(bm.k_coords[0]),
            "ky": np.asarray(bm.k_coords[1]),
            "energy": np.asarray(bm.energy),
            "slice_truth": t[:, :, j],
            "slice_init": np.asarray(init)[:, :, j],
            "slice_mask": np.asarray(mask)[:, :, j],
            "map_mask": np.asarray(mask)[:, ::s, ::s],
            "slice_methods": {m: np.asarray(b[:, :, j], np.float32) for m, b in outputs.items()},
            "error_maps": {m: np.asarray(b[:, ::s, ::s] - t[:, ::s, ::s], np.float32) for m, b in outputs.items()},
        }

    results = compare_methods(config, ctx, store)
    ctx.save_arrays(extra=arrays)
    return results


if __name__ == "__main__":
    main("e2")
