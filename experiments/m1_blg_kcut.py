"""M1, bilayer graphene K cut (``BLGr_K_cut.xy``, He-I 21.2182 eV): the Bernal bilayer model fitted end to end.

Steps: (1) the Fermi level from a Fermi-edge fit of the EDC summed where the outer band crosses E_F
(:func:`diffbands.preprocess.fit_fermi_edge`); (2) kinetic -> E - E_F and emission angle -> momentum with the
true kinetic energy E_kin = hv - W + E (hv, W from the file); (3) :func:`diffbands.theory.fit_tight_binding` of a
Bernal bilayer (McCann-Koshino 4x4, gamma3 and gamma4 held at Kuzmenko 2009) on the cut K + (k - k_offset) d,
fitting gamma0, gamma1, U, E_D and the k offset, with Laplace uncertainties; (4) the two visible bands
reconstructed from the data (per-k intensity maxima near the fitted bands, refined by parabolic
interpolation) and their residuals against the model. An overall energy offset is not a separate parameter:
it is exactly degenerate with E_D (both shift all four bands rigidly).

    python -m experiments.m1_blg_kcut [--set temperature=80]
"""

from __future__ import annotations

import numpy as np

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "experiments"

import equinox as eqx
import jax
import jax.numpy as jnp

import diffbands as db
from diffbands import preprocess as pp
from diffbands._paths import data_path
from diffbands.energy import IntensityLikelihood
from diffbands.theory import AbstractTightBinding, BernalBilayerGraphene, fit_tight_binding, high_symmetry_points
from experiments._common import main, merge

TITLE = "M1: bilayer graphene K cut: Fermi edge, momentum conversion, end-to-end Bernal bilayer fit"


class BilayerCut(AbstractTightBinding):
    """Bernal bilayer graphene seen on a cut: the base model with a scalar momentum offset along the cut
    direction ``d``, ``H(k) = H_BLG(k - k_offset d)`` (so every parameter the fit needs is a scalar leaf)."""

    gamma0: jax.Array
    gamma1: jax.Array
    U: jax.Array
    dirac_energy: jax.Array
    k_offset: jax.Array
    base: BernalBilayerGraphene
    direction: tuple[float, float] = eqx.field(static=True)

    @property
    def n_bands(self) -> int:
        return 4

    def hamiltonian(self, k):
        shift = self.k_offset * jnp.asarray(self.direction, jnp.result_type(self.k_offset))
        m = eqx.tree_at(lambda b: (b.gamma0, b.gamma1, b.U, b.dirac_energy, b.k_shift), self.base,
                        (self.gamma0, self.gamma1, self.U, self.dirac_energy, shift))  # fmt: skip
        return m.hamiltonian(k)


class _Unsee(eqx.Module):
    """Minus the intensity likelihood of the low-energy band (index 1 of the fitted pair) on rows ``rows``:
    added to the fit's loss, it removes that band's data term there."""

    lik: IntensityLikelihood
    rows: jax.Array

    def __call__(self, e):
        return -self.lik(e[1:2, self.rows])


def _peaks(inten, energy, guess, half_width):
    """Per k row: the intensity maximum within +-half_width of ``guess``, refined by a parabola."""
    out = np.full(guess.shape, np.nan)
    de = energy[1] - energy[0]
    for j in range(guess.size):  # host-side analysis of 82 rows, outside any hot path
        sel = np.nonzero(np.abs(energy - guess[j]) <= half_width)[0]
        if sel.size < 3:
            continue
        i = sel[np.argmax(inten[j, sel])]
        if 0 < i < energy.size - 1 and i not in (sel[0], sel[-1]):
            y0, y1, y2 = inten[j, i - 1: i + 2]
            den = y0 - 2 * y1 + y2
            out[j] = energy[i] + (0.5 * de * (y0 - y2) / den if den < 0 else 0.0)
    return out


def _fit(kc, config):
    """The end-to-end Bernal bilayer fit of the momentum cut ``kc`` (dims (k, E - E_F)) under ``config``."""
    k = np.asarray(kc.coords[0], np.float64)
    energy = np.asarray(kc.energy, np.float64)
    inten = np.asarray(kc.intensity)
    # Contrast: the split-off band is several times brighter than the low-energy band, and -log I would pull
    # both model bands onto it. Remove the broad background, smooth lightly, compress with a power law (this
    # keeps the order of intensities, hence the peak positions).
    con = config["contrast"]
    bg = np.asarray(pp.gaussian_smooth(kc, k=con["bg_sigma_k"], E=con["bg_sigma_E"]).intensity)
    sharp = np.clip(inten - bg, 0.0, None)
    sharp = np.asarray(pp.gaussian_smooth(kc.with_intensity(sharp), k=con["smooth_k"], E=con["smooth_E"]).intensity)
    fit_map = kc.with_intensity((sharp / sharp.max()) ** con["power"] + 1e-3)
    # Near K the low-energy valence band lies above E_F (empty): there the data say nothing about it, and
    # -log I would drag it onto the split-off band. Its data term is switched off on the rows within
    # `exclude_k` of the band top (the brightest row near E_F - 0.2 eV); the split-off band keeps every row
    # (its rounded top near K is what separates gamma1 from U).
    top = float(k[np.argmax(sharp[:, np.argmin(np.abs(energy + 0.2))])])
    near = np.nonzero(np.abs(k - top) < float(config["exclude_k"]))[0]
    unsee = _Unsee(IntensityLikelihood(np.asarray(fit_map.intensity)[near], energy=energy, interp="cubic", floor=1e-6),
                   jnp.asarray(near))  # fmt: skip
    K = high_symmetry_points(2.46)["K"]
    phi = np.deg2rad(config["cut_direction_deg"]) + np.arctan2(K[1], K[0])
    d = (float(np.cos(phi)), float(np.sin(phi)))
    pts = K[None, :] + k[:, None] * np.asarray(d)[None, :]
    ini = config["init"]
    model = BilayerCut(*(jnp.asarray(float(ini[n])) for n in ("gamma0", "gamma1", "U", "dirac_energy", "k_offset")),
                       base=BernalBilayerGraphene(), direction=d)  # fmt: skip
    res = fit_tight_binding(model, fit_map, cut_points=pts, extra_terms=unsee, band_indices=[0, 1],
                            params=tuple(config["params"]), smoothing=tuple(config["smoothing"]),
                            steps=tuple(config["steps"]))  # fmt: skip
    return {"result": res, "bands": np.asarray(res.model.eigenvalues(jnp.asarray(pts))), "points": pts,
            "top": top, "near": near}  # fmt: skip


def run(config: dict, ctx) -> dict:
    path = config["data"]
    bm = db.load(path if path.startswith("/") else data_path(path))
    hv, wf = float(bm.metadata["photon_energy"]), float(bm.metadata["work_function"])

    # (1) Fermi edge where the outer band crosses E_F
    th = np.abs(np.asarray(bm.coords[0]))
    lo, hi = config["edge_theta"]
    rows = np.nonzero((th >= lo) & (th <= hi))[0]
    sub = db.BandMap(np.asarray(bm.intensity)[rows], [np.asarray(bm.coords[0])[rows], np.asarray(bm.energy)],
                     dims=bm.dims, units=bm.units, metadata=bm.metadata)  # fmt: skip
    edge = pp.fit_fermi_edge(sub, window=tuple(config["edge_window"]), temperature=config["temperature"])
    ef, sef = edge.summary()["fermi_level"]
    ctx.log(f"Fermi edge: E_F = {ef:.4f} +- {sef:.4f} eV (hv = {hv}), sigma_res = {edge.summary()['resolution']}")

    # (2) E - E_F and momentum (true kinetic energy hv - W + E)
    be = pp.to_binding_energy(bm, edge)
    kc = pp.angle_to_momentum(be, photon_energy=hv, work_function=wf, n_k=int(config["n_k"]))
    kc = pp.crop(kc, E=tuple(config["e_window"]))
    k = np.asarray(kc.coords[0], np.float64)
    energy = np.asarray(kc.energy, np.float64)
    inten = np.asarray(kc.intensity)
    # rows at the ends are partly outside the measured angles at some energies (filled with 0): drop them
    good = np.all(inten > 0, axis=1)
    kc = db.BandMap(inten[good], [k[good], energy], dims=kc.dims, units=kc.units, metadata=kc.metadata)
    k, inten = k[good], inten[good]

    # (3) end-to-end Bernal bilayer fit
    main_fit = _fit(kc, config)
    res, fitted = main_fit["result"], main_fit["bands"]
    summary = res.summary()
    ctx.log(str(res))

    # (4) data-driven bands near the fitted ones, and residuals (where the model band is occupied and inside)
    bands = np.stack([_peaks(inten, energy, fitted[:, b], 0.12) for b in (0, 1)])
    occupied = (fitted[:, :2].T < -0.05) & (fitted[:, :2].T > energy[0] + 0.05)
    resid = np.where(occupied, bands - fitted[:, :2].T, np.nan)
    rms = [float(np.sqrt(np.nanmean(r**2))) * 1e3 for r in resid]

    # (5) systematics: the same fit under other a-priori choices (contrast power, cut direction, init)
    syst = []
    for over in config.get("systematics", []):
        c = merge(config, over)
        r = _fit(kc, c)["result"]
        syst.append({"change": over, "fit": r.summary(), "loss": float(r.loss)})
        ctx.log(f"systematics {over}: " + ", ".join(f"{n}={v:.3f}+-{e:.3f}" for n, (v, e) in r.summary().items()))
    spread = {n: [min(x["fit"][n][0] for x in syst + [{"fit": summary}]), max(x["fit"][n][0] for x in syst + [{"fit": summary}])]
              for n in summary}  # fmt: skip

    # gamma0 enters through hbar v = (sqrt 3 / 2) a gamma0 only: it is degenerate with the momentum scale
    # (angle calibration, and k ~ sqrt(E_kin) = sqrt(hv - W + E)): d ln gamma0 = -d ln k_scale.
    return {
        "band_top_k": main_fit["top"],
        "rows_without_low_energy_band": main_fit["near"].tolist(),
        "systematics": syst,
        "systematic_range": spread,
        "fermi_edge": edge.summary(),
        "fermi_level_vs_hv_eV": ef - hv,
        "photon_energy": hv,
        "work_function": wf,
        "fit": summary,
        "fit_loss": float(res.loss),
        "covariance": np.asarray(res.covariance).tolist(),
        "correlation": (np.asarray(res.covariance) / np.outer(np.asarray(res.sigma), np.asarray(res.sigma))).tolist(),
        "residual_rms_meV": {"split-off valence band": rms[0], "low-energy valence band": rms[1]},
        "acceptance": {
            "gamma0_in_3.0_3.2": bool(3.0 <= summary["gamma0"][0] <= 3.2),
            "gamma1_in_0.35_0.42": bool(0.35 <= summary.get("gamma1", (np.nan,))[0] <= 0.42),
        },
        "arrays": {
            "k": k.tolist(),
            "energy": energy.tolist(),
            "intensity": np.round(inten / inten.max(), 5).tolist(),
            "model_bands": fitted.T.tolist(),
            "data_bands": np.where(np.isfinite(bands), bands, None).tolist(),
            "edge_energy": np.asarray(edge.energy).tolist(),
            "edge_edc": np.asarray(edge.edc).tolist(),
            "edge_model": np.asarray(edge.model).tolist(),
        },
    }


if __name__ == "__main__":
    main("m1")
