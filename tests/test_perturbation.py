"""Tests of diffbands.perturbation: bases, perturbation models, end-to-end fitting, band decomposition."""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbands import BandMap, Bands
from diffbands._errors import ShapeError, ValidationError
from diffbands.energy import IntensityLikelihood, Smoothness, TheoryPrior
from diffbands.perturbation import (
    BasisField,
    EnergyScale,
    GridTheory,
    ModelTheory,
    PerturbationSum,
    RigidShift,
    compression_ratio,
    distance_matrix,
    fit_perturbation,
    hexagonal_harmonics,
    hexike_basis,
    hexike_decompose,
    learnable,
    legendre_basis,
    noll_to_nm,
    square_harmonics,
    zernike,
)
from diffbands.synth import Gaussian, Spectrometer, simulate
from diffbands.theory import first_bz_mask

A = 3.3  # lattice constant (A)
K = 4 * np.pi / (3 * A)  # Gamma-K: the hexagon's circumradius


def _axis(n=48, extent=1.05):
    return np.linspace(-extent * K, extent * K, n)


# --------------------------------------------------------------------------------------------- bases


def test_noll_table():
    # Noll (1976), Table 1: j -> (n, m), cosine terms (m > 0) at even j, sine terms at odd j
    table = {1: (0, 0), 2: (1, 1), 3: (1, -1), 4: (2, 0), 5: (2, -2), 6: (2, 2), 7: (3, -1), 8: (3, 1),
             9: (3, -3), 10: (3, 3), 11: (4, 0), 12: (4, 2), 13: (4, -2), 14: (4, 4), 15: (4, -4), 22: (6, 0)}
    for j, nm in table.items():
        assert noll_to_nm(j) == nm
    with pytest.raises(ValidationError, match="j"):
        noll_to_nm(0)


def test_zernike_explicit_forms():
    rho, theta = np.linspace(0, 1, 7), np.linspace(-3, 3, 7)
    np.testing.assert_allclose(zernike(4, rho, theta), math.sqrt(3) * (2 * rho**2 - 1), atol=1e-12)
    np.testing.assert_allclose(zernike(6, rho, theta), math.sqrt(6) * rho**2 * np.cos(2 * theta), atol=1e-12)
    np.testing.assert_allclose(zernike(7, rho, theta), math.sqrt(8) * (3 * rho**3 - 2 * rho) * np.sin(theta),
                               atol=1e-12)


def test_hexikes_orthonormal_on_bz():
    k = _axis(40)
    H, mask = hexike_basis(k, k, A, 15, return_mask=True)
    assert H.shape == (15, 40, 40)
    np.testing.assert_array_equal(np.asarray(mask), np.asarray(first_bz_mask(k, k, A)))
    m = np.asarray(mask)
    Hin = np.asarray(H, dtype=np.float64)[:, m]
    gram = Hin @ Hin.T / m.sum()
    np.testing.assert_allclose(gram, np.eye(15), atol=2e-5)
    np.testing.assert_allclose(Hin[0], 1.0, atol=1e-5)  # the piston is the constant 1
    assert np.all(np.asarray(H)[:, ~m] == 0)  # outside="zero"
    # a subset by Noll index gives the same functions
    sub = hexike_basis(k, k, A, noll=(3, 7, 11))
    np.testing.assert_allclose(np.asarray(sub), np.asarray(H)[[2, 6, 10]], atol=1e-6)
    ext = hexike_basis(k, k, A, noll=(2, 3), outside="extrapolate")
    np.testing.assert_allclose(np.asarray(ext)[:, m], np.asarray(H)[1:3, m], atol=1e-6)
    assert np.all(np.abs(np.asarray(ext)[:, ~m]) > 0) or np.any(np.asarray(ext)[:, ~m] != 0)


def test_hexike_errors():
    k = _axis(8)
    with pytest.raises(ValidationError, match="n_terms"):
        hexike_basis(k, k, A, 200)  # more terms than BZ pixels
    with pytest.raises(ValidationError, match="outside"):
        hexike_basis(k, k, A, 3, outside="wrap")
    with pytest.raises(ValidationError, match="a"):
        hexike_basis(k, k, -1.0, 3)
    with pytest.raises(ShapeError, match="mask"):
        hexike_basis(k, k, A, 3, mask=np.ones((3, 3), bool))


def test_hexagonal_harmonics():
    kx, ky = np.linspace(-1.0, 1.2, 9), np.linspace(-0.9, 0.9, 7)
    S = np.asarray(hexagonal_harmonics(kx, ky, A, 4), dtype=np.float64)
    KX, KY = np.meshgrid(kx, ky, indexing="ij")
    a1, a2 = A * np.array([1.0, 0.0]), A * np.array([-0.5, math.sqrt(3) / 2])
    first = sum(np.cos(KX * r[0] + KY * r[1]) for r in (a1, a2, a1 + a2)) / 3  # star of the 6 neighbours
    np.testing.assert_allclose(S[0], first, atol=1e-5)
    # periodic in the reciprocal lattice (b1 = 2 pi / a (1, 1/sqrt3))
    b1 = 2 * np.pi / A * np.array([1.0, 1 / math.sqrt(3)])
    S_shift = np.asarray(hexagonal_harmonics(kx + b1[0], ky + b1[1], A, 4), dtype=np.float64)
    np.testing.assert_allclose(S_shift, S, atol=2e-4)
    # mirror ky -> -ky (ky is symmetric) and S(Gamma) = 1
    np.testing.assert_allclose(S, S[:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(np.asarray(hexagonal_harmonics([0.0, 1.0], [0.0, 1.0], A, 5))[:, 0, 0], 1.0)
    with_const = np.asarray(hexagonal_harmonics(kx, ky, A, 2, constant=True))
    np.testing.assert_allclose(with_const[0], 1.0)
    np.testing.assert_allclose(with_const[1], S[0], atol=1e-6)


def test_square_harmonics():
    k = np.linspace(-1, 1, 6)
    S = np.asarray(square_harmonics(k, k, 2.0, 2), dtype=np.float64)
    KX, KY = np.meshgrid(k, k, indexing="ij")
    np.testing.assert_allclose(S[0], (np.cos(2 * KX) + np.cos(2 * KY)) / 2, atol=1e-6)
    np.testing.assert_allclose(S[1], np.cos(2 * KX) * np.cos(2 * KY), atol=1e-6)


def test_legendre_orthogonal():
    k = np.linspace(-0.5, 1.5, 4001)
    P = np.asarray(legendre_basis(k, 4, constant=True), dtype=np.float64)
    x = 2 * (k - k[0]) / (k[-1] - k[0]) - 1
    np.testing.assert_allclose(P[2], (3 * x**2 - 1) / 2, atol=1e-6)
    gram = np.trapezoid(P[:, None] * P[None], x, axis=-1)
    np.testing.assert_allclose(gram, np.diag(2 / (2 * np.arange(4) + 1)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(legendre_basis(k, 3)), P[1:], atol=1e-7)


# --------------------------------------------------------------------------------------------- models


def test_perturbation_models_add_up():
    T = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 6)))
    basis = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5, 6)))
    coeffs = jnp.array([[0.1, 0.0, -0.2], [0.0, 0.3, 0.0]])
    p = RigidShift(jnp.array([0.2, -0.1])) + EnergyScale(jnp.array([1.07, 0.9]), -1.0) + BasisField(coeffs, basis)
    assert isinstance(p, PerturbationSum) and len(p.terms) == 3
    expected = (np.array([0.2, -0.1])[:, None, None]
                + np.array([0.07, -0.1])[:, None, None] * (np.asarray(T) + 1.0)
                + np.einsum("bt,txy->bxy", coeffs, basis))
    np.testing.assert_allclose(np.asarray(p(T)), expected, atol=1e-5)
    # usable as the TheoryPrior's perturbation
    prior = TheoryPrior(T, 0.1, p)
    np.testing.assert_allclose(np.asarray(prior.target()), np.asarray(T) + expected, atol=1e-5)
    # fixed fields are not learnable
    spec = learnable(p)
    assert spec.terms[1].reference is False and spec.terms[2].basis is False
    assert spec.terms[1].scale is True and spec.terms[2].coeffs is True


def test_model_errors_name_fields():
    with pytest.raises(ShapeError, match="coeffs"):
        BasisField(jnp.zeros((1, 2)), jnp.zeros((3, 4, 4)))
    with pytest.raises(ShapeError, match="theory"):
        BasisField(jnp.zeros((1, 3)), jnp.zeros((3, 4, 4)))(jnp.zeros((1, 5, 4)))
    with pytest.raises(ShapeError, match="scale"):
        EnergyScale(jnp.ones(3))(jnp.zeros((2, 4)))
    with pytest.raises(ValidationError, match="terms"):
        PerturbationSum([RigidShift(0.0), "x"])
    with pytest.raises(ValidationError, match="mode"):
        fit_perturbation(Smoothness(0.1), jnp.zeros((1, 4)), RigidShift(0.0), mode="both")
    with pytest.raises(ValidationError, match="sigma"):
        fit_perturbation(Smoothness(0.1), jnp.zeros((1, 4)), RigidShift(0.0), mode="joint")
    with pytest.raises(ValidationError, match="max_step"):
        fit_perturbation(Smoothness(0.1), jnp.zeros((1, 4)), RigidShift(0.0), max_step=-1.0)
    with pytest.raises(ValidationError, match="filter_spec"):
        fit_perturbation(Smoothness(0.1), jnp.zeros((1, 4)), RigidShift(0.0), filter_spec=lambda x: False)
    with pytest.raises(ValidationError, match="optimizer"):
        fit_perturbation(Smoothness(0.1), jnp.zeros((1, 4)), RigidShift(0.0), optimizer="sgd")


# --------------------------------------------------------------------------------------------- fitting

NOLL = (2, 3, 5, 6)  # tilts and astigmatisms: orthogonal to the fully symmetric theory band (see below)


@functools.cache
def _scene(n=48, n_e=150):
    """Two bands on a hexagonal grid: T = smooth C6v-symmetric bands; truth = T + dE_true."""
    k = _axis(n)
    S1 = np.asarray(hexagonal_harmonics(k, k, A, 1), dtype=np.float64)[0]  # in [-1/2, 1]
    T = np.stack([-0.9 + 0.5 * S1, -2.2 - 0.4 * S1])
    ref = np.array([-1.0, -2.0])
    coeffs = np.array([[0.0, 0.0, 0.030, 0.030], [0.030, 0.0, 0.0, 0.030]])
    true = (RigidShift(jnp.array([0.2, 0.2])) + EnergyScale(jnp.array([1.07, 1.07]), ref)
            + BasisField.hexikes(k, k, A, n_bands=2, noll=NOLL, coeffs=coeffs, outside="extrapolate"))
    truth = T + np.asarray(true(jnp.asarray(T)), dtype=np.float64)
    energy = np.linspace(truth.min() - 0.4, truth.max() + 0.4, n_e)
    bandmap = simulate(Bands(truth, [k, k]), energy, Spectrometer(Gaussian(0.05)))
    init = (RigidShift(jnp.zeros(2)) + EnergyScale(jnp.ones(2), ref)
            + BasisField.hexikes(k, k, A, n_bands=2, noll=NOLL, outside="extrapolate"))
    return k, T, truth, coeffs, bandmap, init


def _check_recovery(dec, coeffs, rtol=0.05):
    """Each coefficient within rtol: shift 200 meV, scale - 1 = 0.07, hexike coefficients 30 meV (and 0s
    within rtol of 30 meV)."""
    np.testing.assert_allclose(dec["shift"], 200.0, atol=rtol * 200.0)
    np.testing.assert_allclose(dec["scale"] - 1, 0.07, atol=rtol * 0.07)
    np.testing.assert_allclose(dec["hexike_coeffs"], 1e3 * coeffs, atol=rtol * 30.0)


def test_acceptance_theory_only_recovers_known_perturbation():
    # Scale and shift are separable because the reference energies are fixed and T varies over k; the
    # hexike piston (Noll 1) is degenerate with the shift and is left out, and the radially symmetric
    # Noll 4 is nearly degenerate with the energy scaling of a C6v-symmetric band, so it is left out too.
    _k, T, truth, coeffs, bandmap, init = _scene()
    lik = IntensityLikelihood(bandmap, interp="cubic")
    res = fit_perturbation(lik, T, init, mode="theory_only", steps=60)
    dec = res.decomposition()
    _check_recovery(dec, coeffs)
    assert float(res.loss[-1]) < float(res.loss[0])
    assert res.loss.shape == (61,)
    np.testing.assert_allclose(np.asarray(res.bands), truth, atol=2e-3)
    assert set(dec) >= {"shift", "scale", "scale_rms", "hexike_coeffs", "hexike_rms", "total_rms"}
    # the field RMS per band equals the RMS of its own dE over the grid
    field = np.asarray(res.perturbation.terms[2](jnp.asarray(T)), dtype=np.float64)
    np.testing.assert_allclose(dec["hexike_rms"], 1e3 * np.sqrt((field**2).mean(axis=(1, 2))), rtol=1e-4)


def test_joint_mode_recovers_known_perturbation():
    _k, T, truth, coeffs, bandmap, init = _scene(n=32, n_e=120)
    lik = IntensityLikelihood(bandmap, interp="cubic")
    res = fit_perturbation(lik, T, init, mode="joint", sigma=0.02, steps=400)
    _check_recovery(res.decomposition(), coeffs)
    # the free bands sit on the data's bands
    assert float(np.max(np.abs(np.asarray(res.bands) - truth))) < 0.01


def test_grid_theory_learns_momentum_transform():
    kg = np.linspace(-1.6, 1.6, 81)
    KX, KY = np.meshgrid(kg, kg, indexing="ij")
    G = Bands(np.stack([-1.0 + 0.3 * np.cos(1.7 * KX) * np.cos(1.1 * KY) + 0.1 * KX]), [kg, kg])
    kd = np.linspace(-1.0, 1.0, 28)
    true = GridTheory(G, [kd, kd], k_scale=1.04, rotation=np.radians(3.0), k_offset=[0.02, -0.03],
                      energy_offset=0.05)
    truth = np.asarray(true(), dtype=np.float64)
    energy = np.linspace(truth.min() - 0.4, truth.max() + 0.4, 100)
    lik = IntensityLikelihood(simulate(Bands(truth, [kd, kd]), energy, Spectrometer(Gaussian(0.05))), interp="cubic")
    res = fit_perturbation(lik, GridTheory(G, [kd, kd]), RigidShift(jnp.zeros(1)), steps=50,
                           filter_spec=(lambda x: False, learnable(GridTheory(G, [kd, kd]))))
    dec = res.decomposition()
    assert abs(dec["k_scale"] - 1.04) < 0.004
    assert abs(dec["rotation_deg"] - 3.0) < 0.3
    np.testing.assert_allclose(dec["k_offset"], [0.02, -0.03], atol=0.003)
    np.testing.assert_allclose(dec["energy_offset"], 50.0, atol=2.5)


class _NNBand(eqx.Module):
    """A nearest-neighbour hexagonal tight-binding band ``E = e0 + 2 t sum_i cos(k . a_i)``."""

    t: jax.Array
    e0: float = eqx.field(static=True)

    def bands(self, KX, KY):
        s = sum(jnp.cos(KX * r[0] + KY * r[1]) for r in ((A, 0.0), (-A / 2, A * math.sqrt(3) / 2),
                                                         (A / 2, A * math.sqrt(3) / 2)))
        return (self.e0 + 2 * self.t * s)[None]

    def band_energies(self, k, scale=1.0):
        return scale * self.bands(k[..., 0], k[..., 1])


def test_model_theory_learns_tight_binding_parameter():
    k = _axis(24)
    truth = np.asarray(ModelTheory(_NNBand(jnp.asarray(0.12), -1.0), [k, k], method="bands")(), dtype=np.float64)
    energy = np.linspace(truth.min() - 0.4, truth.max() + 0.4, 100)
    lik = IntensityLikelihood(simulate(Bands(truth, [k, k]), energy, Spectrometer(Gaussian(0.05))), interp="cubic")
    theory = ModelTheory(_NNBand(jnp.asarray(0.09), -1.0), [k, k], method="bands")
    stacked = ModelTheory(_NNBand(jnp.asarray(0.09), -1.0), [k, k], "band_energies", {"scale": 2.0}, stack=True)
    np.testing.assert_allclose(np.asarray(stacked()), 2 * np.asarray(theory()), rtol=1e-6)
    res = fit_perturbation(lik, theory, RigidShift(jnp.zeros(1)), steps=40)
    assert abs(float(res.theory.model.t) - 0.12) < 0.12 * 0.01
    assert abs(res.decomposition()["shift"][0]) < 2.0  # meV: no spurious offset


def test_adam_optimiser_runs_and_decreases_loss():
    k = np.linspace(-1, 1, 30)
    T = np.stack([-1.0 + 0.5 * k**2])
    truth = T + 0.1
    energy = np.linspace(-1.6, 0.2, 90)
    lik = IntensityLikelihood(simulate(Bands(truth, [k]), energy, Spectrometer(Gaussian(0.05))), interp="cubic")
    field = BasisField.legendre(k, 3, n_bands=1)
    res = fit_perturbation(lik, T, RigidShift(jnp.zeros(1)) + field, optimizer="adam", learning_rate=5e-3,
                           steps=300)
    assert float(res.loss[-1]) < float(res.loss[0])
    assert abs(res.decomposition()["shift"][0] - 100.0) < 5.0
    np.testing.assert_allclose(res.decomposition()["legendre_coeffs"], 0.0, atol=5.0)


# --------------------------------------------------------------------------------------------- decomposition


def test_decompose_recovers_hexike_band_exactly():
    k = _axis(40)
    H = np.asarray(hexike_basis(k, k, A, 10), dtype=np.float64)
    c = np.array([[-1.0, 0.0, 0.05, 0.2, 0.0, -0.03, 0.0, 0.0, 0.01, 0.0],
                  [-2.5, 0.1, 0.0, -0.1, 0.02, 0.0, 0.0, 0.04, 0.0, 0.0]])
    bands = Bands(np.einsum("bt,txy->bxy", c[:, :6], H[:6]), [k, k])  # only the first 6 terms used
    c6 = c.copy()
    c6[:, 6:] = 0
    dec = hexike_decompose(bands, A, 10)
    np.testing.assert_allclose(np.asarray(dec.coeffs), c6, atol=2e-5)
    err = np.asarray(dec.rms_error)
    assert err.shape == (2, 10)
    assert np.all(np.diff(err, axis=1) <= 1e-6)  # non-increasing with the number of terms
    assert np.all(err[:, 5:] < 1e-5)  # exact once the 6 used terms are in
    assert err[0, 4] > 0.029 and err[1, 3] > 0.019  # the last non-zero term of each band is still missing
    m = np.asarray(dec.mask)
    np.testing.assert_allclose(np.asarray(dec.reconstruction)[:, m], np.asarray(bands.energies)[:, m], atol=1e-5)


def test_decompose_error_decreases_for_a_generic_band():
    k = _axis(40)
    S = np.asarray(hexagonal_harmonics(k, k, A, 3), dtype=np.float64)
    band = -1.0 + 0.4 * S[0]
    dec = hexike_decompose(band[None], A, 28, kx=k, ky=k)
    err = np.asarray(dec.mean_rms_error())
    assert np.all(np.diff(err) <= 1e-6)
    assert err[-1] < 0.1 * err[3]
    # Parseval: the first term's error is the band's RMS about its BZ mean
    m = np.asarray(dec.mask)
    np.testing.assert_allclose(err[0], band[m].std(), rtol=1e-3)
    with pytest.raises(ValidationError, match="kx"):
        hexike_decompose(band[None], A, 5)


def test_compression_ratio():
    ratio = compression_ratio((256, 256, 470), 14, 400)
    assert ratio == pytest.approx(256 * 256 * 470 / (14 * 400))
    assert ratio > 5000  # the reference's claim
    with pytest.raises(ValidationError, match="n_terms"):
        compression_ratio((4, 4), 1, 0)


def test_distance_matrix():
    k = _axis(30)
    H = np.asarray(hexike_basis(k, k, A, 6), dtype=np.float64)
    mask = np.asarray(first_bz_mask(k, k, A))
    base = np.stack([-1.0 + 0.2 * H[3], -2.0 + 0.1 * H[5]])
    sets = {
        "theory": base,
        "shifted": base + np.array([0.3, -0.1])[:, None, None],
        "bumped": base + 0.01 * H[4][None],  # unit-RMS, zero-mean on the BZ: 10 meV in each band
        "flipped": 2 * base.mean() - base,
    }
    d = distance_matrix(sets, mask=mask)
    assert d.names == ("theory", "shifted", "bumped", "flipped")
    pb = np.asarray(d.per_band)
    np.testing.assert_allclose(np.diagonal(pb, axis1=0, axis2=1), 0.0, atol=1e-3)
    np.testing.assert_allclose(pb[0, 1], 0.0, atol=0.05)  # a rigid offset is removed
    np.testing.assert_allclose(pb[0, 2], 10.0, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(d.mean)[0, 2], 10.0, rtol=1e-3)
    np.testing.assert_allclose(pb, np.swapaxes(pb, 0, 1), atol=1e-4)
    sim = np.asarray(d.similarity)
    np.testing.assert_allclose(sim[0, 1], 1.0, atol=1e-5)
    np.testing.assert_allclose(sim[0, 3], -1.0, atol=1e-5)
    assert 0.9 < sim[0, 2] < 1.0
    raw = distance_matrix({"a": sets["theory"], "b": sets["shifted"]}, mask=mask, remove_offset=False)
    np.testing.assert_allclose(np.asarray(raw.per_band)[0, 1], [300.0, 100.0], rtol=1e-4)
    with pytest.raises(ShapeError, match="band_sets"):
        distance_matrix({"a": base, "b": base[:1]})


def test_wse2_theories_decompose_and_compare():
    # real theory grids (bulk WSe2, two published interlayer models); must fail, not skip, if missing
    import h5py

    from diffbands._paths import data_path

    sets = {}
    for name in ("wse2_fang2015", "wse2_fang2015_cappelluti_interlayer"):
        with h5py.File(data_path(f"theory/wse2/{name}_bands.h5"), "r") as f:
            sets[name] = np.asarray(f["bands"])[:, ::4, ::4]
            kx, ky = np.asarray(f["kx"])[::4], np.asarray(f["ky"])[::4]
    a = 3.32
    dec = hexike_decompose(sets["wse2_fang2015"], a, 45, kx=kx, ky=ky)
    err = np.asarray(dec.rms_error)
    assert err.shape == (14, 45)
    assert np.all(np.diff(err, axis=1) <= 1e-5)
    assert np.all(err[:, -1] < 0.5 * err[:, 0])  # 45 terms capture most of each band's dispersion
    mask = np.asarray(dec.mask)
    sets["fang_reconstruction"] = np.asarray(dec.reconstruction)
    d = distance_matrix(sets, mask=mask)
    raw = distance_matrix(sets, mask=mask, remove_offset=False)
    # the two models differ mostly by per-band offsets (data README): removing them shrinks the distance
    assert float(d.mean[0, 1]) < 0.6 * float(raw.mean[0, 1])
    # the reconstruction's distance to its source is its approximation error (quadrature mean over bands, meV)
    np.testing.assert_allclose(float(raw.mean[0, 2]), 1e3 * np.sqrt(np.mean(err[:, -1] ** 2)), rtol=1e-3)
    assert float(d.similarity[0, 2]) > 0.95  # shape (cosine) agreement of the 45-term reconstruction


def test_noisy_data_with_shift_search():
    # Poisson data (1000 counts at the brightest voxel): the initial bands, 0.2 eV (4 linewidths) off, sit in
    # empty pixels where the likelihood is flat; the per-band shift search moves them into the basin first.
    _k, T, _truth, coeffs, bandmap, init = _scene()
    expected = np.asarray(bandmap.intensity, dtype=np.float64)
    counts = np.random.default_rng(3).poisson(1000 * expected / expected.max())
    lik = IntensityLikelihood(BandMap(counts, bandmap.coords), interp="cubic")
    res = fit_perturbation(lik, T, init, steps=60, shift_search=np.linspace(-0.5, 0.5, 51))
    _check_recovery(res.decomposition(), coeffs)
    with pytest.raises(ValidationError, match="shift_search"):
        fit_perturbation(lik, T, init.terms[1], steps=1, shift_search=[0.0, 0.1])


def test_grid_theory_interpolation():
    # identity transform on the grid's own axes reproduces the grid; offsets follow linear interpolation
    kg = np.linspace(-1.0, 1.0, 21)
    KX, KY = np.meshgrid(kg, kg, indexing="ij")
    G = Bands(np.stack([np.sin(2 * KX) + KY**2, KX * KY]), [kg, kg])
    np.testing.assert_allclose(np.asarray(GridTheory(G, [kg, kg])()), np.asarray(G.energies), atol=1e-6)
    cut = Bands(np.stack([np.cos(3 * kg)]), [kg])
    kd = np.linspace(-0.8, 0.8, 13)
    out = np.asarray(GridTheory(cut, [kd], k_scale=1.1, k_offset=[0.03], energy_offset=0.2)())
    expected = np.interp(1.1 * kd + 0.03, kg, np.cos(3 * kg)) + 0.2
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    # a rotation by 90 degrees maps (kx, ky) -> (-ky, kx)
    rot = np.asarray(GridTheory(G, [kg, kg], rotation=np.pi / 2)())
    np.testing.assert_allclose(rot[0], np.sin(-2 * KY) + KX**2, atol=1e-4)
    with pytest.raises(ShapeError, match="target"):
        GridTheory(G, [kd])
