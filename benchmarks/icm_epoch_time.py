"""Time one checkerboard-ICM epoch on a WSe2-sized single band (256 x 256 x 470, float32).

Runs a fixed number of epochs (no early stop) inside one jit-compiled ``lax.fori_loop`` over
``CheckerboardICM.step``, for both ways of computing the conditional argmin, and writes JSON
(machine, versions, configuration, seconds per epoch) to ``--out`` (default: stdout only).

    python benchmarks/icm_epoch_time.py [--shape 256 256 470] [--epochs 20] [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import diffbands
from diffbands.energy import IntensityLikelihood, Smoothness
from diffbands.solvers import CheckerboardICM


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 470))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    nx, ny, ne = args.shape
    rng = np.random.default_rng(0)
    energy = np.linspace(-8.25, 0.0, ne).astype(np.float32)
    kx, ky = np.meshgrid(np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), indexing="ij")
    band = -3.0 + 0.8 * np.cos(np.pi * kx) * np.cos(np.pi * ky)
    vol = np.exp(-((energy - band[..., None]) ** 2) / (2 * 0.1**2)).astype(np.float32)
    vol += rng.uniform(0.0, 0.3, vol.shape).astype(np.float32)
    en = IntensityLikelihood(vol, energy=energy) + Smoothness(0.1)
    bands0 = jnp.asarray(band[None] + 0.3, jnp.float32)
    grid = jnp.asarray(energy)

    results = {}
    for loop in (True, False):
        solver = CheckerboardICM(energy_loop=loop)

        @eqx.filter_jit
        def init(e, b):
            return solver.init(e, b, grid)  # noqa: B023 (compiled and used within this iteration)

        @eqx.filter_jit
        def epochs(e, state, n):
            return jax.lax.fori_loop(0, n, lambda i, s: solver.step(e, s), state)  # noqa: B023

        t0 = time.perf_counter()
        state = jax.block_until_ready(init(en, bands0))
        t_init_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        state = jax.block_until_ready(init(en, bands0))
        t_init = time.perf_counter() - t0
        jax.block_until_ready(epochs(en, state, jnp.asarray(1)))  # compile (n is traced: one compilation)
        per_epoch = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(epochs(en, state, jnp.asarray(1)))
            t1 = time.perf_counter() - t0
            t0 = time.perf_counter()
            jax.block_until_ready(epochs(en, state, jnp.asarray(args.epochs + 1)))
            tn = time.perf_counter() - t0
            per_epoch.append((tn - t1) / args.epochs)
        key = "energy_loop" if loop else "argmin_reduction"
        results[key] = {
            "seconds_per_epoch_min": min(per_epoch),
            "seconds_per_epoch_all": per_epoch,
            "init_seconds": t_init,
            "init_seconds_first_call_incl_compile": t_init_first,
        }
        print(f"{key}: {min(per_epoch) * 1e3:.1f} ms / epoch (init {t_init:.2f} s)", flush=True)

    report = {
        "benchmark": "icm_epoch_time",
        "provenance": diffbands.io.provenance(vars(args)),
        "config": {"shape": [nx, ny, ne], "dtype": "float32", "n_bands": 1, "epochs_timed": args.epochs,
                   "repeats": args.repeats, "eta": 0.1},
        "results": results,
        "reference": "fuller (TensorFlow 1, V100): 150 epochs in 45 s for one band = 0.3 s / epoch",
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
