"""The generative multiband likelihood: value vs numpy, gradients vs finite differences, overlapping bands."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import voigt_profile

import diffbands as db
from diffbands import synth
from diffbands._errors import ShapeError, ValidationError
from diffbands.energy import IntensityLikelihood, Smoothness, TheoryPrior
from diffbands.energy._generative import GenerativeLikelihood, fit_generative


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def tiny_problem(seed=0, nk=(5, 4), ne=30):
    rng = np.random.default_rng(seed)
    e = np.linspace(-2.0, 0.0, ne)
    bands = np.stack([-0.6 + 0.1 * rng.standard_normal(nk), -1.2 + 0.1 * rng.standard_normal(nk)])
    counts = rng.poisson(5.0, size=(*nk, ne)).astype(float)
    counts[0, 0, :5] = 0.0  # zeros exercise the n = 0 branch
    return counts, e, bands


def numpy_nll(term, counts, e, bands, window=None):
    """Hand-written Poisson NLL (half deviance) with scipy's Voigt profile and explicit loops."""
    amps = np.asarray(term.amplitudes(), np.float64)
    sig, gam = (np.asarray(w, np.float64) for w in term.widths())
    c0, c1 = (np.asarray(c, np.float64) for c in term.params.bg)
    u = 2 * (e - e[0]) / (e[-1] - e[0]) - 1
    mu = np.exp(c0[..., None] + c1[..., None] * u)
    step = e[1] - e[0]
    for b in range(bands.shape[0]):
        for idx in np.ndindex(bands.shape[1:]):
            prof = voigt_profile(e - bands[(b, *idx)], sig[b], gam[b])
            if window is not None:
                start = int(np.clip(np.round((bands[(b, *idx)] - e[0]) / step) - window // 2, 0, e.size - window))
                keep = np.zeros(e.size, bool)
                keep[start : start + window] = True
                prof = np.where(keep, prof, 0.0)
            mu[idx] += amps[(b, *idx)] * prof
    nlogn = np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1)), 0.0)
    return np.sum(mu - counts * np.log(mu)) - np.sum(counts - nlogn)


@pytest.mark.parametrize("window", [None, 9])
def test_value_matches_numpy(x64, window):
    counts, e, bands = tiny_problem()
    term = GenerativeLikelihood(counts, bands, energy=e, sigma=[0.08, 0.12], gamma=[0.03, 0.05], amp_shape=(3, 2),
                                window=window)
    assert term.window == window
    # perturb the nuisance parameters away from their data-driven start (every leaf enters the value)
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda p: p + 0.1 * jnp.asarray(rng.standard_normal(p.shape)), term.params)
    term = eqx_replace(term, params)
    got = float(term(jnp.asarray(bands)))
    want = numpy_nll(term, counts, e, bands, window)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # the constant makes every voxel >= 0
    assert got > 0


def eqx_replace(term, params):
    import equinox as eqx

    return eqx.tree_at(lambda t: t.params, term, params)


def test_gradients_match_finite_differences(x64):
    counts, e, bands = tiny_problem(seed=2, nk=(3, 3), ne=24)
    term = GenerativeLikelihood(counts, bands, energy=e, amp_shape=2, window=11)

    @jax.jit
    def f(x):
        b, p = x
        return eqx_replace(term, p)(b)

    x = (jnp.asarray(bands), term.params)
    grad = jax.grad(f)(x)
    rng = np.random.default_rng(3)
    leaves, treedef = jax.tree.flatten(x)
    g_leaves = jax.tree.leaves(grad)
    for i, (leaf, g) in enumerate(zip(leaves, g_leaves)):
        for _ in range(2):
            d = jnp.asarray(rng.standard_normal(leaf.shape))
            eps = 1e-6
            plus = [lf + eps * d if j == i else lf for j, lf in enumerate(leaves)]
            minus = [lf - eps * d if j == i else lf for j, lf in enumerate(leaves)]
            fd = (f(jax.tree.unflatten(treedef, plus)) - f(jax.tree.unflatten(treedef, minus))) / (2 * eps)
            np.testing.assert_allclose(float(jnp.vdot(g, d)), float(fd), rtol=1e-5, atol=1e-6)


def test_windowed_close_to_full_width():
    counts, e, bands = tiny_problem(seed=4, ne=60)
    full = GenerativeLikelihood(counts, bands, energy=e, sigma=0.06, gamma=0.01, window=None)
    local = GenerativeLikelihood(counts, bands, energy=e, sigma=0.06, gamma=0.01, window="auto")
    assert local.window is not None and local.window < e.size
    mu_full = full.expected(jnp.asarray(bands, jnp.float32))
    mu_local = local.expected(jnp.asarray(bands, jnp.float32))
    # only the truncated Lorentzian tails differ: far below the peaks
    assert float(jnp.max(jnp.abs(mu_full - mu_local))) < 0.02 * float(jnp.max(mu_full))


def test_no_nan_for_bands_outside_the_window():
    counts, e, bands = tiny_problem(seed=5)
    term = GenerativeLikelihood(counts, bands, energy=e, window=7)
    outside = np.array(bands)
    outside[0] = 3.0  # far above the axis
    outside[1, 0] = -9.0  # far below
    value, grad = jax.value_and_grad(term)(jnp.asarray(outside, jnp.float32))
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(grad)))


def test_errors_name_the_field():
    counts, e, bands = tiny_problem()
    with pytest.raises(ShapeError, match="bands0"):
        GenerativeLikelihood(counts, bands[:, :2], energy=e)
    with pytest.raises(ValidationError, match="counts"):
        GenerativeLikelihood(-counts, bands, energy=e)
    with pytest.raises(ValidationError, match="window"):
        GenerativeLikelihood(counts, bands, energy=e, window=1)
    with pytest.raises(ValidationError, match="optimizer"):
        fit_generative(GenerativeLikelihood(counts, bands, energy=e), bands, optimizer="sgd")


def test_overlapping_bands_are_separated():
    """Two Gaussian bands 0.12 eV apart with std 0.07 eV (closer than 2 std: a single intensity maximum per
    momentum): -log I at the band position pulls the weaker band onto its brighter neighbour; the generative
    fit from the same theory recovers both."""
    nk, ne = 16, 64
    k = np.linspace(-1.0, 1.0, nk)
    e = np.linspace(-1.6, -0.4, ne)
    step = e[1] - e[0]
    top = -0.9 + 0.1 * k
    truth = db.Bands(np.stack([top, top - 0.12]), [k], dims=("k",))
    spec = synth.Spectrometer(synth.Gaussian(0.07))
    bm = synth.simulate(truth, e, spec, amplitudes=np.array([1.0, 0.4]))  # noise-free expected intensity
    bm = db.BandMap(1000.0 * bm.intensity / float(bm.intensity.max()), [k, e], dims=("k", "E"))
    truth_e = np.asarray(truth.energies)
    theory = truth.with_energies(truth_e + 0.02)  # a theory 20 meV off
    prior = Smoothness(0.05) + TheoryPrior(theory, 0.3)

    rec = db.reconstruct(IntensityLikelihood(bm, interp="cubic") + prior, theory)
    bias_logi = np.abs(np.mean(np.asarray(rec.bands.energies) - truth_e, axis=1))
    assert bias_logi[1] > 2 * step  # the weak band is pulled towards the bright one

    term = GenerativeLikelihood(bm, theory.energies, sigma=0.1, gamma=0.02, amp_shape=2, shared_widths=True)
    fit = fit_generative(term, theory.energies, prior, steps=600, learning_rate=3e-3, nuisance_rate=3e-2)
    err = np.asarray(fit.bands) - truth_e
    assert np.max(np.abs(np.mean(err, axis=1))) < 0.25 * step
    assert np.max(np.sqrt(np.mean(err**2, axis=1))) < 0.5 * step
    assert float(fit.energy) < float(fit.trace[0])
    sigma, _ = fit.term.widths()
    assert sigma.shape == (2,) and abs(float(sigma[0]) - 0.07) < 0.01
