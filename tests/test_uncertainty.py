"""Laplace band uncertainty (diffbands._uncertainty) against the exact inverse Hessian on tiny problems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import diffbands as db
from diffbands import energy as en
from diffbands import solvers
from diffbands._uncertainty import band_uncertainty, low_confidence

E_AXIS = np.linspace(-2.0, 0.0, 41)


def _problem(k_shape, centres, width=0.12, empty=None, solve=False):
    """A band map with one Gaussian peak per band at ``centres[b] + 0.1 * kx``, and the energy with the bands
    on the peaks (near the MAP, where the data curvature is positive) or, with ``solve``, the MAP bands."""
    axes = [np.linspace(-1, 1, n) for n in k_shape]
    kx = np.meshgrid(*axes, indexing="ij")[0]
    vol = sum(np.exp(-0.5 * ((E_AXIS - (c + 0.1 * kx)[..., None]) / width) ** 2) for c in centres) + 1e-3
    if empty is not None:
        vol[empty] = 0.0
    bm = db.BandMap(vol, axes + [E_AXIS])
    init = db.Bands(np.stack([c + 0.1 * kx for c in centres]), axes)
    U = en.IntensityLikelihood(bm, interp="cubic") + en.Smoothness(0.05)
    if len(centres) > 1:
        U = U + en.FeatureExclusion(0.1, 1.0)
    if not solve:
        return U, init
    rec = db.reconstruct(U, init, solvers.GradientMAP("lbfgs", max_steps=200))
    return U, rec.bands


def _dense_reference(U, bands, damping):
    """sqrt(diag((H + damping I)^-1)) from jax.hessian, float64 numpy inverse."""
    e = bands.energies
    n = e.size
    h = jax.hessian(lambda x: U(x.reshape(e.shape)))(e.ravel())
    h = np.asarray(h, np.float64) + damping * np.eye(n)
    return np.sqrt(np.diag(np.linalg.inv(h))).reshape(e.shape)


@pytest.mark.parametrize("k_shape,centres", [((4, 5), (-1.0,)), ((6,), (-1.4, -0.6))])
def test_exact_and_probe_match_dense_inverse(k_shape, centres):
    U, bands = _problem(k_shape, centres)
    ex = band_uncertainty(U, bands, method="exact")
    # on the peaks the data curvature is positive, so the Hessian is not modified there
    assert np.all(np.asarray(ex.curvature) > 0)
    ref = _dense_reference(U, bands, ex.damping)
    np.testing.assert_allclose(np.asarray(ex.sigma.energies), ref, rtol=2e-3)
    # probing with a period as large as the grid is exact (up to CG tolerance)
    full = band_uncertainty(U, bands, method="probe", period=max(k_shape))
    np.testing.assert_allclose(np.asarray(full.sigma.energies), ref, rtol=5e-3)
    # the local curvature is a lower bound of the Laplace sigma
    local = np.asarray(band_uncertainty(U, bands, method="local").sigma.energies)
    assert np.all(local <= ref * (1 + 1e-3))
    assert ex.sigma.k_shape == bands.k_shape and ex.sigma.labels == bands.labels
    assert not np.any(np.asarray(ex.low_confidence))


def test_probe_error_shrinks_with_period():
    """Probing errors come from same-coloured sites ``period`` apart; with strong smoothing (correlation
    length of a few sites) they shrink as the period grows, and vanish once it covers the grid."""
    U, bands = _problem((15,), (-1.0,))
    ex = band_uncertainty(U, bands, method="exact")
    ref = _dense_reference(U, bands, ex.damping)
    errs = [
        np.max(np.abs(np.asarray(band_uncertainty(U, bands, method="probe", period=p).sigma.energies) / ref - 1))
        for p in (2, 8, 15)
    ]
    assert errs[0] > errs[1] > errs[2]
    assert errs[1] < 0.05 and errs[2] < 5e-3
    local = np.asarray(band_uncertainty(U, bands, method="local").sigma.energies)
    assert np.all(local <= ref * (1 + 1e-3))
    # probing only overestimates here (all correlations positive): a conservative error bar
    s2 = np.asarray(band_uncertainty(U, bands, method="probe", period=2).sigma.energies)
    assert np.all(s2 >= ref * (1 - 1e-3))


def test_empty_data_is_finite_and_low_confidence():
    empty = (slice(0, 3),)  # the first three k points carry no counts
    U, bands = _problem((8,), (-1.0,), empty=empty, solve=True)
    assert np.all(np.isfinite(np.asarray(bands.energies)))
    unc = band_uncertainty(U, bands, method="probe", period=4)
    sigma = np.asarray(unc.sigma.energies)[0]
    lc = np.asarray(unc.low_confidence)[0]
    assert np.all(np.isfinite(sigma)) and np.all(sigma > 0)
    assert lc[:3].all() and not lc[4:].any()
    assert sigma[0] > 1.3 * sigma[-1]  # far from any data the band is less certain (smoothness only)
    np.testing.assert_array_equal(np.asarray(low_confidence(U, bands)), np.asarray(unc.low_confidence))


def test_constant_volume_everything_low_confidence():
    k = np.linspace(-1, 1, 5)
    bm = db.BandMap(np.ones((5, 41)), [k, E_AXIS])
    U = en.IntensityLikelihood(bm, interp="cubic") + en.Smoothness(0.1)
    bands = db.Bands(np.full((1, 5), -1.0), [k])
    unc = band_uncertainty(U, bands, method="exact")
    assert np.asarray(unc.low_confidence).all()
    # only smoothness and the window prior remain: the constant mode has variance 1/(n * damping)
    s = np.asarray(unc.sigma.energies)
    assert np.all(np.isfinite(s)) and np.all(s > 0.5)


def test_bad_arguments():
    U, bands = _problem((5,), (-1.0,))
    with pytest.raises(db.ValidationError, match="method"):
        band_uncertainty(U, bands, method="mcmc")
    with pytest.raises(db.ValidationError, match="bands"):
        band_uncertainty(U, jnp.zeros((1, 5)))
    with pytest.raises(db.ValidationError, match="damping"):
        band_uncertainty(U, bands, damping=-1.0)


@settings(max_examples=15, derandomize=True, deadline=None, database=None)
@given(seed=st.integers(0, 2**16), empty_from=st.integers(1, 5), method=st.sampled_from(["probe", "local"]))
def test_sigma_finite_and_bounded_by_the_window(seed, empty_from, method):
    """Any data (also empty or flat where the bands sit) give finite sigma in ``(0, W]``: the window prior
    ``lambda = 1/W^2`` bounds ``H`` below, so ``diag(H^-1) <= 1/lambda``."""
    rng = np.random.default_rng(seed)
    k = np.linspace(-1, 1, 5)
    vol = rng.uniform(0, 1, (5, 41)) ** 4
    vol[empty_from:] = 0.0
    vol[0, 0] = 1.0  # some signal (at k = 0, which is never emptied)
    bm = db.BandMap(vol, [k, E_AXIS])
    U = en.IntensityLikelihood(bm, interp="cubic") + en.Smoothness(0.1)
    bands = db.Bands(rng.uniform(-2, 0, (1, 5)), [k])
    unc = band_uncertainty(U, bands, method=method, period=5)
    s = np.asarray(unc.sigma.energies)
    w = E_AXIS[-1] - E_AXIS[0]
    assert np.all(np.isfinite(s)) and np.all(s > 0) and np.all(s <= w * (1 + 1e-4))
    assert np.asarray(unc.low_confidence)[0, empty_from:].all()


@pytest.mark.parametrize("method", ["local", "probe", "exact"])
def test_coinciding_bands_under_exclusion_stay_finite_and_flagged(method):
    """Two bands on the same peak: the exclusion term is at its maximum there (negative curvature, H
    indefinite). The uncertainty must stay finite (the window cap) and flag those points low-confidence,
    while a well-separated pair away from them keeps its ordinary Laplace sigma."""
    U, init = _problem((6, 5), [-1.0, -0.5], width=0.12)
    e = np.asarray(init.energies).copy()
    e[1, :3] = e[0, :3]  # band 1 on band 0's peak in the first three kx rows
    U = U + en.FeatureExclusion(0.1, 50.0)  # strong enough to outweigh the data curvature there
    bands = init.with_energies(e)
    unc = band_uncertainty(U, bands, method=method)
    sigma = np.asarray(unc.sigma.energies)
    low = np.asarray(unc.low_confidence)
    window = E_AXIS[-1] - E_AXIS[0]
    assert np.all(np.isfinite(sigma)) and np.all(sigma > 0)
    assert low[:, :3].all()  # both bands of the coinciding rows
    np.testing.assert_allclose(sigma[:, :3], window, rtol=1e-5)
    assert not low[:, 4:].any() and np.all(sigma[:, 4:] < 0.1 * window)
