"""Methods compared across experiments: (energy, solver) pairs by short name, plus shared preprocessing.

* ``icm``: the reference method (fuller's ``MrfRec``): checkerboard ICM on the reference objective
  ``-sum log I(k, E) + sum (E_k - E_k')^2 / (2 eta^2)`` (linear interpolation = grid values), 150 epochs,
  bands solved independently, no rigid-shift search.
* ``chaindp``: the exact grid MAP of the same reference objective on 1-D cuts (Viterbi).
* ``gradient``: :class:`~diffbands.solvers.GradientMAP` (L-BFGS) alone on the diffbands energy.
* ``default``: :class:`~diffbands.solvers.Default` on the diffbands energy
  (:func:`~diffbands.default_energy`: cubic log-intensity + smoothness, + feature exclusion for several
  bands): ChainDP on cuts / ICM with rigid-shift search on surfaces, then L-BFGS. Data only: the start
  is not used as a prior.
* ``learned``: diffbands with the theory: a perturbation of the start (default ``shift+scale``) learned
  from the data, then ``Default`` with a Gaussian prior around the perturbed theory.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from scipy.ndimage import gaussian_filter

from diffbands import BandMap, default_energy
from diffbands.energy import FeatureExclusion, IntensityLikelihood, Smoothness
from diffbands.solvers import ChainDP, CheckerboardICM, Default, GradientMAP, solve

LABELS = {
    "icm": "reference ICM",
    "chaindp": "ChainDP (exact grid MAP)",
    "gradient": "GradientMAP (L-BFGS)",
    "default": "diffbands Default",
    "learned": "diffbands learned",
}


def energy_for(kind: str, bandmap: BandMap, eta: float, theory=None, sigma: float | None = None,
               exclusion: bool = True):
    """``"reference"``: fuller's objective (linear likelihood + smoothness); ``"diffbands"``: the default
    energy (:func:`~diffbands.default_energy`: cubic likelihood + smoothness, + a Gaussian prior of width
    ``sigma`` around ``theory`` (the start) when ``sigma`` is set, + feature exclusion for several bands
    unless ``exclusion`` is false)."""
    if kind == "reference":
        return IntensityLikelihood(bandmap) + Smoothness(eta)
    if kind == "diffbands":
        energy = default_energy(bandmap, theory if sigma else None, eta=eta, sigma=sigma,
                                exclusion=1.0 if exclusion else 0.0)
        n_bands = 1 if theory is None else theory.n_bands
        if n_bands > 1 and not sigma and exclusion:  # default_energy adds the exclusion only with a theory
            step = float(np.median(np.diff(np.asarray(bandmap.energy))))
            energy = energy + FeatureExclusion(2 * step, 1.0)
        return energy
    raise ValueError(f"unknown energy kind {kind!r}")


def method(name: str, max_epochs: int = 150):
    """``(energy kind, solver)`` of method ``name`` (see the module docstring)."""
    if name == "icm":
        return "reference", CheckerboardICM(max_epochs=max_epochs)
    if name == "chaindp":
        return "reference", ChainDP()
    if name == "gradient":
        return "diffbands", GradientMAP("lbfgs")
    if name == "default":
        return "diffbands", Default(max_epochs=max_epochs)
    raise ValueError(f"unknown method {name!r}; known: {sorted(LABELS)}")


def run_method(name: str, bandmap: BandMap, init, eta: float, *, sigma: float = 0.1,
               perturbation: str = "shift+scale", max_epochs: int = 150, exclusion: bool = True) -> dict:
    """Solve with method ``name`` from ``init`` (:class:`~diffbands.Bands` on the data's grid): bands
    (numpy), seconds (compile included: every case is a fresh shape or energy), steps, convergence.

    ``"learned"`` first fits the perturbation ``perturbation`` of ``init`` to the data
    (:func:`diffbands._reconstruct.learn_perturbation`, as ``diffbands reconstruct`` does), then runs
    ``Default`` on the diffbands energy with a prior of width ``sigma`` (eV) around the fitted theory."""
    t0 = time.perf_counter()
    if name == "learned":
        from diffbands._reconstruct import learn_perturbation

        init, _ = learn_perturbation(bandmap, init, perturbation)
        solver, energy = Default(max_epochs=max_epochs), energy_for("diffbands", bandmap, eta, init, sigma, exclusion)
    else:
        kind, solver = method(name, max_epochs)
        energy = energy_for(kind, bandmap, eta, init, None, exclusion)
    start = np.asarray(init.energies, np.asarray(bandmap.intensity).dtype)
    res = jax.block_until_ready(solve(solver, energy, start))
    return {
        "bands": np.asarray(res.bands, np.float64),
        "seconds": time.perf_counter() - t0,
        "n_steps": int(res.n_steps),
        "converged": bool(res.converged),
    }


def smooth(bandmap: BandMap, sigma_px) -> BandMap:
    """The reference pipeline's Gaussian smoothing (pixels per axis, energy last); ``None``/``[]`` = none."""
    if not sigma_px:
        return bandmap
    data = gaussian_filter(np.asarray(bandmap.intensity, np.float32), tuple(float(s) for s in sigma_px))
    return bandmap.with_intensity(data)


def theory_like_init(truth, offset: float, scale: float, about: float | None = None):
    """A stand-in for a theory: the truth stretched by ``scale`` about ``about`` (eV; default each band's
    maximum), then shifted by ``offset`` (eV) (the reference's synthetic tests started from bands scaled by
    0.8 / 1.2)."""
    t = np.asarray(truth, np.float64)
    if about is None:
        about = t.reshape(t.shape[0], -1).max(axis=1).reshape((-1,) + (1,) * (t.ndim - 1))
    return about + scale * (t - about) + offset


def visible(truth, energy, margin: float, top: float | None = None) -> np.ndarray:
    """Where a true band lies inside the energy window (and below ``top``, e.g. the Fermi level) by at
    least ``margin`` eV: the pixels where an error can be measured (a band outside the window is not in
    the data)."""
    t = np.asarray(truth, np.float64)
    e = np.asarray(energy, np.float64)
    hi = e.max() if top is None else min(e.max(), top)
    return (t >= e.min() + margin) & (t <= hi - margin)


def compare_methods(config: dict, ctx, store) -> dict:
    """The loop shared by E1 and E2: for every case (a :mod:`diffbands.synth` preset and its options) and
    noise level, simulate, smooth, start from a theory-like init, run every method and measure per-band RMSE
    (meV) on the visible pixels. ``store(key, bandmap, truth, init, outputs, mask)`` keeps what figures need.

    Config keys: ``seed``, ``eta``, ``methods``, ``smooth_px``, ``noise_counts`` (0 = noise-free),
    ``edge_margin``, ``sigma`` and ``perturbation`` (of method ``learned``), ``init = {offset, scale, about}``,
    ``max_epochs`` (optional), ``cases = {name: {preset, ...}}`` (a case may override ``init``, ``eta``,
    ``sigma``, ``perturbation``, ``max_epochs``, ``exclusion``: the feature-exclusion term of the diffbands
    energy for several bands, default on), ``only_cases`` (optional: run only these cases).
    """
    from diffbands.synth import make_preset

    from ._common import rmse

    rows, cases = [], {}
    for cname, case in config["cases"].items():
        if config.get("only_cases") and cname not in config["only_cases"]:
            continue
        method_keys = ("eta", "sigma", "perturbation", "max_epochs", "exclusion")  # a case may override these
        opts = {k: v for k, v in case.items() if k not in ("preset", "init") + method_keys}
        init_cfg = {**config["init"], **case.get("init", {})}
        cfg = {**config, **{k: case[k] for k in method_keys if k in case}}
        for counts in config["noise_counts"]:
            noise = "noise-free" if not counts else f"{counts:g} counts"
            key = f"{cname}, {noise}"
            bm, truth = make_preset(case["preset"], seed=int(config["seed"]), counts=counts or None, **opts)
            synth = dict(bm.metadata)["synth"]
            top = synth["fermi_level"] if synth.get("temperature") is not None else None
            data = smooth(bm, config.get("smooth_px"))
            init = truth.with_energies(theory_like_init(truth.energies, **init_cfg).astype(np.float32))
            mask = visible(truth.energies, bm.energy, config["edge_margin"], top)
            k_axes = tuple(range(1, truth.energies.ndim))
            entry = {"case": cname, "preset": case["preset"], "counts": counts or None,
                     "shape": list(np.shape(bm.intensity)), "energy_step_meV": 1e3 * float(np.diff(bm.energy)[0]),
                     "visible_fraction": np.mean(mask, axis=k_axes).tolist(),
                     "init_rmse_meV": (1e3 * rmse(init.energies, truth.energies, mask, k_axes)).tolist(), "methods": {}}
            outputs = {}
            for name in config["methods"]:
                out = run_method(name, data, init, cfg["eta"], sigma=cfg.get("sigma", 0.1),
                                 perturbation=cfg.get("perturbation", "shift+scale"),
                                 max_epochs=cfg.get("max_epochs", 150), exclusion=cfg.get("exclusion", True))
                per_band = 1e3 * rmse(out["bands"], truth.energies, mask, k_axes)
                outputs[name] = out["bands"]
                entry["methods"][name] = {"rmse_meV": per_band.tolist(), "seconds": out["seconds"],
                                          "n_steps": out["n_steps"], "converged": out["converged"]}
                for b, lab in enumerate(truth.labels):
                    seen = entry["visible_fraction"][b]
                    if seen < 0.999:  # say on how much of the grid the band could be measured
                        lab = f"{lab} ({100 * seen:.3g}% visible)"
                    rows.append({"case": cname, "noise": noise, "band": lab, "method": LABELS[name],
                                 "rmse_meV": round(float(per_band[b]), 2)})
                ctx.log(f"{key:28s} {LABELS[name]:26s} RMSE/band (meV) "
                        + " ".join(f"{v:7.1f}" for v in per_band) + f"  ({out['seconds']:.1f} s)")
            cases[key] = entry
            store(key, bm, truth, np.asarray(init.energies), outputs, mask)
    return {"cases": cases, "table": rows}
