r"""E6, limits: RMSE vs count level and vs linewidth, against the Cramer-Rao bound for the peak position.

Data: one band on a cut (``sinusoid`` preset), Voigt line, Poisson noise with ``counts`` expected counts at the
brightest voxel; several seeds. Estimators: the reference ICM, diffbands' Default (ChainDP + L-BFGS on the cubic
likelihood, with smoothness), the same with a negligible smoothness (``per_k``: each momentum on its own), and
the generative Poisson likelihood (:class:`diffbands.energy.GenerativeLikelihood`, fitted from Default's
solution by :func:`diffbands.energy.fit_generative`, no smoothness). The first three find the mode of the
intensity along energy (``-log I`` at the band), which uses only the top of each peak; the generative fit uses
the whole lineshape, as the bound does.

**Bound.** With expected counts ``mu(k, E_j; E0)`` from the generator's own forward model
(:class:`diffbands.synth.Spectrometer`, scaled as :func:`diffbands.synth.simulate` scales it), the Fisher
information of the band energy ``E0(k)`` from the Poisson counts of that momentum is

.. math:: F(k) = \sum_j \frac{(\partial \mu(k, E_j) / \partial E_0(k))^2}{\mu(k, E_j)},

computed in JAX (forward-mode derivative of the forward model; momenta are independent here since the preset
has no momentum blur). The bound on the RMSE of an unbiased per-momentum estimator is
``sqrt(mean_k 1 / F(k))``. A smoothness prior pools neighbouring momenta (and is biased), so it may go below
this per-momentum bound; the ``per_k`` estimator may not (up to its bias).

    python -m experiments.e6_limits [--set 'seeds=[0]' --set 'count_levels=[10, 100]']
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "experiments"

from diffbands.energy import GenerativeLikelihood, fit_generative
from diffbands.synth import Gaussian, Lorentzian, Spectrometer, Voigt, make_preset
from experiments._common import main, rmse
from experiments._methods import run_method, smooth, theory_like_init, visible

TITLE = "E6: RMSE vs counts and vs linewidth against the Cramer-Rao bound"

LABELS = {"icm": "reference ICM", "default": "diffbands Default", "per_k": "per-k (no smoothness)",
          "generative": "diffbands generative"}


def fisher_information(bands, energy, spectrometer: Spectrometer, counts: float) -> jax.Array:
    """``F(k) = sum_E (d mu / d E0(k))^2 / mu`` for Poisson counts ``mu`` scaled to ``counts`` at the
    brightest voxel; ``bands`` ``(1, n_k)``. Momenta must be independent (no momentum blur)."""
    e0 = jnp.asarray(bands.energies)
    amps = jnp.ones_like(e0)
    grid = jnp.asarray(energy, e0.dtype)

    def mu(e):
        return spectrometer(e, amps, bands.coords, grid)

    scale = counts / jnp.max(mu(e0))  # fixed, as simulate() fixes it from the true bands
    m, dm = jax.jvp(mu, (e0,), (jnp.ones_like(e0),))  # d mu(k, E) / d E0(k): momenta are independent
    m, dm = scale * m, scale * dm
    tiny = jnp.finfo(m.dtype).tiny
    return jnp.sum(jnp.where(m > tiny, dm**2 / jnp.maximum(m, tiny), 0.0), axis=-1)  # (n_k,): bands are summed


def _one(config, sigma, counts, seed):
    opts = dict(lineshape=config["lineshape"], sigma=sigma, gamma=config["gamma_ratio"] * sigma)
    bm, truth = make_preset(config["preset"], seed=int(seed), counts=counts, nk=config["nk"], ne=config["ne"], **opts)
    shapes = {"voigt": lambda: Voigt(sigma, opts["gamma"]), "gaussian": lambda: Gaussian(sigma),
              "lorentzian": lambda: Lorentzian(opts["gamma"])}
    spec = Spectrometer(shapes[opts["lineshape"]]())  # the preset's lineshape (no blur, no cutoff)
    fisher = np.asarray(fisher_information(truth, bm.energy, spec, counts), np.float64)
    mask = visible(truth.energies, bm.energy, config["edge_margin"])
    bound = float(np.sqrt(np.mean(1.0 / fisher[mask[0]])))
    data = smooth(bm, config.get("smooth_px"))
    init = truth.with_energies(theory_like_init(truth.energies, **config["init"]).astype(np.float32))
    out, default = {}, None
    for name in config["methods"]:
        if name == "per_k":
            bands = run_method("default", data, init, float(config["independent_eta"]))["bands"]
        elif name == "generative":
            if default is None:
                default = run_method("default", data, init, float(config["eta"]))["bands"]
            # the Poisson likelihood of the raw counts under the forward model, no smoothness: each momentum's
            # position is fitted from its own spectrum (widths and a coarse amplitude grid are shared)
            g = config["generative"]
            term = GenerativeLikelihood(bm, default, sigma=g["sigma0"], gamma=g["gamma0"], amp_shape=g["amp_shape"])
            bands = np.asarray(fit_generative(term, default, steps=int(g["steps"])).bands)
        else:
            bands = run_method(name, data, init, float(config["eta"]))["bands"]
            if name == "default":
                default = bands
        out[name] = float(1e3 * rmse(bands, truth.energies, mask))
    return 1e3 * bound, out, 1e3 * float(np.diff(np.asarray(bm.energy))[0])


def _sweep(config, ctx, label, points):
    """``points``: list of (sigma, counts); returns per point the bound and per-method RMSE (mean, std over seeds)."""
    rows = []
    for sigma, counts in points:
        bounds, per = [], {m: [] for m in config["methods"]}
        for seed in config["seeds"]:
            b, out, step = _one(config, sigma, counts, seed)
            bounds.append(b)
            for m, v in out.items():
                per[m].append(v)
        row = {"sigma_eV": sigma, "gamma_eV": config["gamma_ratio"] * sigma, "counts": counts,
               "crb_meV": float(np.mean(bounds)), "energy_step_meV": step,
               "rmse_meV": {m: float(np.mean(v)) for m, v in per.items()},
               "rmse_std_meV": {m: float(np.std(v)) for m, v in per.items()},
               "rmse_per_seed_meV": per}
        rows.append(row)
        ctx.log(f"{label}: sigma {sigma:.3f} eV, counts {counts:g}: bound {row['crb_meV']:.2f} meV; "
                + ", ".join(f"{LABELS[m]} {v:.2f}" for m, v in row["rmse_meV"].items()))
    return rows


def run(config: dict, ctx) -> dict:
    counts_rows = _sweep(config, ctx, "counts", [(float(config["sigma"]), float(c)) for c in config["count_levels"]])
    width_rows = _sweep(config, ctx, "linewidth",
                        [(float(s), float(config["linewidth_counts"])) for s in config["linewidths"]])
    table = []
    for sweep, rows in (("counts", counts_rows), ("linewidth", width_rows)):
        for r in rows:
            table.append({"sweep": sweep, "sigma (eV)": r["sigma_eV"], "gamma (eV)": r["gamma_eV"],
                          "counts": r["counts"], "Cramer-Rao bound (meV)": round(r["crb_meV"], 2),
                          **{f"{LABELS[m]} (meV)": round(v, 2) for m, v in r["rmse_meV"].items()},
                          **{f"{LABELS[m]} / bound": round(r["rmse_meV"][m] / r["crb_meV"], 2)
                             for m in ("default", "generative") if m in r["rmse_meV"]}})
    return {"labels": {m: LABELS[m] for m in config["methods"]}, "counts_sweep": counts_rows,
            "linewidth_sweep": width_rows, "table": table}


if __name__ == "__main__":
    main("e6")
