"""The WSe2-like 14-band volume: diffbands' default reconstruction, then the generative multiband likelihood.

Same data and initialisation as ``benchmarks/wse2_14band.py`` (the ``wse2`` preset from
``wse2_fang2015_bands.h5``; initial bands ``wse2_fang2015_cappelluti_interlayer_bands.h5`` aligned at the VBM,
no hand-set offsets). After the default reconstruction (ICM with rigid-shift search + L-BFGS on the cubic
``-log I`` likelihood, smoothness, theory prior, exclusion) the bands and the forward model's nuisance
parameters (amplitude fields, widths, background) are fitted jointly under the Poisson likelihood of the
counts (:class:`diffbands.energy.GenerativeLikelihood`, :func:`~diffbands.energy.fit_generative`), with the
same smoothness and theory prior, by one of two methods:

* ``--method newton`` (default): :func:`diffbands.energy.refine_generative`, checkerboard Levenberg-Marquardt
  steps of each momentum's parameters (all band energies, log-amplitudes and background at that momentum)
  under the Poisson likelihood, global widths (sigma, gamma, momentum resolution) between rounds. With
  ``--start tied`` (default) they start from the theory tied fit (``start="tied"``): the theory aligned by
  :func:`diffbands.align_theory` (one global scale and offset fitted to the data, no hand-set offsets) plus
  a shift, an energy scale and 6 hexikes per band, fitted under the same Poisson likelihood
  (:func:`diffbands.energy.fit_tied_generative`), with that aligned theory as the theory prior; with
  ``--start default`` from the default reconstruction.
* ``--method adam``: :func:`~diffbands.energy.fit_generative`; stage 1 fits the nuisance parameters (coarse
  amplitude grid, widths, background) with the bands fixed, stage 2 fits everything.

    python benchmarks/wse2_generative.py [--k-step 4] [--method newton] [--start tied] [--rounds 4] [--sweeps 10]
        [--coarse N] [--fine-sweeps 4]

At full size (``--k-step 1``) the Newton refinement runs coarse to fine by default (``--coarse 4``: the tied fit
and the rounds on 64 x 64 momenta, interpolated, then ``--fine-sweeps`` sweeps on all 256 x 256 from there; the
JSON has both).

Writes JSON with provenance, per-band RMSE (meV, first Brillouin zone) after each stage, and wall times.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

import diffbands as db
from diffbands import io, synth
from diffbands.energy import Smoothness, TheoryPrior, refine_generative
from diffbands.energy._generative import GenerativeLikelihood, fit_generative
from diffbands.perturbation import hexike_basis
from diffbands.theory import first_bz_mask

A_WSE2 = 3.32  # lattice constant (A) of the theory grids' Brillouin zone


def per_band_rmse(bands, truth: db.Bands, mask: np.ndarray) -> list[float]:
    d = np.asarray(bands, np.float64) - np.asarray(truth.energies, np.float64)
    return [round(1e3 * float(np.sqrt(np.mean(x[mask] ** 2))), 2) for x in d]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", type=float, default=1000.0, help="Poisson counts at the brightest voxel")
    p.add_argument("--k-step", type=int, default=1, help="subsample the 256 x 256 k grid (4: 64 x 64)")
    p.add_argument("--eta", type=float, default=0.1)
    p.add_argument("--sigma", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default="newton", choices=("newton", "adam"),
                   help="newton: refine_generative (checkerboard Newton); adam: fit_generative")
    p.add_argument("--rounds", type=int, default=4, help="newton: rounds of sweeps + width updates")
    p.add_argument("--sweeps", type=int, default=10, help="newton: checkerboard sweeps per round")
    p.add_argument("--steps", type=int, default=200, help="adam: joint optimiser steps (stage 2)")
    p.add_argument("--nuisance-steps", type=int, default=50, help="nuisance-only Adam steps (stage 1)")
    p.add_argument("--optimizer", default="adam", choices=("adam", "lbfgs"))
    p.add_argument("--learning-rate", type=float, default=2e-3, help="Adam step of the bands (eV)")
    p.add_argument("--amp-shape", type=int, default=8, help="coarse amplitude grid nodes per axis")
    p.add_argument("--per-band-widths", action="store_true", help="one (sigma, gamma) per band (default shared)")
    p.add_argument("--start", default=None, choices=("default", "theory", "tied"),
                   help="start of the generative fit: the default reconstruction, the aligned theory (adam) or the "
                        "theory tied fit (newton; the default there)")
    p.add_argument("--coarse", type=int, default=None,
                   help="newton: solve on every N-th momentum first, then finish at full resolution (default: the "
                        "pipeline's 'auto', the largest step keeping >= 64 momenta per axis)")
    p.add_argument("--fine-sweeps", type=int, default=4, help="newton --coarse: full-resolution sweeps")
    p.add_argument("--tied-iterations", type=int, default=12, help="newton --start tied: tied-fit iterations")
    p.add_argument("--window", default="auto", help="energy points per band ('auto', an int, or 'full')")
    p.add_argument("--data", default=None, help="data folder (default: $DIFFBANDS_DATA or ../shared/data)")
    p.add_argument("--out", default=None, help="default benchmarks/results/wse2_generative[_kstepN].json")
    args = p.parse_args()
    if args.start is None:
        args.start = "tied" if args.method == "newton" else "default"
    if (args.method, args.start) in (("newton", "theory"), ("adam", "tied")):
        p.error(f"--start {args.start} does not apply to --method {args.method}")
    tag = (("" if args.k_step == 1 else f"_kstep{args.k_step}") + ("" if args.method == "newton" else "_adam")
           + ("_local" if args.method == "newton" and args.start == "default" else ""))
    out = Path(args.out or f"benchmarks/results/wse2_generative{tag}.json")

    if args.coarse is None:
        args.coarse = max(1, (256 // args.k_step) // 64)
    bandmap, truth = synth.make_preset("wse2", seed=args.seed, counts=args.counts, k_step=args.k_step,
                                       data_root=args.data)
    theory_file = db.data_path("theory/wse2/wse2_fang2015_cappelluti_interlayer_bands.h5", args.data)
    theory = db.regrid_bands(io.load_bands(theory_file), bandmap)
    vbm = float(np.asarray(truth.energies[0]).max())
    init = theory.with_energies(np.asarray(theory.energies) + vbm)
    kx, ky = (np.asarray(c) for c in bandmap.k_coords)
    mask = np.asarray(first_bz_mask(kx, ky, A_WSE2))

    t0 = time.perf_counter()
    rec = db.reconstruct(db.default_energy(bandmap, init, eta=args.eta, sigma=args.sigma), init)
    t_default = time.perf_counter() - t0
    bands_default = np.asarray(rec.bands.energies)
    rmse_default = per_band_rmse(bands_default, truth, mask)
    print(f"default: mean {np.mean(rmse_default):.1f} meV {rmse_default} ({t_default:.1f} s)")

    if args.method == "newton":
        extra: dict = {}
        t0 = time.perf_counter()
        if args.start == "tied":  # the theory tied fit, then per momentum
            aligned, offset, scale = db.align_theory(bandmap, theory)
            basis = hexike_basis(kx, ky, A_WSE2, noll=tuple(range(2, 8)))
            kw = dict(theory=aligned, sigma_theory=args.sigma, eta=args.eta, temperature=300.0, fermi_level=0.0)
            ref = refine_generative(bandmap, aligned, rounds=args.rounds, sweeps=args.sweeps, start="tied",
                                    tied_basis=basis, tied_iterations=args.tied_iterations, coarse=args.coarse,
                                    fine_sweeps=0, **kw)
            if args.coarse > 1:  # the coarse solution interpolated, then full-resolution sweeps from it
                jax.block_until_ready(ref.bands)
                coarse_rmse = per_band_rmse(ref.bands, truth, mask)
                extra["coarse_interpolated"] = {"per_band_rmse_meV": coarse_rmse,
                                                "mean_rmse_meV": round(float(np.mean(coarse_rmse)), 2),
                                                "wall_s": round(time.perf_counter() - t0, 3)}
                print(f"coarse {args.coarse} interpolated: mean {np.mean(coarse_rmse):.1f} meV {coarse_rmse}")
                start_bands = ref.start
                if args.fine_sweeps:
                    ref = refine_generative(bandmap, ref.bands, rounds=1, sweeps=args.fine_sweeps, sigma=float(ref.sigma),
                                            gamma=float(ref.gamma), kappa=float(ref.kappa), **kw)
                    ref = eqx.tree_at(lambda r: r.start, ref, start_bands)
            extra.update({"aligned_offset_eV": offset, "aligned_scale": scale, "tied_basis": "hexikes Noll 2-7",
                     "aligned_per_band_rmse_meV": per_band_rmse(aligned.energies, truth, mask)})
        else:
            ref = refine_generative(bandmap, bands_default, theory=init, sigma_theory=args.sigma, eta=args.eta,
                                    temperature=300.0, fermi_level=0.0, rounds=args.rounds, sweeps=args.sweeps)
        jax.block_until_ready(ref.bands)
        t2 = time.perf_counter() - t0
        rmse_gen = per_band_rmse(ref.bands, truth, mask)
        rmse_start = per_band_rmse(ref.start, truth, mask)
        print(f"newton ({args.start} start): start mean {np.mean(rmse_start):.1f} meV; refined mean "
              f"{np.mean(rmse_gen):.1f} meV max {max(rmse_gen)} {rmse_gen} ({t2:.1f} s)")
        trace = np.asarray(ref.trace)
        method = {"start": args.start, "start_per_band_rmse_meV": rmse_start, "wall_s": round(t2, 3),
                  "fitted_sigma_eV": round(float(ref.sigma), 5),
                  "fitted_gamma_eV": round(float(ref.gamma), 5), "fitted_kappa": round(float(ref.kappa), 5),
                  "deviance": float(ref.deviance), "energy_first_last": [float(trace[0]), float(trace[-1])]}
    else:
        window = None if args.window == "full" else (args.window if args.window == "auto" else int(args.window))
        prior = Smoothness(args.eta) + TheoryPrior(init, args.sigma)
        t0 = time.perf_counter()
        term = GenerativeLikelihood(bandmap, bands_default, sigma=0.1, gamma=0.05, amp_shape=args.amp_shape,
                                    window=window, temperature=300.0, fermi_level=0.0,
                                    shared_widths=not args.per_band_widths)
        stage1 = fit_generative(term, bands_default, prior, steps=args.nuisance_steps, optimizer="adam",
                                fit_bands=False)
        jax.block_until_ready(stage1.bands)
        t1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        stage2 = fit_generative(stage1.term, bands_default, prior, steps=args.steps, optimizer=args.optimizer,
                                learning_rate=args.learning_rate)
        jax.block_until_ready(stage2.bands)
        t2 = time.perf_counter() - t0
        rmse_gen = per_band_rmse(stage2.bands, truth, mask)
        sig, gam = (np.asarray(w).round(4).tolist() for w in stage2.term.widths())
        print(f"adam: mean {np.mean(rmse_gen):.1f} meV {rmse_gen} (stage 1 {t1:.1f} s, stage 2 {t2:.1f} s)")
        trace = np.asarray(stage2.trace)
        method = {"wall_s_stage1_nuisance": round(t1, 3), "wall_s_stage2_joint": round(t2, 3),
                  "fitted_sigma_eV": sig, "fitted_gamma_eV": gam,
                  "energy_first_last": [float(trace[0]), float(trace[-1])]}
        extra = {"window_points": term.window}
    result = {
        "benchmark": "wse2_generative",
        "config": {**vars(args), "shape": list(bandmap.shape), "theory": theory_file.name, "vbm_eV": vbm, **extra,
                   "energy_step_meV": round(1e3 * float(bandmap.energy[1] - bandmap.energy[0]), 3),
                   "rmse_region": "first Brillouin zone (a = 3.32 A)"},
        "provenance": io.provenance(),
        "initial_per_band_rmse_meV": per_band_rmse(init.energies, truth, mask),
        "default": {"per_band_rmse_meV": rmse_default, "mean_rmse_meV": round(float(np.mean(rmse_default)), 2),
                    "wall_s": round(t_default, 3)},
        "generative": {"method": args.method, "per_band_rmse_meV": rmse_gen,
                       "mean_rmse_meV": round(float(np.mean(rmse_gen)), 2), "max_rmse_meV": max(rmse_gen), **method},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
