"""Synthetic band mapping: lineshapes, the forward model, Poisson sampling, band families and presets."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import diffbands as db
from diffbands import synth
from diffbands.synth import _generate as gen


def cut_bands(e0=-0.7, nk=24, slope=0.4):
    k = np.linspace(-1.0, 1.0, nk)
    return db.Bands((e0 + slope * k)[None], [k], dims=("k",))


def surface_bands(nk=(8, 8)):
    kx, ky = np.linspace(-1, 1, nk[0]), np.linspace(-0.8, 0.8, nk[1])
    e = -1.0 + 0.3 * np.cos(2 * kx)[:, None] * np.cos(2 * ky)[None, :]
    return db.Bands(e[None], [kx, ky])


E_CUT = np.linspace(-2.0, 0.5, 101)  # 25 meV steps
# Tests that draw Poisson counts share one volume shape, (8, 8, 101), so the sampler compiles once.
NOISE_SHAPE = (8, 8, 101)


def poisson_draws(lam, key, shape=NOISE_SHAPE):
    """Poisson(lam) draws through the sampler ``simulate`` uses (a flat map scaled to ``counts = lam``)."""
    x, scale = gen._sample(jax.random.key(key), jnp.ones(shape), jnp.asarray(lam, jnp.float32))
    assert float(scale) == pytest.approx(lam)
    return np.asarray(x).ravel()


# -- lineshapes ------------------------------------------------------------------------------------------
def test_faddeeva_matches_scipy_float32():
    x = np.linspace(-30, 30, 3001)
    for y in (0.0, 0.05, 0.354, 2.0, -0.3):
        z = x + 1j * y
        w = np.asarray(synth.faddeeva(jnp.asarray(z.astype(np.complex64))))
        ref = special.wofz(z)
        assert np.max(np.abs(w - ref) / np.abs(ref)) < 2e-6, y


def test_faddeeva_and_voigt_float64_accuracy():
    x = np.linspace(-40, 40, 8001)
    with jax.enable_x64(True):
        for y in (0.01, 0.354, 3.0):
            z = x + 1j * y
            w = np.asarray(synth.faddeeva(jnp.asarray(z)))
            assert w.dtype == np.complex128
            ref = special.wofz(z)
            # the Voigt needs Re w: relative accuracy far better than the 1e-6 asked for
            assert np.max(np.abs(w.real - ref.real) / np.abs(ref.real)) < 1e-9, y
        e = np.linspace(-4, 4, 4001)
        for s, g in ((0.1, 0.05), (0.05, 0.3), (0.2, 0.0)):
            v = np.asarray(synth.voigt(jnp.asarray(e), s, g))
            ref = special.voigt_profile(e, s, g)
            assert np.max(np.abs(v - ref) / ref.max()) < 1e-11


def test_voigt_float32_matches_scipy_voigt_profile():
    e = np.linspace(-3, 3, 2001)
    for s, g in ((0.1, 0.05), (0.05, 0.2), (0.2, 0.0)):
        v = np.asarray(synth.voigt(jnp.asarray(e, jnp.float32), s, g))
        assert v.dtype == np.float32
        ref = special.voigt_profile(e, s, g)
        assert np.max(np.abs(v - ref)) < 2e-6 * ref.max()


def test_lineshapes_are_area_normalised():
    # trapezoid on a fine grid, plus the analytic Lorentzian tail mass outside [-X, X]: 1 - (2/pi) atan(X/gamma)
    X, n = 40.0, 400_001
    dx = 2 * X / (n - 1)
    x = jnp.asarray(np.linspace(-X, X, n), jnp.float32)  # float32 linspace would have uneven steps

    def area(f):
        y = np.asarray(f, dtype=np.float64)
        return dx * (y.sum() - 0.5 * (y[0] + y[-1]))

    assert abs(area(synth.gaussian(x, 0.1)) - 1) < 1e-4
    for g in (0.05, 0.2):
        tail = 1 - 2 / math.pi * math.atan(X / g)
        assert abs(area(synth.lorentzian(x, g)) + tail - 1) < 1e-4
        assert abs(area(synth.voigt(x, 0.1, g)) + tail - 1) < 1e-4


def test_voigt_limits_and_modules():
    x = jnp.linspace(-1, 1, 201)
    np.testing.assert_allclose(synth.voigt(x, 0.1, 0.0), synth.gaussian(x, 0.1), rtol=2e-5, atol=1e-6)
    # sigma -> 0: the Lorentzian
    np.testing.assert_allclose(synth.voigt(x, 1e-3, 0.1), synth.lorentzian(x, 0.1), rtol=2e-3)
    np.testing.assert_allclose(synth.Voigt(0.1, 0.05)(x), synth.voigt(x, 0.1, 0.05))
    np.testing.assert_allclose(synth.Gaussian(0.1)(x), synth.gaussian(x, 0.1))
    np.testing.assert_allclose(synth.Lorentzian(0.05)(x), synth.lorentzian(x, 0.05))
    # energy-dependent width: gamma(eps) = gamma + gamma2 * eps^2
    eps = jnp.asarray(-2.0)
    np.testing.assert_allclose(synth.Lorentzian(0.05, gamma2=0.1)(x, eps), synth.lorentzian(x, 0.45), rtol=1e-6)
    np.testing.assert_allclose(synth.Voigt(0.1, 0.05, gamma2=0.1)(x, eps), synth.voigt(x, 0.1, 0.45), rtol=1e-6)
    np.testing.assert_allclose(synth.Gaussian(0.1, sigma2=0.02)(x, eps), synth.gaussian(x, 0.18), rtol=1e-6)
    # constant widths ignore eps
    np.testing.assert_allclose(synth.Voigt(0.1, 0.05)(x, eps), synth.voigt(x, 0.1, 0.05))


def test_voigt_gradient_matches_scipy_finite_difference():
    xs = jnp.asarray([-0.3, -0.05, 0.0, 0.12, 0.5])
    with jax.enable_x64(True):
        xs = jnp.asarray(np.asarray(xs), jnp.float64)
        g = jax.vmap(jax.grad(lambda x: synth.voigt(x, 0.1, 0.05)))(xs)
        h = 1e-6
        xn = np.asarray(xs)
        fd = (special.voigt_profile(xn + h, 0.1, 0.05) - special.voigt_profile(xn - h, 0.1, 0.05)) / (2 * h)
        np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-6, atol=1e-6)
        # and with respect to the widths (finite everywhere)
        dg = jax.grad(lambda s, w: synth.voigt(0.07, s, w), argnums=(0, 1))(0.1, 0.05)
        assert all(np.isfinite(float(d)) for d in dg)


def test_lineshape_validation_names_the_field():
    with pytest.raises(db.ValidationError, match="sigma") as err:
        synth.Voigt(sigma=-0.1)
    assert err.value.field == "sigma"
    with pytest.raises(db.ValidationError, match="gamma"):
        synth.Lorentzian(gamma=0.0)
    with pytest.raises(db.ValidationError, match="gamma2"):
        synth.Voigt(gamma2=-1.0)
    with pytest.raises(db.ValidationError, match="per-band"):
        synth.Voigt(0.1, [0.1, 0.2, 0.3]).for_bands(2)


# -- the forward model -----------------------------------------------------------------------------------
def test_peak_sits_at_band_energy_cut_and_volume():
    for bands in (cut_bands(), surface_bands()):
        bm = synth.simulate(bands, E_CUT)
        assert bm.dims == (*bands.dims, "E")
        assert bm.shape == (*bands.k_shape, E_CUT.size)
        assert bm.metadata["synth"]["counts"] is None
        i = np.asarray(bm.intensity)
        e_peak = E_CUT[np.argmax(i, axis=-1)]
        step = E_CUT[1] - E_CUT[0]
        # a symmetric line: the argmax is the grid point nearest the band
        assert np.max(np.abs(e_peak - np.asarray(bands.energies[0]))) <= 0.5 * step + 1e-6


def test_decreasing_energy_axis_is_stored_increasing():
    bm = synth.simulate(cut_bands(), E_CUT[::-1])
    np.testing.assert_allclose(np.asarray(bm.energy), E_CUT, rtol=1e-6)
    ref = synth.simulate(cut_bands(), E_CUT)
    np.testing.assert_array_equal(np.asarray(bm.intensity), np.asarray(ref.intensity))


def test_band_sum_never_builds_a_bands_by_volume_array():
    nb, nx, ny, ne = 5, 6, 7, 30
    rng = np.random.default_rng(0)
    energies = jnp.asarray(rng.uniform(-1.5, -0.5, (nb, nx, ny)), jnp.float32)
    amps = jnp.ones_like(energies)
    coords = (jnp.linspace(-1, 1, nx), jnp.linspace(-1, 1, ny))
    e = jnp.linspace(-2, 0, ne)
    sp = synth.Spectrometer(synth.Voigt(0.1, [0.05] * nb, gamma2=0.01), k_resolution=0.1, temperature=30.0,
                            shirley=0.1, background=[0.1, 0.1])
    jaxpr = jax.make_jaxpr(lambda s, en, a, c, ee: s(en, a, c, ee))(sp, energies, amps, coords, e)

    def all_vars(jp):
        for eqn in jp.eqns:
            yield from eqn.outvars
            for p in eqn.params.values():
                for sub in (p if isinstance(p, (tuple, list)) else [p]):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        yield from all_vars(inner)

    sizes = [math.prod(v.aval.shape) for v in all_vars(jaxpr.jaxpr) if hasattr(v.aval, "shape")]
    assert max(sizes) == nx * ny * ne  # the volume itself appears ...
    assert all(s < nb * nx * ny * ne for s in sizes)  # ... but nothing bands x volume


def test_fermi_cutoff_suppresses_intensity_above_fermi_level():
    bands = cut_bands(e0=0.0, slope=0.8)  # crosses E_F = 0 at k = 0
    T = 20.0
    bm = synth.simulate(bands, E_CUT, synth.Spectrometer(temperature=T))
    free = synth.simulate(bands, E_CUT)
    i, i0 = np.asarray(bm.intensity), np.asarray(free.intensity)
    kt = gen.K_B * T
    above = E_CUT > 10 * kt
    below = E_CUT < -10 * kt
    assert np.max(i[:, above]) < 1e-4 * np.max(i)
    np.testing.assert_allclose(i[:, below], i0[:, below], rtol=1e-3)
    # T = 0: a step
    step = np.asarray(synth.simulate(bands, E_CUT, synth.Spectrometer(temperature=0.0)).intensity)
    assert np.all(step[:, E_CUT > 0] == 0)
    np.testing.assert_allclose(synth.fermi_dirac(jnp.asarray([-1.0, 0.0, 1.0]), 0.0, 300.0),
                               1 / (np.exp(np.array([-1.0, 0.0, 1.0]) / (gen.K_B * 300)) + 1), rtol=1e-5)


def test_momentum_blur_preserves_total_and_widens():
    bands = surface_bands((16, 16))
    sharp = np.asarray(synth.simulate(bands, E_CUT).intensity)
    blurred = np.asarray(synth.simulate(bands, E_CUT, synth.Spectrometer(k_resolution=0.15)).intensity)
    assert abs(blurred.sum() / sharp.sum() - 1) < 0.02
    assert not np.allclose(blurred, sharp, rtol=1e-2)
    # a constant map stays constant (row-normalised kernel: no dark edges)
    flat = db.Bands(np.full((1, 16, 16), -1.0), bands.coords)
    out = np.asarray(synth.simulate(flat, E_CUT, synth.Spectrometer(k_resolution=0.3)).intensity)
    np.testing.assert_allclose(out, np.broadcast_to(out[:1, :1], out.shape), rtol=1e-5)


def test_shirley_and_smooth_background():
    bands = db.Bands(np.full((1, 4), -1.0), [np.linspace(0, 1, 4)], dims=("k",))
    e = np.linspace(-2.5, 0.0, 501)
    base = np.asarray(synth.simulate(bands, e, synth.Spectrometer(synth.Gaussian(0.05))).intensity)
    shir = np.asarray(synth.simulate(bands, e, synth.Spectrometer(synth.Gaussian(0.05), shirley=0.2)).intensity)
    step = shir - base
    # far below the line the Shirley step is shirley * (area of the line = 1); above it, nothing
    np.testing.assert_allclose(step[:, e < -1.5], 0.2, rtol=1e-3)
    assert np.max(np.abs(step[:, e > -0.5])) < 1e-6
    bg = np.asarray(synth.simulate(bands, e, synth.Spectrometer(synth.Gaussian(0.05), background=[0.1, 0.4])).intensity)
    u = (e[-1] - e) / (e[-1] - e[0])
    expected = np.broadcast_to(base.max() * (0.1 + 0.4 * u), base.shape)
    np.testing.assert_allclose(bg - base, expected, rtol=1e-5, atol=1e-6)


def test_per_band_amplitudes_widths_and_mask():
    k = np.linspace(-1, 1, 8)
    bands = db.Bands(np.stack([np.full(8, -1.5), np.full(8, -0.5)]), [k], dims=("k",))
    sp = synth.Spectrometer(synth.Lorentzian([0.02, 0.08]))
    bm = synth.simulate(bands, E_CUT, sp, amplitudes=[1.0, 0.25])
    i = np.asarray(bm.intensity)
    at = lambda e0: i[:, np.argmin(np.abs(E_CUT - e0))]
    # peak heights 1 / (pi gamma) * amplitude (plus the other band's tail)
    np.testing.assert_allclose(at(-1.5), 1 / (math.pi * 0.02), rtol=0.02)
    np.testing.assert_allclose(at(-0.5), 0.25 / (math.pi * 0.08), rtol=0.05)
    assert bm.metadata["synth"]["amplitudes"]["type"] == "array"
    mask = np.ones((2, 8), bool)
    mask[1] = False
    masked = db.Bands(np.where(mask, bands.energies, np.nan), [k], dims=("k",), mask=mask)
    only0 = np.asarray(synth.simulate(masked, E_CUT, sp).intensity)
    ref = np.asarray(synth.simulate(bands.select([0]), E_CUT, synth.Spectrometer(synth.Lorentzian(0.02))).intensity)
    np.testing.assert_allclose(only0, ref, rtol=1e-6)
    with pytest.raises(db.ShapeError, match="amplitudes"):
        synth.simulate(bands, E_CUT, amplitudes=np.ones((3, 8)))
    with pytest.raises(db.ValidationError, match="amplitudes"):
        synth.simulate(bands, E_CUT, amplitudes=[1.0, -1.0])


def test_matrix_elements_positive_smooth_seeded_and_grid_independent():
    me = synth.MatrixElements(length=0.4, contrast=0.5)
    k = (jnp.linspace(-1.5, 1.5, 61), jnp.linspace(-1.5, 1.5, 41))
    f = np.asarray(me(jax.random.key(3), k, 4))
    assert f.shape == (4, 61, 41) and np.all(f > 0)
    assert 0.6 < f.mean() < 1.6  # lognormal with mean 1
    # smooth: neighbouring pixels (0.05 1/A apart, length 0.4) are strongly correlated
    assert np.corrcoef(f[:, 1:].ravel(), f[:, :-1].ravel())[0, 1] > 0.95
    np.testing.assert_array_equal(f, np.asarray(me(jax.random.key(3), k, 4)))
    assert not np.allclose(f, np.asarray(me(jax.random.key(4), k, 4)))
    sub = np.asarray(me(jax.random.key(3), (k[0][::3], k[1][::2]), 4))
    np.testing.assert_allclose(sub, f[:, ::3, ::2], rtol=1e-4)
    cut = np.asarray(me(jax.random.key(3), (k[0],), 2))
    assert cut.shape == (2, 61) and np.all(cut > 0)
    w = np.asarray(synth.MatrixElements(weights=[1.0, 0.0])(jax.random.key(0), k, 2))
    assert np.all(w[1] == 0) and np.all(w[0] > 0)


def test_deterministic_for_a_seed_and_different_for_another():
    bands = surface_bands()
    kw = dict(amplitudes="random", counts=50.0)
    a = synth.simulate(bands, E_CUT, seed=7, **kw)
    b = synth.simulate(bands, E_CUT, seed=7, **kw)
    c = synth.simulate(bands, E_CUT, seed=8, **kw)
    np.testing.assert_array_equal(np.asarray(a.intensity), np.asarray(b.intensity))
    assert not np.array_equal(np.asarray(a.intensity), np.asarray(c.intensity))
    assert a.metadata == b.metadata and a.metadata["synth"]["seed"] == 7
    json.loads(a.metadata.to_json())  # JSON-serialisable
    with pytest.raises(db.ValidationError, match="seed"):
        synth.simulate(bands, E_CUT, seed=1.5)
    with pytest.raises(db.ValidationError, match="seed"):
        synth.simulate(bands, E_CUT, seed=2**32)
    with pytest.raises(db.ValidationError, match="counts"):
        synth.simulate(bands, E_CUT, counts=0)
    with pytest.raises(db.ValidationError, match="counts"):
        synth.simulate(bands, E_CUT, counts=1e9)


def test_poisson_count_level():
    bands = surface_bands()
    sp = synth.Spectrometer(temperature=30.0, background=[0.05])
    expected = np.asarray(synth.simulate(bands, E_CUT, sp, amplitudes="random", seed=7).intensity)
    noisy = synth.simulate(bands, E_CUT, sp, amplitudes="random", seed=7, counts=400.0)
    x = np.asarray(noisy.intensity)
    meta = noisy.metadata["synth"]
    assert noisy.intensity_unit == "counts"
    assert np.all(x == np.round(x)) and x.min() >= 0
    lam = expected * meta["count_scale"]
    assert abs(lam.max() - 400.0) < 400.0 * 1e-5  # the brightest voxel expects `counts`
    # the brightest voxels' counts lie within a few sigma of 400
    top = lam > 0.9 * lam.max()
    assert abs(x[top].mean() - lam[top].mean()) < 5 * math.sqrt(lam[top].mean() / top.sum())
    # unbiased overall, and Poisson-dispersed: mean of (x - lam)^2 / lam ~ 1 (on voxels with lam >= 1)
    assert abs(x.sum() - lam.sum()) < 5 * math.sqrt(lam.sum())
    sel = lam >= 1
    pearson = np.mean((x[sel] - lam[sel]) ** 2 / lam[sel])
    assert abs(pearson - 1) < 6 * math.sqrt(3 / sel.sum())
    assert np.all(x[lam == 0] == 0)


def test_poisson_inversion_is_exact_inverse_cdf():
    u = jax.random.uniform(jax.random.key(0), (20000,))
    for lam in (0.0, 0.4, 3.0, 9.9):
        x = np.asarray(gen._poisson_inversion(jnp.full(u.shape, lam), u))
        ref = stats.poisson.ppf(np.asarray(u, np.float64), lam) if lam > 0 else np.zeros(u.shape)
        assert np.mean(x != ref) < 1e-3  # float32 rounding of the CDF may move a rare boundary case


@pytest.mark.parametrize(
    "lam, shape", [(10.0, NOISE_SHAPE), (37.0, NOISE_SHAPE), (1000.0, NOISE_SHAPE), (25.0, (200, 30))]
)
def test_poisson_sampler_distribution(lam, shape):
    # (200, 30): rows too short for the retry buffers, every retry goes through the safety-net loop
    x = np.concatenate([poisson_draws(lam, key, shape) for key in range(6)])
    assert np.all(x == np.round(x))
    x = x.astype(int)
    n = x.size
    assert abs(x.mean() - lam) < 5 * math.sqrt(lam / n)
    assert abs(x.var() / lam - 1) < 5 * math.sqrt(2 / n)
    ks = np.arange(x.max() + 1)
    obs = np.bincount(x, minlength=ks.size)
    exp = stats.poisson.pmf(ks, lam) * n
    keep = exp > 10
    o = np.append(obs[keep], obs[~keep].sum())
    e = np.append(exp[keep], n - exp[keep].sum())
    assert stats.chi2.sf(np.sum((o - e) ** 2 / e), keep.sum()) > 1e-3


def test_poisson_log_pmf_is_accurate_for_large_rates():
    for lam in (10.0, 1000.0, 1e5):
        k = np.unique(np.clip(np.round(lam + np.linspace(-5, 5, 21) * math.sqrt(lam)), 0, None))
        got = np.asarray(gen._poisson_log_pmf(jnp.asarray(k, jnp.float32), jnp.float32(lam), jnp.log(jnp.float32(lam))))
        np.testing.assert_allclose(got, stats.poisson.logpmf(k, lam), atol=2e-4)


def test_float64_when_x64_enabled():
    with jax.enable_x64(True):
        k = np.linspace(-1, 1, 4)
        bands = db.Bands((-1.0 + 0.2 * k)[None], [k], dims=("k",))
        e = np.linspace(-2.0, 0.5, 30)
        bm = synth.simulate(bands, e, synth.Spectrometer(temperature=50.0), amplitudes="random")
        assert bm.intensity.dtype == jnp.float64
        ref = special.voigt_profile(e[None, :] - np.asarray(bands.energies[0])[:, None], 0.1, 0.05)
        fd = 1 / (np.exp(e / (gen.K_B * 50.0)) + 1)
        amps = np.asarray(synth.MatrixElements()(jax.random.split(jax.random.key(0))[0], bands.coords, 1))[0]
        np.testing.assert_allclose(np.asarray(bm.intensity), amps[:, None] * ref * fd, rtol=1e-10, atol=1e-300)
        noisy = synth.simulate(bands, e, synth.Spectrometer(temperature=50.0), counts=30.0)
        assert noisy.intensity.dtype == jnp.float64
        assert np.all(np.asarray(noisy.intensity) == np.round(np.asarray(noisy.intensity)))


# -- families and presets --------------------------------------------------------------------------------
def test_families_shapes_and_features():
    s = synth.sinusoidal_band(50, amplitude=0.5, offset=-1.0)
    assert s.dims == ("k",) and s.energies.shape == (1, 50)
    np.testing.assert_allclose([float(s.energies.max()), float(s.energies.min())], [-0.5, -1.5], atol=2e-3)
    assert synth.sinusoidal_band(20, surface=True).energies.shape == (1, 20, 20)

    c = synth.crossing_bands(101, crossing=(0.0, -1.0))
    d = np.asarray(c.energies[0] - c.energies[1])
    assert d[0] * d[-1] < 0  # they cross
    np.testing.assert_allclose(np.asarray(c.energies[:, 50]), [-1.0, -1.0], atol=1e-6)
    assert c.metadata["gamma"][0] != c.metadata["gamma"][1] and c.metadata["weights"][0] != c.metadata["weights"][1]

    g = synth.griewank_surface()
    assert g.energies.shape == (1, 300, 300)
    g = synth.griewank_surface(41, offset=-0.5, depth=0.5)
    assert float(g.energies[0, 20, 20]) == pytest.approx(-0.5, abs=1e-6)  # g(0, 0) = 0: the global maximum
    assert float(g.energies.max()) == pytest.approx(-0.5, abs=1e-6)

    gr = synth.graphene_bands(t=2.7, a=2.46)
    assert gr.energies.shape == (2, 200, 200) and gr.labels == ("pi*", "pi")
    f = synth.graphene_bands(201, k_range=(-2.0, 2.0))
    k = np.asarray(f.coords[0])
    i0 = np.argmin(np.abs(k))
    np.testing.assert_allclose(np.asarray(f.energies[:, i0, i0]), [3 * 2.7, -3 * 2.7], rtol=1e-5)  # Gamma
    # the gap closes at the Dirac points K = (+-4 pi / (3 a), 0)
    gap = np.asarray(f.energies[0] - f.energies[1])
    ix, iy = np.unravel_index(np.argmin(gap), gap.shape)
    assert gap[ix, iy] < 0.1
    assert abs(abs(k[ix]) - 4 * math.pi / (3 * 2.46)) < 0.02 and abs(k[iy]) < 0.02


def test_presets_tiny_versions():
    for name, kw in [
        ("sinusoid", dict(nk=20, ne=40)),
        ("sinusoid", dict(nk=8, ne=30, surface=True)),
        ("crossing", dict(nk=20, ne=40)),
        ("griewank", dict(nk=8, ne=30)),
        ("graphene", dict(nk=8, ne=30)),
    ]:
        bm, truth = synth.make_preset(name, seed=1, **kw)
        assert isinstance(bm, db.BandMap) and isinstance(truth, db.Bands)
        assert truth.matches(bm)
        assert bm.shape[-1] == kw["ne"] and bm.shape[0] == kw["nk"]
        assert bm.metadata["preset"] == name and bm.metadata["synth"]["seed"] == 1
    bm, _ = synth.make_preset("crossing", nk=20, ne=40)
    assert bm.metadata["synth"]["lineshape"]["gamma"] == [0.03, 0.12]


def test_make_preset_errors():
    with pytest.raises(db.ValidationError, match="valid presets: crossing, graphene, griewank, sinusoid, wse2"):
        synth.make_preset("nope")
    with pytest.raises(db.ValidationError, match="bogus"):
        synth.make_preset("sinusoid", bogus=1)
    with pytest.raises(db.ValidationError, match="lineshape"):
        synth.make_preset("sinusoid", nk=8, ne=10, lineshape="cauchy")


def test_data_free_presets_do_not_touch_the_data_folder(monkeypatch, tmp_path):
    def boom(*a, **k):
        raise AssertionError("data folder accessed")

    monkeypatch.setattr("diffbands.synth._families.data_path", boom)
    monkeypatch.setenv("DIFFBANDS_DATA", str(tmp_path / "missing"))
    synth.make_preset("sinusoid", nk=8, ne=10, data_root=str(tmp_path))
    synth.make_preset("graphene", nk=4, ne=10)


@pytest.mark.needs_data
def test_wse2_bands_from_data_folder():
    b = synth.wse2_bands()
    assert b.energies.shape == (14, 256, 256)
    assert float(b.energies[0].max()) == pytest.approx(-0.3, abs=1e-6)
    assert np.all(np.diff(np.asarray(b.energies).max(axis=(1, 2))) <= 1e-6)  # band 0 on top
    sub = synth.wse2_bands(n_bands=3, vbm=-0.5, k_step=16)
    assert sub.energies.shape == (3, 16, 16)
    np.testing.assert_allclose(np.asarray(sub.energies), np.asarray(b.energies[:3, ::16, ::16]) - 0.2, atol=1e-5)


@pytest.mark.needs_data
def test_wse2_preset_small():
    bm, truth = synth.make_preset("wse2", seed=2, k_step=32, ne=NOISE_SHAPE[-1], counts=100.0)
    assert bm.shape == NOISE_SHAPE and truth.n_bands == 14 and truth.matches(bm)
    np.testing.assert_allclose([float(bm.energy[0]), float(bm.energy[-1])], [-8.25, 0.0], atol=1e-6)
    meta = bm.metadata["synth"]
    assert meta["lineshape"] == {"type": "Voigt", "sigma": 0.1, "gamma": 0.05, "gamma2": 0.0}
    assert meta["amplitudes"]["type"] == "MatrixElements" and meta["counts"] == 100.0


def test_wse2_missing_data_raises(tmp_path):
    with pytest.raises(db.DataNotFoundError):
        synth.wse2_bands(data_root=tmp_path)
    with pytest.raises(db.DataNotFoundError):
        synth.make_preset("wse2", data_root=str(tmp_path))
