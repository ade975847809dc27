r"""Tutorial 2: fit a perturbation model of a theory to band-mapping data, end to end.

    python -m experiments.tutorials.t2_fit_perturbation [--out DIR]

**The physics.** A calculated band structure :math:`T_b(\mathbf k)` is never exactly what ARPES measures:
doping moves the bands rigidly, electron correlations renormalise the bandwidth, strain or a misaligned
sample distort them smoothly across the Brillouin zone. diffbands models the measured bands as

.. math::  E_b(\mathbf k) = T_b(\mathbf k) + \delta E_b(\mathbf k),\qquad
           \delta E_b = \underbrace{s_b}_{\text{shift}}
           + \underbrace{(\lambda_b - 1)(T_b - T_\mathrm{ref})}_{\text{scale}}
           + \underbrace{\textstyle\sum_j c_{bj} Z_j(\mathbf k)}_{\text{hexikes}},

with :math:`Z_j` the hexagonal Zernike polynomials ("hexikes", orthonormal over the hexagonal Brillouin
zone, Noll index :math:`j`), and learns :math:`(s, \lambda, c)` by gradient descent on the intensity
likelihood :math:`U = -\sum \log \tilde I(\mathbf k, T + \delta E)`. Each order has a meaning: the shift is
the chemical potential change, :math:`\lambda` the renormalisation factor, :math:`c_{bj}` (meV) the
remaining momentum-dependent correction, each an RMS over the zone (the basis is orthonormal).

Here we imprint a known :math:`\delta E` on the graphene :math:`\pi` band, synthesise data from it,
recover it, and then reconstruct the bands with the fitted theory as start and prior.

**The API.** Perturbations are :class:`equinox.Module` s that add up with ``+``
(:class:`~diffbands.perturbation.RigidShift`, :class:`~diffbands.perturbation.EnergyScale`,
:class:`~diffbands.perturbation.BasisField`); :func:`~diffbands.perturbation.fit_perturbation` learns every
inexact array leaf (coefficients, shifts, scales; not the bases) in one compiled L-BFGS loop and returns a
:class:`~diffbands.perturbation.FitResult` whose ``decomposition()`` is the learned correction per order.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import diffbands as db
from diffbands.perturbation import BasisField, EnergyScale, RigidShift, fit_perturbation
from diffbands.plot import plot_reconstruction

A = 2.46  # graphene lattice constant (A)
K = 4 * np.pi / (3 * A)  # Gamma-K distance, the circumradius of the hexagonal Brillouin zone (1/A)
NOLL = (2, 3, 5, 6)  # hexikes fitted: the two tilts and two astigmatisms (Noll 1, the piston, is the shift)
# The imprinted perturbation: a rigid shift (n-doping moves the pi band down), a bandwidth renormalisation
# about the Dirac energy, and a tilt (Z3) plus an astigmatism (Z6) of 40 and 25 meV RMS over the zone.
TRUE_SHIFT = -0.15  # eV
TRUE_SCALE = 1.10
TRUE_COEFFS = np.array([[0.0, 0.040, 0.0, 0.025]])  # eV, one row per band, one column per NOLL index


def rms(x, mask=None) -> float:
    x = np.asarray(x, np.float64)
    return float(np.sqrt(np.mean((x if mask is None else x[..., mask]) ** 2)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Tutorial 2: fit a perturbation model end to end")
    parser.add_argument("--out", default=None, help="output folder (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="diffbands-t2-"))
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    # --- 1. The theory: nearest-neighbour tight-binding graphene, the pi band --------------------------------
    # On a square (kx, ky) grid just covering the hexagonal zone; band 1 is pi (0 at K, -3t = -8.1 eV at Gamma).
    k = np.linspace(-1.05 * K, 1.05 * K, 40)
    theory = db.synth.graphene_bands(k.size, k_range=(k[0], k[-1]), a=A).select([1])
    T = jnp.asarray(theory.energies)

    # --- 2. The truth: the theory with a known perturbation imprinted ---------------------------------------
    # A perturbation is a module: build it with the true parameters and call it on T to get dE.
    reference = 0.0  # the energy scale stretches about the Dirac energy
    true_dE = (RigidShift(jnp.array([TRUE_SHIFT])) + EnergyScale(jnp.array([TRUE_SCALE]), reference)
               + BasisField.hexikes(k, k, A, noll=NOLL, coeffs=TRUE_COEFFS, outside="extrapolate"))
    truth = theory.with_energies(np.asarray(T + true_dE(T)), metadata={"imprinted": "shift+scale+hexikes"})

    # --- 3. Synthetic band mapping of the truth ------------------------------------------------------------
    # Gaussian lines (0.1 eV), Poisson noise with 100 counts at the brightest voxel, 50 meV energy steps.
    energy_axis = np.arange(-9.3, 0.5, 0.05)
    bandmap = db.synth.simulate(truth, energy_axis, db.synth.Spectrometer(db.synth.Gaussian(0.1)),
                                counts=100, seed=7)
    print(f"data {bandmap.shape} (kx, ky, E); theory vs truth: RMSE {1e3 * rms(T - truth.energies):.0f} meV")

    # --- 4. Fit the perturbation model, starting from "no perturbation" ---------------------------------------
    # The likelihood alone is the objective (cubic interpolation along energy: smooth gradients). Where the
    # start sits in empty pixels the gradient vanishes, so a coarse search of the rigid shift within +-0.4 eV
    # comes first (shift_search), then L-BFGS on all 6 parameters at once.
    likelihood = db.energy.IntensityLikelihood(bandmap, interp="cubic")
    start = (RigidShift(jnp.zeros(1)) + EnergyScale(jnp.ones(1), reference)
             + BasisField.hexikes(k, k, A, noll=NOLL, outside="extrapolate"))
    fit = fit_perturbation(likelihood, T, start, steps=80, shift_search=jnp.linspace(-0.4, 0.4, 41))
    dec = fit.decomposition()
    print(f"objective {float(fit.loss[0]):.1f} -> {float(fit.loss[-1]):.1f} in {fit.loss.size - 1} L-BFGS steps")
    print("learned decomposition per order (band pi):")
    print(f"  order 0, shift:        {dec['shift'][0]:+7.1f} meV   (imprinted {1e3 * TRUE_SHIFT:+.1f})")
    print(f"  order 1, scale:        {dec['scale'][0]:7.4f}       (imprinted {TRUE_SCALE:.4f}; its dE RMS "
          f"{dec['scale_rms'][0]:.1f} meV)")
    for j, c, c0 in zip(NOLL, dec["hexike_coeffs"][0], 1e3 * TRUE_COEFFS[0]):
        print(f"  hexike Z{j}:             {c:+7.1f} meV   (imprinted {c0:+.1f})")
    print(f"  whole correction: RMS {dec['total_rms'][0]:.1f} meV")

    # --- 5. Reconstruct from the perturbed theory -------------------------------------------------------------
    # T + dE is the start and the centre of a Gaussian theory prior (width sigma); the default solver then
    # lets the bands follow the data wherever the model of dE is not enough.
    fitted = theory.with_energies(np.asarray(fit.bands), metadata={"learned": {k_: v.tolist() for k_, v in dec.items()}})
    energy = db.default_energy(bandmap, fitted, eta=0.15, sigma=0.1)
    rec = db.reconstruct(energy, fitted, db.solvers.default_solver(max_epochs=40, max_steps=150))
    bz = np.asarray(db.theory.first_bz_mask(k, k, A))
    rmse = {name: 1e3 * rms(np.asarray(b.energies) - np.asarray(truth.energies), bz)
            for name, b in [("theory", theory), ("theory + learned dE", fitted), ("reconstruction", rec.bands)]}
    for name, v in rmse.items():
        print(f"RMSE in the first zone, {name:>20}: {v:6.1f} meV")
    rec.save(out / "t2_reconstruction.h5", bandmap=bandmap, extra_bands={"truth": truth, "theory": theory},
             overwrite=True)
    fig = plot_reconstruction(bandmap, rec, truth=truth, title="t2: reconstruction from the fitted theory")
    fig.savefig(out / "t2_reconstruction.png", dpi=100)
    summary = {"decomposition_meV": {k_: np.asarray(v).tolist() for k_, v in dec.items()},
               "imprinted": {"shift_meV": 1e3 * TRUE_SHIFT, "scale": TRUE_SCALE,
                             "hexike_noll": list(NOLL), "hexike_coeffs_meV": (1e3 * TRUE_COEFFS).tolist()},
               "rmse_first_bz_meV": rmse, "config": dict(rec.config), "versions": db.io.package_versions(),
               "wall_time_s": time.perf_counter() - t_start}
    (out / "t2_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"wrote {out / 't2_reconstruction.h5'}, {out / 't2_reconstruction.png'}, {out / 't2_summary.json'}")

    # --- 6. Checks: the imprinted perturbation is recovered ---------------------------------------------------
    assert abs(dec["shift"][0] - 1e3 * TRUE_SHIFT) < 10.0, dec["shift"]  # within 10 meV
    assert abs(dec["scale"][0] - TRUE_SCALE) < 0.01, dec["scale"]
    np.testing.assert_allclose(dec["hexike_coeffs"][0], 1e3 * TRUE_COEFFS[0], atol=8.0)  # meV
    assert rmse["theory + learned dE"] < 0.2 * rmse["theory"], rmse
    # Here the model of dE is exact, so T + dE is already the best estimate (measured: 1.6 meV RMSE against
    # 609 meV for the raw theory); the free reconstruction follows the noisy data (33 meV). It is the tool
    # for what a perturbation model does not capture; with an exact model it can only add noise.
    assert rmse["reconstruction"] < 0.2 * rmse["theory"], rmse
    print("t2 OK")
    return summary


if __name__ == "__main__":
    main()
