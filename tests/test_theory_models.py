"""Tests of the small tight-binding models (graphene, Bernal bilayer graphene, TMD three-band) and of
end-to-end tight-binding fitting to a band map.

Parameter files come from ../shared/data/theory (the tests FAIL if they are missing). Expected numbers are
derived in the comments (closed forms at K, symmetries) or read from the files.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbands import BandMap, Bands, ShapeError, ValidationError
from diffbands._paths import data_path
from diffbands.synth import Gaussian, Spectrometer, simulate
from diffbands.theory import (
    KUZMENKO2009_BLG,
    LIU2013,
    TMD_PARAMS,
    BernalBilayerGraphene,
    Graphene,
    TMD3Band,
    eigvalsh_safe,
    fit_tight_binding,
    high_symmetry_points,
    line_cut,
    reciprocal_vectors,
)

SQ3 = math.sqrt(3.0)
GRAPHENE_JSON = "theory/graphene_tb_params.json"
TMD_JSON = "theory/tmd_3band_liu2013.json"


def _random_k(n, seed=0, scale=2.0):
    return jnp.asarray(np.random.default_rng(seed).uniform(-scale, scale, size=(n, 2)))


def _rot(k, angle):
    c, s = math.cos(angle), math.sin(angle)
    return k @ jnp.asarray([[c, s], [-s, c]], k.dtype)  # rows rotated by +angle


# -- graphene ------------------------------------------------------------------------------------------
def test_graphene_closed_form_matches_eigh():
    g = Graphene(t=2.7, a=2.46, eps0=-0.2)
    pts = high_symmetry_points(2.46)
    k = jnp.concatenate([_random_k(64), jnp.asarray(np.stack([pts["K"], pts["K'"], pts["M"], pts["G"]]))])
    closed = g.eigenvalues(k)
    numeric = eigvalsh_safe(jax.vmap(g.hamiltonian)(k))
    np.testing.assert_allclose(closed, numeric, atol=2e-5)
    # Dirac points at K and K' (f = 0); at Gamma |f| = 3 so E = eps0 +- 3t
    np.testing.assert_allclose(closed[64:66], -0.2, atol=1e-5)
    np.testing.assert_allclose(closed[67], [-0.2 - 3 * 2.7, -0.2 + 3 * 2.7], rtol=1e-6)
    # cone velocity near K: E - eps0 = +- (sqrt(3)/2) a t |q| to first order
    q = 1e-3
    w = g.eigenvalues(jnp.asarray(pts["K"] + np.array([0.0, q])))
    np.testing.assert_allclose(w[1] + 0.2, 0.5 * SQ3 * 2.46 * 2.7 * q, rtol=2e-2)


def test_graphene_from_json_and_gradients_at_the_dirac_point():
    g = Graphene.from_json(data_path(GRAPHENE_JSON))
    with open(data_path(GRAPHENE_JSON)) as fh:
        mono = json.load(fh)["graphene_mono"]
    assert float(g.a) == pytest.approx(mono["a_A"])
    assert float(g.t) == pytest.approx(2.8)  # "2.7-3.0 (2.8 default)"
    K = jnp.asarray(high_symmetry_points(float(g.a))["K"])
    grads = jax.grad(lambda m: jnp.sum(m.eigenvalues(K) * jnp.array([1.0, 2.0])))(g)
    for name in ("t", "a", "eps0", "k_shift"):
        assert np.all(np.isfinite(np.asarray(getattr(grads, name)))), name
    assert float(grads.eps0) == pytest.approx(3.0)  # d/d eps0 of (E_- + 2 E_+)
    assert float(grads.t) == pytest.approx(0.0, abs=1e-6)  # |f(K)| = 0


# -- Bernal bilayer graphene ------------------------------------------------------------------------------
def test_bilayer_from_json_and_spectrum_at_K():
    m = BernalBilayerGraphene.from_json(data_path(GRAPHENE_JSON), U=0.12, dirac_energy=-0.3)
    with open(data_path(GRAPHENE_JSON)) as fh:
        bl = json.load(fh)["graphene_bilayer"]
    for g in ("gamma0", "gamma1", "gamma3", "gamma4"):
        assert float(getattr(m, g)) == pytest.approx(bl[f"{g}_eV"]) == pytest.approx(KUZMENKO2009_BLG[g])
    K = jnp.asarray(high_symmetry_points(2.46)["K"])
    # f(K) = 0: A1 at E_D - U/2, B2 at E_D + U/2, the B1-A2 dimer at E_D +- sqrt(gamma1^2 + U^2/4)
    r = math.sqrt(0.381**2 + 0.06**2)
    np.testing.assert_allclose(m.eigenvalues(K), -0.3 + np.array([-r, -0.06, 0.06, r]), atol=2e-6)
    # Hermitian, and the spectrum is even in U (layer exchange)
    k = _random_k(16, seed=3)
    h = jax.vmap(m.hamiltonian)(k)
    np.testing.assert_allclose(h, jnp.conj(jnp.swapaxes(h, -1, -2)), atol=1e-7)
    flipped = BernalBilayerGraphene.from_json(data_path(GRAPHENE_JSON), U=-0.12, dirac_energy=-0.3)
    np.testing.assert_allclose(m.eigenvalues(k), flipped.eigenvalues(k), atol=2e-5)
    # gamma3 = gamma4 = U = 0: two decoupled-looking branches E = +-gamma1/2 +- sqrt(gamma1^2/4 + (gamma0|f|)^2)
    sym = BernalBilayerGraphene(gamma3=0.0, gamma4=0.0, U=0.0)
    af = 3.16 * np.abs(np.asarray(jax.vmap(lambda q: jnp.sum(jnp.exp(1j * jnp.stack([
        q[1] * 2.46 / SQ3, (0.5 * SQ3 * q[0] - 0.5 * q[1]) * 2.46 / SQ3,
        (-0.5 * SQ3 * q[0] - 0.5 * q[1]) * 2.46 / SQ3]))))(k)))  # fmt: skip
    root = np.sqrt(0.381**2 / 4 + af**2)
    expected = np.sort(np.stack([s1 * 0.381 / 2 + s2 * root for s1 in (-1, 1) for s2 in (-1, 1)], -1), -1)
    np.testing.assert_allclose(sym.eigenvalues(k), expected, atol=3e-5)


def test_bilayer_gradients_finite_at_degeneracy():
    # U = 0 at K: the two low-energy levels are degenerate (both at E_D)
    m = BernalBilayerGraphene(U=0.0, dirac_energy=-0.3)
    K = jnp.asarray(high_symmetry_points(2.46)["K"])
    k = jnp.stack([K, K + jnp.array([0.02, 0.01])])

    def loss(model):
        w = model.eigenvalues(k)
        return jnp.sum(w[:, 1] + w[:, 2]) + jnp.sum(w[:, 3] ** 2)

    g = jax.grad(loss)(m)
    leaves = jax.tree_util.tree_leaves(g)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
    # the sum of the degenerate pair is smooth: its derivative in E_D is 1 per level, in U zero at K
    h = 1e-3
    for name in ("dirac_energy", "U", "gamma1", "gamma0"):
        def shifted(d, name=name):
            return loss(BernalBilayerGraphene(**{"U": 0.0, "dirac_energy": -0.3, name: float(getattr(m, name)) + d}))

        fd = (shifted(h) - shifted(-h)) / (2 * h)
        assert float(getattr(g, name)) == pytest.approx(float(fd), rel=2e-2, abs=2e-2), name


def test_bands_grid_and_cut():
    m = BernalBilayerGraphene(U=0.1, dirac_energy=-0.3)
    kx = np.linspace(1.5, 1.9, 5)
    ky = np.linspace(-0.2, 0.2, 4)
    b = m.bands(kx, ky)
    assert isinstance(b, Bands) and b.dims == ("kx", "ky") and b.energies.shape == (4, 5, 4)
    np.testing.assert_allclose(b.energies[:, 2, 1], m.eigenvalues(jnp.array([kx[2], ky[1]])), atol=1e-6)
    assert np.all(np.diff(np.asarray(b.energies), axis=0) >= 0)  # ascending band order
    K = high_symmetry_points(2.46)["K"]
    s = np.linspace(-0.1, 0.1, 11)
    pts = line_cut(K, np.pi / 2, s)
    np.testing.assert_allclose(pts[5], K, atol=1e-12)
    np.testing.assert_allclose(pts[-1] - pts[0], [0.0, 0.2], atol=1e-12)
    cut = m.bands(pts, coord=s, band_indices=[1, 2])
    assert cut.dims == ("k",) and cut.energies.shape == (2, 11) and cut.labels == ("band 1", "band 2")
    np.testing.assert_allclose(cut.coords[0], s, atol=1e-7)
    np.testing.assert_allclose(cut.energies[:, 5], [-0.35, -0.25], atol=1e-5)
    default = m.bands(pts)  # default coordinate: path length from the first point
    np.testing.assert_allclose(default.coords[0], s - s[0], atol=1e-6)
    with pytest.raises(ShapeError, match="k"):
        m.bands(np.zeros((3, 3)))
    with pytest.raises(ValidationError, match="band_indices"):
        m.bands(pts, band_indices=[4])
    with pytest.raises(ValidationError, match="gamma0"):
        BernalBilayerGraphene(gamma0=float("nan"))
    with pytest.raises(ValidationError, match="direction"):
        line_cut(K, [0.0, 0.0], s)


# -- TMD three-band -----------------------------------------------------------------------------------------
def test_tmd_from_json_matches_embedded_table():
    with open(data_path(TMD_JSON)) as fh:
        data = json.load(fh)
    for (material, model), ref in LIU2013.items():
        m = TMD3Band.from_json(data_path(TMD_JSON), material=material, model=model)
        row = dict(zip(data[f"{model}_columns"], data[model][material]))
        assert float(m.a) == pytest.approx(10 * row["a_nm"]) == pytest.approx(ref["a"])
        for name in TMD_PARAMS:
            assert float(m.params[name]) == pytest.approx(row.get(name, 0.0)), (material, model, name)
            assert float(m.params[name]) == pytest.approx(ref[name]), (material, model, name)
    m = TMD3Band.from_json(data_path(TMD_JSON), material="MoTe2", model="NN", soc=False)
    assert float(m.params["t12"]) == pytest.approx(0.239) and m.n_bands == 3
    with pytest.raises(ValidationError, match="material"):
        TMD3Band.from_json(data_path(TMD_JSON), material="Graphite")
    with pytest.raises(ValidationError, match="model"):
        TMD3Band(model="5NN")


def test_tmd_nn_closed_form_at_K():
    # At K (alpha = 2 pi / 3, beta = 0) every V1, V2, Re V12 vanishes: E(dz2) = eps1 - 3 t0 and the
    # (dxy, dx2-y2) block gives eps2 - 3 (t11 + t22) / 2 -+ 3 sqrt(3) t12 (Liu et al., Sec. III).
    for material in ("WSe2", "MoS2"):
        m = TMD3Band.from_json(data_path(TMD_JSON), material=material, model="NN", soc=False)
        p = {n: float(v) for n, v in m.params.items()}
        K = jnp.asarray(high_symmetry_points(float(m.a))["K"])
        pair = p["eps2"] - 1.5 * (p["t11"] + p["t22"]) + np.array([-1, 1]) * 3 * SQ3 * p["t12"]
        expected = np.sort([p["eps1"] - 3 * p["t0"], *pair])
        np.testing.assert_allclose(m.eigenvalues(K), expected, atol=2e-5)


def test_tmd_symmetries_and_spin_orbit():
    # TNN contains every NN term (with other values), so this also exercises the NN formulas away from K
    model = "TNN"
    m = TMD3Band.from_json(data_path(TMD_JSON), material="WSe2", model=model, soc=True)
    a = float(m.a)
    k = _random_k(32, seed=5, scale=1.5)
    w = m.eigenvalues(k)
    np.testing.assert_allclose(m.eigenvalues(_rot(k, 2 * math.pi / 3)), w, atol=3e-5)  # C3
    b1 = reciprocal_vectors(a)[0]
    np.testing.assert_allclose(m.eigenvalues(k + b1), w, atol=3e-5)  # lattice periodicity
    spin = m.spin_resolved_eigenvalues(k)  # time reversal: up at k = down at -k
    np.testing.assert_allclose(m.spin_resolved_eigenvalues(-k)[:, 1], spin[:, 0], atol=3e-5)
    nosoc = TMD3Band.from_json(data_path(TMD_JSON), material="WSe2", model=model, soc=False)
    np.testing.assert_allclose(nosoc.eigenvalues(-k), nosoc.eigenvalues(k), atol=3e-5)
    # at K the top valence band is an L_z = +-2 state: spin split by exactly 2 lambda
    K = jnp.asarray(high_symmetry_points(a)["K"])
    s = m.spin_resolved_eigenvalues(K)
    assert abs(float(s[0, 0] - s[1, 0])) == pytest.approx(2 * 0.228, abs=1e-4)
    # monolayer WSe2 is a direct-gap semiconductor at K with the VBM at K (Liu et al., Fig. 3): the VB
    # maximum over a Gamma-K-M path is at K and the K gap (no SOC) is near the GGA value 1.5-1.6 eV
    pts = high_symmetry_points(a)
    from diffbands.theory import k_path

    path, _, _ = k_path([pts["G"], pts["K"], pts["M"], pts["G"]], 40)
    vb = np.asarray(m.eigenvalues(jnp.asarray(path)))[:, 1]
    assert np.argmax(vb) == 40  # index of K on the path
    wk = np.asarray(nosoc.eigenvalues(K))
    assert 1.4 < wk[1] - wk[0] < 1.7


def test_tmd_gradients_finite_at_degeneracies():
    m = TMD3Band()  # WSe2, TNN, SOC
    G = jnp.zeros((1, 2))  # at Gamma the (dxy, dx2-y2) levels form Kramers/orbital degeneracies
    K = jnp.asarray(high_symmetry_points(float(m.a))["K"])[None]
    k = jnp.concatenate([G, K])

    def loss(model):
        return jnp.sum(model.eigenvalues(k)[:, 2:])  # sums over whole degenerate groups

    g = jax.grad(loss)(m)
    assert np.isfinite(float(g.a)) and all(np.isfinite(float(v)) for v in g.params.values())
    h = 1e-3
    for name in ("eps2", "t11", "lambda"):
        up = TMD3Band({**{n: float(v) for n, v in m.params.items()}, name: float(m.params[name]) + h})
        dn = TMD3Band({**{n: float(v) for n, v in m.params.items()}, name: float(m.params[name]) - h})
        fd = (loss(up) - loss(dn)) / (2 * h)
        assert float(g.params[name]) == pytest.approx(float(fd), rel=1e-2, abs=1e-2), name


# -- fitting ---------------------------------------------------------------------------------------------------
def test_fit_argument_errors():
    m = Graphene()
    s = np.linspace(-0.1, 0.1, 8)
    pts = line_cut(high_symmetry_points(2.46)["K"], 0.0, s)
    bm = BandMap(np.ones((8, 6)), [s, np.linspace(-1, 0, 6)])
    with pytest.raises(ValidationError, match="params"):
        fit_tight_binding(m, bm, cut_points=pts, params=("gamma0",))
    with pytest.raises(ShapeError, match="cut_points"):
        fit_tight_binding(m, bm, cut_points=pts[:5], params=("t",))
    with pytest.raises(ValidationError, match="optimizer"):
        fit_tight_binding(m, bm, cut_points=pts, params=("t",), optimizer="newton")
    with pytest.raises(ValidationError, match="steps"):
        fit_tight_binding(m, bm, cut_points=pts, params=("t",), smoothing=(0.1, 0.0), steps=(5,))


def test_fit_graphene_lbfgs_noise_free():
    """L-BFGS recovers t and the Dirac energy of monolayer graphene from a noise-free cut (small sizes)."""
    true = Graphene(t=2.8, eps0=-0.4)
    s = np.linspace(-0.15, 0.15, 48)
    pts = line_cut(high_symmetry_points(2.46)["K"], 0.3, s)  # an oblique cut through K
    bm = simulate(true.bands(pts, coord=s), np.linspace(-1.5, 0.5, 96), Spectrometer(Gaussian(sigma=0.03)))
    res = fit_tight_binding(Graphene(t=2.6, eps0=-0.35), bm, cut_points=pts, params=("t", "eps0"),
                            smoothing=(0.05, 0.0), steps=15)  # fmt: skip
    (t, st), (e0, se0) = res.summary()["t"], res.summary()["eps0"]
    assert t == pytest.approx(2.8, rel=5e-3) and e0 == pytest.approx(-0.4, abs=3e-3)
    assert 0 < st < 0.05 and 0 < se0 < 0.01
    assert res.loss_trace[-1] < res.loss_trace[0]


def test_fit_bilayer_graphene_acceptance():
    """Issue 4 acceptance: a synthetic BLG cut through K with Poisson noise; gamma0, gamma1, U and the Dirac
    energy recovered within 2 % or 5 meV by end-to-end tight-binding fitting."""
    truth = {"gamma0": 3.16, "gamma1": 0.381, "gamma3": 0.38, "gamma4": 0.14, "U": 0.1, "dirac_energy": -0.3}
    true = BernalBilayerGraphene(**truth)
    K = high_symmetry_points(2.46)["K"]
    s = np.linspace(-0.12, 0.12, 200)
    pts = line_cut(K, np.pi / 2, s)  # the cut through K perpendicular to Gamma-K
    energy = np.linspace(-1.3, 0.3, 200)
    # Gaussian lines of 35 meV FWHM (sigma 15 meV); Poisson counts with 100 expected at the brightest voxel.
    # (The expected intensity comes from simulate; the draw is numpy's, because compiling simulate's own
    # sampler costs ~6 s here, and simulate(counts=...) is covered by tests/test_synth.py.)
    expected = simulate(true.bands(pts, coord=s), energy, Spectrometer(Gaussian(sigma=0.015)))
    lam = 100.0 * np.asarray(expected.intensity) / float(expected.intensity.max())
    bm = expected.with_intensity(np.random.default_rng(0).poisson(lam).astype(float), intensity_unit="counts")
    fitted = ("gamma0", "gamma1", "U", "dirac_energy")
    start = BernalBilayerGraphene(**{**truth, "gamma0": 3.16 * 1.07, "gamma1": 0.381 * 0.92, "U": 0.11,
                                     "dirac_energy": -0.3 * 0.93})  # fmt: skip
    res = fit_tight_binding(start, bm, cut_points=pts, params=fitted, smoothing=(0.03, 0.0), steps=150,
                            optimizer="adam", learning_rate=5e-3)  # fmt: skip
    summary = res.summary()
    print(res)
    for name in fitted:
        value, sigma = summary[name]
        want = truth[name]
        if name == "U":  # the spectrum is even in U: only |U| is determined
            value = abs(value)
        assert abs(value - want) <= max(0.02 * abs(want), 0.005), (name, value, want)
        assert np.isfinite(sigma) and sigma > 0, (name, sigma)
    # the loss went down, and the fitted model is a model with the fitted values
    trace = np.asarray(res.loss_trace)
    assert trace.shape == (300,) and np.all(np.isfinite(trace))
    assert float(res.loss) <= trace[150] + 1e-3 and trace[-1] < trace[150]
    assert float(res.model.gamma0) == pytest.approx(summary["gamma0"][0])
    assert float(res.model.gamma3) == pytest.approx(0.38)  # not fitted: unchanged
    # the curvature error bars are consistent with the recovered values (within 4 sigma)
    for name in ("gamma0", "gamma1", "dirac_energy"):
        value, sigma = summary[name]
        assert abs(value - truth[name]) < 4 * sigma + 1e-3, (name, value, sigma)
