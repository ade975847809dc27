"""M2, Li-doped graphene cut (``graphene_152.ibw``, hv = 36 eV): Dirac velocity and doping.

Steps: (1) Fermi edge of the angle-integrated EDC; (2) E - E_F and angle -> momentum (the file's kinetic axis
is the true kinetic energy: E_F sits at hv - W with W ~ 4 eV); the occupied band is pi* (n-doping);
(3) seed: MDC peaks of both branches near E_F, straight lines E = E0 + s k (slope, crossing);
(4) end-to-end fit of nearest-neighbour graphene on the cut (:class:`GrapheneCut`: t, Dirac energy eps0,
offset along the cut; k_perp and a rotation phi of the cut held) through the intensity likelihood, with Laplace
uncertainties, evaluated along momentum: per energy row (MDC), at the two momenta where the model's pi* band
has that energy (:class:`GrapheneCutMDC`); (5) MDC peaks over the whole window near the fitted branches,
residuals of the model against them, straight lines through them. Derived: hbar v = (sqrt3/2) a t,
v in 1e6 m/s, E_D = eps0, k_F (half the chord between the E_F crossings), n = k_F^2 / pi (spin x valley 4).

Why the per-row (EDC) likelihood failed (kept as a comparison fit): the branches are steep (about 3 eV A along
the cut), so the intensity of one momentum row is smeared over a long energy range and weighted by the energy
dependence of the intensity (brighter towards E_F, fading towards the Dirac point). That likelihood itself
prefers a flatter band (its loss at the MDC-fit optimum is higher than at its own, t ~ 0.9 eV): not an
optimiser failure. Along momentum the branches are sharp peaks, each MDC's log intensity is insensitive to its
overall brightness, and the fit follows the data over the whole window. The velocity is an apparent one along
this cut and momentum scale (a third to a half of graphene's 6-7 eV A); the xarpes example of these data also
finds about 2.85 eV A near E_F.
    python -m experiments.m2_graphene_doping
"""

from __future__ import annotations

import numpy as np

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "experiments"

import equinox as eqx
import jax
import jax.numpy as jnp

import diffbands as db
from diffbands import preprocess as pp
from diffbands.energy import IntensityLikelihood
from diffbands.theory import AbstractTightBinding, Graphene, fit_tight_binding, high_symmetry_points
from experiments._common import main, measured_cut

TITLE = "M2: Li-doped graphene cut: Fermi edge, momentum conversion, end-to-end graphene fit, velocity and doping"
A = 2.46  # graphene lattice constant (angstrom)


class GrapheneCut(AbstractTightBinding):
    r"""Nearest-neighbour graphene on a straight cut near K, in the cut's own coordinate.

    A "momentum" is ``(q, 0)`` with ``q`` (1/A) the measured momentum along the cut; the model is graphene
    (:class:`~diffbands.theory.Graphene`, lattice constant of ``base``) evaluated at

    .. math:: \mathbf k(q) = \mathbf K + (q - q_0)\,\hat{\mathbf d}(\varphi) + k_\perp\,\hat{\mathbf n}(\varphi),

    :math:`E_\pm(q) = \epsilon_0 \pm t\,|f(\mathbf k(q))|`, with :math:`\hat{\mathbf d}(\varphi)` the
    reference direction ``direction`` rotated by ``phi``, :math:`\hat{\mathbf n}` its normal and
    :math:`\mathbf K` = ``center``. Scalar leaves:
    ``t``, ``eps0`` (Dirac energy), ``k_offset`` (:math:`q_0`, where the cut passes nearest to K), ``k_perp``
    (distance of the cut from K), ``phi`` (rad). Near K, :math:`|f| \approx (\sqrt3 a/2)|\mathbf k - \mathbf K|`,
    so :math:`\hbar v = (\sqrt3/2)\,a\,t`.
    """

    t: jax.Array
    eps0: jax.Array
    k_offset: jax.Array
    k_perp: jax.Array
    phi: jax.Array
    base: Graphene
    center: tuple[float, float] = eqx.field(static=True)
    direction: tuple[float, float] = eqx.field(static=True)

    @property
    def n_bands(self) -> int:
        return 2

    def _point(self, q):
        dt = jnp.result_type(q, self.phi)
        c, s = jnp.cos(self.phi), jnp.sin(self.phi)
        d0 = jnp.asarray(self.direction, dt)
        d = jnp.stack([c * d0[0] - s * d0[1], s * d0[0] + c * d0[1]])
        n = jnp.stack([-d[1], d[0]])
        return jnp.asarray(self.center, dt) + (q - self.k_offset) * d + self.k_perp * n

    def _model(self):
        return eqx.tree_at(lambda g: (g.t, g.eps0), self.base, (self.t, self.eps0))

    def hamiltonian(self, k):
        return self._model().hamiltonian(self._point(k[0]))

    def _eigenvalues_one(self, k):
        return self._model()._eigenvalues_one(self._point(k[0])).astype(k.dtype)

    def pi_star(self, q):
        """The pi* energy at cut coordinate ``q`` (scalar, traceable)."""
        return self._model()._eigenvalues_one(self._point(q))[1]


class GrapheneCutMDC(GrapheneCut):
    r"""The same model seen along momentum: "eigenvalue" ``i`` at the point ``(E, 0)`` is the cut coordinate
    :math:`q_i(E)` where the pi* band has energy ``E`` (``i = 0`` the branch left of :math:`q_0`, ``1`` the right).

    Fitting this view with :func:`~diffbands.theory.fit_tight_binding` on the *transposed* map (dims
    ``(E, k)``, one row per energy) turns the intensity likelihood into a sum over momentum distribution curves,
    :math:`L = -\sum_i \sum_{b} \log \tilde I(q_b(E_i), E_i)`, each MDC interpolated along :math:`q`.

    :math:`q_b(E)` solves :math:`E_{\pi^*}(q) = E` by ``n_newton`` Newton steps from the linear-cone guess
    :math:`q_0 \mp (E - \epsilon_0)/\hbar v`; the parameter derivative is the implicit one,
    :math:`\partial q/\partial\theta = -(\partial E/\partial\theta)/(\partial E/\partial q)`, obtained by a
    final Newton step whose only non-constant input is the parameters. Energies at or below the Dirac point
    are lifted to 1 meV above it (no solution there).
    """

    n_newton: int = eqx.field(static=True, default=12)

    def hamiltonian(self, k):
        return jnp.diag(self._eigenvalues_one(k))

    def _eigenvalues_one(self, k):
        dt = k.dtype
        e = jnp.maximum(k[0], self.eps0 + 1e-3)
        hv = jnp.sqrt(3.0) / 2 * self.base.a * self.t
        dq = jnp.sqrt(jnp.maximum(jnp.square((e - self.eps0) / hv) - jnp.square(self.k_perp), 1e-8))
        q0 = jnp.stack([self.k_offset - dq, self.k_offset + dq])
        frozen = jax.lax.stop_gradient(self)

        def newton(m, q):
            val, slope = jax.jvp(m.pi_star, (q,), (jnp.ones_like(q),))
            return q - (val - jax.lax.stop_gradient(e)) / slope

        def body(_, q):
            return jax.vmap(lambda x: newton(frozen, x))(q)

        q = jax.lax.stop_gradient(jax.lax.fori_loop(0, self.n_newton, body, jax.lax.stop_gradient(q0)))
        # one more step with the live parameters: at convergence its derivative is the implicit one
        slope = jax.lax.stop_gradient(jax.vmap(lambda x: jax.jvp(frozen.pi_star, (x,), (jnp.ones_like(x),))[1])(q))
        return (q - (jax.vmap(self.pi_star)(q) - e) / slope).astype(dt)


def _mdc_peaks(img, k, guess, half):
    """Per energy column: the maximum within +-half of ``guess`` (1/A), refined by a parabola."""
    out = np.full(guess.shape, np.nan)
    dk = k[1] - k[0]
    for i in range(guess.size):  # host-side analysis of ~100 columns
        sel = np.nonzero(np.abs(k - guess[i]) <= half)[0]
        if sel.size < 3:
            continue
        j = sel[np.argmax(img[sel, i])]
        if j in (sel[0], sel[-1]):
            continue
        y0, y1, y2 = img[j - 1: j + 2, i]
        den = y0 - 2 * y1 + y2
        out[i] = k[j] + (0.5 * dk * (y0 - y2) / den if den < 0 else 0.0)
    return out


def _lines(energy, kl, kr):
    """Straight lines ``E = E0 + s k`` through the MDC peaks of each branch (least squares, with sigmas)."""
    lin = {}
    for name, kb in (("left", kl), ("right", kr)):
        ok = np.isfinite(kb)
        if ok.sum() < 3:
            lin[name] = {"E0": float("nan"), "slope_eVA": float("nan"), "slope_sigma": float("nan"),
                         "n_points": int(ok.sum())}  # fmt: skip
            continue
        A_ = np.stack([np.ones(ok.sum()), kb[ok]], 1)
        coef, rss, *_ = np.linalg.lstsq(A_, energy[ok], rcond=None)
        dof = max(ok.sum() - 2, 1)
        cov = (float(rss[0]) / dof if rss.size else 0.0) * np.linalg.inv(A_.T @ A_)
        lin[name] = {"E0": float(coef[0]), "slope_eVA": float(coef[1]), "slope_sigma": float(np.sqrt(cov[1, 1])),
                     "n_points": int(ok.sum())}  # fmt: skip
    sl, sr = lin["left"]["slope_eVA"], lin["right"]["slope_eVA"]
    k_x = (lin["left"]["E0"] - lin["right"]["E0"]) / (sr - sl)
    out = {"branches": lin, "hbar_v_eVA": float(0.5 * (abs(sl) + abs(sr))),
           "hbar_v_sigma": float(0.5 * np.hypot(lin["left"]["slope_sigma"], lin["right"]["slope_sigma"])),
           "k_cross": float(k_x), "dirac_energy_eV": float(lin["left"]["E0"] + sl * k_x),
           "kF_invA": float(0.5 * abs(lin["right"]["E0"] / sr - lin["left"]["E0"] / sl))}  # fmt: skip
    out["density_per_cm2"] = float(out["kF_invA"] ** 2 / np.pi * 1e16)
    return out


def _cut_model(values, names, ini, d, K, cls=GrapheneCut):
    p = {**{n: float(ini[n]) for n in ("t", "eps0", "k_offset", "k_perp", "phi")}, **dict(zip(names, values))}
    return cls(*(jnp.asarray(p[n]) for n in ("t", "eps0", "k_offset", "k_perp", "phi")), base=Graphene(a=A),
               center=(float(K[0]), float(K[1])), direction=d)  # fmt: skip


def _derived(model):
    """(hbar v near K, Dirac energy, k_F, slopes dE/dq of both branches at E_F) of a fitted cut model; k_F is
    the radius of the Fermi pocket, from half the chord between the two E_F crossings and the cut's offset."""
    mdc = GrapheneCutMDC(*(getattr(model, n) for n in ("t", "eps0", "k_offset", "k_perp", "phi")),
                         base=model.base, center=model.center, direction=model.direction)  # fmt: skip
    qf = mdc.eigenvalues(jnp.zeros((1, 2)))[0]
    slope = jax.vmap(jax.grad(model.pi_star))(qf)
    kf = float(np.hypot(0.5 * float(qf[1] - qf[0]), float(model.k_perp)))
    return float(np.sqrt(3) / 2 * A * model.t), float(model.eps0), kf, [float(x) for x in slope]


def _propagate(fn, values, cov, h=1e-4):
    """Delta-method sigma of a scalar function of the fitted parameters (central differences)."""
    values = np.asarray(values, np.float64)
    grad = np.zeros(values.size)
    for i in range(values.size):  # a handful of parameters
        step = h * max(abs(values[i]), 0.05)
        e = np.zeros(values.size)
        e[i] = step
        grad[i] = (fn(values + e) - fn(values - e)) / (2 * step)
    return float(np.sqrt(max(grad @ np.asarray(cov, np.float64) @ grad, 0.0)))


def run(config: dict, ctx) -> dict:
    hv, edge, kc = measured_cut(config, ctx)
    ef = edge.summary()["fermi_level"][0]
    kc = pp.crop(kc, E=tuple(config["e_window"]))
    k = np.asarray(kc.coords[0], np.float64)
    energy = np.asarray(kc.energy, np.float64)
    inten = np.asarray(kc.intensity)
    good = np.all(inten > 0, axis=1)
    kc = db.BandMap(inten[good], [k[good], energy], dims=kc.dims, units=kc.units, metadata=kc.metadata)
    ctx.record_input("cut", kc)
    k, inten = k[good], inten[good]
    con = config["contrast"]
    bg = np.asarray(pp.gaussian_smooth(kc, k=con["bg_sigma_k"], E=con["bg_sigma_E"]).intensity)
    sharp = np.clip(inten - bg, 0.0, None)
    sharp = np.asarray(pp.gaussian_smooth(kc.with_intensity(sharp), k=con["smooth_k"], E=con["smooth_E"]).intensity)
    fit_map = kc.with_intensity((sharp / sharp.max()) ** con["power"] + 1e-3)

    # (3) seed: MDC peaks of each branch (maximum on either side of the intensity-weighted centre of the MDCs
    # near E_F) in the bright upper part of the window, straight lines through them
    mdc = sharp[:, -3:].sum(1)
    centre = float(np.sum(k * mdc) / np.sum(mdc))
    kl = _mdc_peaks(np.where(k[:, None] < centre, sharp, 0.0), k, np.full(energy.shape, centre), 1e3)
    kr = _mdc_peaks(np.where(k[:, None] > centre, sharp, 0.0), k, np.full(energy.shape, centre), 1e3)
    seed_rows = energy >= float(config["seed_emin"])
    kl[~seed_rows], kr[~seed_rows] = np.nan, np.nan
    seed = _lines(energy, kl, kr)
    ctx.log(f"seed lines (E >= {config['seed_emin']} eV): hbar v = {seed['hbar_v_eVA']:.3f} eV A, "
            f"E_D = {seed['dirac_energy_eV']:.3f} eV")  # fmt: skip

    # (4) end-to-end graphene fit, started from the seed lines (graphene's own t puts the branches far from the
    # data, where the likelihood has no gradient). Reference direction at K: perpendicular to Gamma-K (K-K'),
    # where the cone is symmetric, as the two branches nearly are; phi may rotate it.
    K = high_symmetry_points(A)["K"]
    ang = np.arctan2(K[1], K[0]) + np.pi / 2
    d = (float(np.cos(ang)), float(np.sin(ang)))
    ini = {**{"phi": 0.0}, **config["init"]}
    ini.update(t=seed["hbar_v_eVA"] / (np.sqrt(3) / 2 * A), eps0=seed["dirac_energy_eV"], k_offset=seed["k_cross"])
    names = tuple(config["params"])
    pts_k = np.stack([k, np.zeros_like(k)], 1)
    pts_e = np.stack([energy, np.zeros_like(energy)], 1)
    # the same intensity, one row per energy (an MDC), "energy" axis = momentum along the cut
    mdc_map = db.BandMap(np.asarray(fit_map.intensity).T, [energy, k], dims=("E", "k"), units=("eV", "1/A"))
    start = [float(ini[n]) for n in names]
    fits = {}
    for view, cls, bmap, pts, band_idx, smooth in (
        ("mdc", GrapheneCutMDC, mdc_map, pts_e, [0, 1], config["smoothing_k"]),
        ("edc", GrapheneCut, fit_map, pts_k, [1], config["smoothing"]),
    ):
        res = fit_tight_binding(_cut_model(start, names, ini, d, K, cls), bmap, cut_points=pts, band_indices=band_idx,
                                params=names, smoothing=tuple(smooth), steps=tuple(config["steps"]))  # fmt: skip
        ctx.log(f"{view} likelihood: {res}")
        fits[view] = res
    res = fits["mdc"]
    vals, cov = np.asarray(res.values, np.float64), np.asarray(res.covariance, np.float64)

    def model_of(v):
        return _cut_model(v, names, ini, d, K)

    def model_k(v):
        m = _cut_model(v, names, ini, d, K, GrapheneCutMDC)
        return np.asarray(m.eigenvalues(jnp.asarray(pts_e, jnp.float32)))  # (n_E, 2): left, right branch

    derived = {}
    for view, r in fits.items():
        m = model_of(np.asarray(r.values, np.float64))
        derived[view] = _derived(m)
    hv_f, e_d, kf, slope_ef = derived["mdc"]
    s_hv = _propagate(lambda v: np.sqrt(3) / 2 * A * v[names.index("t")], vals, cov) if "t" in names else 0.0
    s_ed = _propagate(lambda v: v[names.index("eps0")], vals, cov) if "eps0" in names else 0.0
    s_kf = _propagate(lambda v: _derived(model_of(v))[2], vals, cov, h=1e-3)

    # (5) MDC peaks over the whole window, searched within mdc_halfwidth of the fitted branches
    qm = model_k(vals)
    half = float(config["mdc_halfwidth"])
    kl = _mdc_peaks(sharp, k, qm[:, 0], half)
    kr = _mdc_peaks(sharp, k, qm[:, 1], half)
    lines = _lines(energy, kl, kr)
    resid = {}
    for view, r in fits.items():
        q = model_k(np.asarray(r.values, np.float64))
        dl, dr = kl - q[:, 0], kr - q[:, 1]
        both = np.concatenate([dl, dr])
        slope = abs(derived[view][0])
        resid[view] = {"rms_invA": float(np.sqrt(np.nanmean(both**2))),
                       "rms_left_invA": float(np.sqrt(np.nanmean(dl**2))),
                       "rms_right_invA": float(np.sqrt(np.nanmean(dr**2))),
                       "mean_invA": float(np.nanmean(both)),
                       "rms_meV_equiv": float(1e3 * slope * np.sqrt(np.nanmean(both**2))),
                       "n_peaks": int(np.isfinite(both).sum())}  # fmt: skip
    # the loss of both views at both optima: which answer each likelihood prefers
    cross = {}
    for view in fits:
        for other, r2 in fits.items():
            if view == other:
                continue
            cls = GrapheneCutMDC if view == "mdc" else GrapheneCut
            bmap, pts, bi = (mdc_map, pts_e, [0, 1]) if view == "mdc" else (fit_map, pts_k, [1])
            m = _cut_model(np.asarray(r2.values, np.float64), names, ini, d, K, cls)
            lik = IntensityLikelihood(bmap.intensity, interp="cubic", floor=1e-6, energy=np.asarray(bmap.energy))
            e = jnp.moveaxis(m.eigenvalues(jnp.asarray(pts, jnp.float32)), -1, 0)[jnp.asarray(bi)]
            cross[f"{view}_loss_at_{other}_fit"] = float(lik(e))
    ctx.log(f"MDC-peak residuals: mdc fit {resid['mdc']['rms_invA']:.4f} 1/A, edc fit {resid['edc']['rms_invA']:.4f} 1/A")
    hbar = 6.582119569e-16  # eV s
    to_v = 1e-10 / hbar / 1e6  # eV A -> 1e6 m/s
    band = np.asarray(model_of(vals).eigenvalues(jnp.asarray(pts_k, jnp.float32)))[:, 1]
    band_edc = np.asarray(model_of(np.asarray(fits["edc"].values)).eigenvalues(jnp.asarray(pts_k, jnp.float32)))[:, 1]
    n_e, s_n = kf**2 / np.pi, 2 * kf * s_kf / np.pi
    return {
        "fermi_edge": edge.summary(),
        "work_function_hv_minus_EF": hv - ef,
        "fit": res.summary(),
        "fit_loss": float(res.loss),
        "fit_likelihood": "MDC: -sum over energy rows of log I(q_b(E), E), I interpolated along k (GrapheneCutMDC)",
        "fixed": {n: float(ini[n]) for n in ("t", "eps0", "k_offset", "k_perp", "phi") if n not in names},
        "hbar_vF_eVA": [hv_f, s_hv],
        "vF_1e6_m_per_s": [hv_f * to_v, s_hv * to_v],
        "slope_at_EF_eVA": {"left": slope_ef[0], "right": slope_ef[1]},
        "dirac_energy_eV": [e_d, s_ed],
        "kF_invA": [kf, s_kf],
        "density_per_cm2": [float(n_e * 1e16), float(s_n * 1e16)],
        "density_formula": "n = g_s g_v pi k_F^2 / (2 pi)^2 = k_F^2 / pi (spin x valley = 4, circular pocket)",
        "meaning": "apparent values along the measured cut and its momentum scale: hbar v = (sqrt3/2) a t is the "
                   "slope of the branches along the cut (about 2.9 eV A, less than half of graphene's 6-7 eV A, "
                   "so the momentum axis of this export and/or the cut geometry do not give graphene's true "
                   "velocity); E_D is the extrapolated crossing of the branches (below the window); k_F is half "
                   "the distance between the two E_F crossings; n assumes a circular pocket of that radius",
        "mdc_residuals": resid,
        "loss_comparison": cross,
        "edc_fit": {"fit": fits["edc"].summary(), "fit_loss": float(fits["edc"].loss),
                    "hbar_v_eVA": derived["edc"][0], "kF_invA": derived["edc"][2],
                    "note": "the same model fitted with the per-momentum-row (EDC) likelihood: the branches are "
                            "steep, so each row's intensity is smeared over a long energy range and weighted by "
                            "the energy dependence of the intensity (brighter towards E_F); that likelihood "
                            "prefers a flatter band even to the one that follows the MDC peaks"},
        "linear_dispersion": {**lines, "seed": seed,
                              "note": "straight lines through the MDC peaks of the whole window (peaks searched "
                                      "near the fitted branches); seed: the same near E_F only (E >= seed_emin)"},
        "arrays": {
            "k": k.tolist(), "energy": energy.tolist(),
            "intensity": np.round(inten / inten.max(), 4).tolist(),
            "model_band": band.tolist(), "model_band_edc": band_edc.tolist(),
            "model_k_left": qm[:, 0].tolist(), "model_k_right": qm[:, 1].tolist(),
            "mdc_left": np.where(np.isfinite(kl), kl, None).tolist(),
            "mdc_right": np.where(np.isfinite(kr), kr, None).tolist(),
            "edge_energy": np.asarray(edge.energy).tolist(), "edge_edc": np.asarray(edge.edc).tolist(),
            "edge_model": np.asarray(edge.model).tolist(),
        },  # fmt: skip
    }


if __name__ == "__main__":
    main("m2")
