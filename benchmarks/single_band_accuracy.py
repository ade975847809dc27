"""Accuracy of the solvers on a single synthetic band with Poisson noise, initialised 0.3 eV off.

Synthetic volume (local generator, so the numbers do not move with ``diffbands.synth``): 128 x 128 momenta
on [-1, 1]^2 1/A, 300 energies on [-4.5, 0.75] eV (17.6 meV step, as the WSe2 data), a cosine band
``E(k) = -1.5 + 0.4 (cos(pi kx) + cos(pi ky))``, a Gaussian line of standard deviation ``sigma`` with
``peak`` expected counts at the maximum over ``background`` counts per voxel, Poisson draws. Preprocessing:
the reference pipeline's Gaussian smoothing (0.8, 0.8, 1.0) pixels (``--no-smooth`` to skip). Energy:
``IntensityLikelihood(interp) + Smoothness(eta)``. Start: the true band + 0.3 eV.

Solvers compared (RMSE against the true band, in eV and in energy steps):

* ``icm``: plain CheckerboardICM (fuller's update), 150 epochs;
* ``icm_shift``: CheckerboardICM with the rigid-shift search (``max_shift=0.5`` eV);
* ``default``: ``Default()`` = ICM with shift search, then L-BFGS on the cubic-interpolated likelihood;
* ``default_linear``: the same with the linear likelihood kept for the refinement;
* ``lbfgs_alone_cubic`` / ``adam_alone``: GradientMAP from the 0.3 eV-off start without a discrete stage.

Writes JSON (machine, versions, configuration, numbers) to ``--out``.

    python benchmarks/single_band_accuracy.py [--seeds 0 1 2] [--sigma 0.06] [--eta 0.05] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.ndimage import gaussian_filter

import diffbands
from diffbands import BandMap
from diffbands.energy import IntensityLikelihood, Smoothness
from diffbands.solvers import CheckerboardICM, Default, GradientMAP, solve


def synthetic(n, ne, sigma, peak, background, seed):
    rng = np.random.default_rng(seed)
    k = np.linspace(-1.0, 1.0, n)
    energy = np.linspace(-4.5, 0.75, ne)
    band = -1.5 + 0.4 * (np.cos(np.pi * k)[:, None] + np.cos(np.pi * k)[None, :])
    lam = background + peak * np.exp(-((energy - band[..., None]) ** 2) / (2 * sigma**2))
    return k, energy, band, rng.poisson(lam).astype(np.float32)



def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--ne", type=int, default=300)
    parser.add_argument("--sigma", type=float, default=0.06)
    parser.add_argument("--peak", type=float, default=30.0)
    parser.add_argument("--background", type=float, default=1.0)
    parser.add_argument("--eta", type=float, default=0.05)
    parser.add_argument("--offset", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-smooth", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    runs = []
    for seed in args.seeds:
        k, energy, band, counts = synthetic(args.n, args.ne, args.sigma, args.peak, args.background, seed)
        step = float(energy[1] - energy[0])
        data = counts if args.no_smooth else gaussian_filter(counts, (0.8, 0.8, 1.0))
        bm = BandMap(data, [k, k, energy])
        linear = IntensityLikelihood(bm) + Smoothness(args.eta)
        cubic = IntensityLikelihood(bm, interp="cubic") + Smoothness(args.eta)
        b0 = jnp.asarray(band[None] + args.offset, jnp.float32)
        cases = {
            "icm": (CheckerboardICM(), linear),
            "icm_shift": (CheckerboardICM(max_shift=0.5), linear),
            "default": (Default(), cubic),
            "default_linear": (Default(refine_interp=None), linear),
            "lbfgs_alone_cubic": (GradientMAP("lbfgs"), cubic),
            "adam_alone": (GradientMAP("adam", learning_rate=2e-3, max_steps=1000), cubic),
        }
        row = {"seed": seed, "energy_step_eV": step}
        for name, (solver, en) in cases.items():
            res = jax.block_until_ready(solve(solver, en, b0))  # compile + run
            t0 = time.perf_counter()
            res = jax.block_until_ready(solve(solver, en, b0))
            seconds = time.perf_counter() - t0
            rmse = float(np.sqrt(np.mean((np.asarray(res.bands[0]) - band) ** 2)))
            row[name] = {
                "rmse_eV": rmse,
                "rmse_steps": rmse / step,
                "n_steps": int(res.n_steps),
                "converged": bool(res.converged),
                "energy": float(res.energy),
                "seconds": seconds,
            }
            print(f"seed {seed} {name:18s} RMSE {rmse * 1e3:6.2f} meV = {rmse / step:6.3f} steps "
                  f"({int(res.n_steps)} steps, {seconds:.2f} s)", flush=True)
        runs.append(row)

    names = [n for n in runs[0] if isinstance(runs[0][n], dict)]
    summary = {n: {"rmse_steps_mean": float(np.mean([r[n]["rmse_steps"] for r in runs])),
                   "rmse_steps_max": float(np.max([r[n]["rmse_steps"] for r in runs]))} for n in names}
    report = {
        "benchmark": "single_band_accuracy",
        "provenance": diffbands.io.provenance(vars(args)),
        "config": {k: v for k, v in vars(args).items() if k != "out"} | {
            "energy_axis_eV": [-4.5, 0.75], "k_axis": [-1.0, 1.0], "lineshape": "gaussian",
            "band": "-1.5 + 0.4 (cos(pi kx) + cos(pi ky))",
            "smoothing_pixels": None if args.no_smooth else [0.8, 0.8, 1.0],
        },
        "runs": runs,
        "summary": summary,
    }
    text = json.dumps(report, indent=2)
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
