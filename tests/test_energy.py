"""Energy terms: values and gradients against hand-written numpy and central finite differences."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import CubicSpline

import diffbands as db
from diffbands.energy import (
    AbstractPerturbation,
    AbstractSiteTerm,
    AbstractTerm,
    BandOrdering,
    Curvature,
    FeatureExclusion,
    IntensityLikelihood,
    RigidShift,
    Smoothness,
    Sum,
    TheoryPrior,
    Weighted,
    cubic_slopes,
    flatten_terms,
    interp_cubic,
    interp_linear,
)

K_GRID = (5, 7)  # odd, non-square
K_CUT = (9,)


@pytest.fixture
def x64():
    """Double precision for value / finite-difference checks, restored afterwards."""
    with jax.enable_x64(True):
        yield


def rng(seed=0):
    return np.random.default_rng(seed)


def check_term(term, bands, want, rtol=1e-10, eps=1e-6):
    """``term(bands) == want`` (hand-written numpy) and ``grad == central finite differences`` (float64).

    Value, gradient and all 2 * size probes are computed in one jitted call (fast on CPU)."""
    steps = eps * np.eye(bands.size).reshape(bands.size, *bands.shape)
    probes = jnp.asarray(np.concatenate([bands + steps, bands - steps]))

    @jax.jit
    def run(e, probes):
        value, grad = jax.value_and_grad(lambda x: term(x))(e)
        return value, grad, jax.vmap(lambda x: term(x))(probes)

    value, grad, at = (np.asarray(a) for a in run(jnp.asarray(bands), probes))
    np.testing.assert_allclose(value, want, rtol=rtol)
    fd = ((at[: bands.size] - at[bands.size :]) / (2 * eps)).reshape(bands.shape)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


value_and_grad = eqx.filter_jit(lambda term, e: jax.value_and_grad(term)(e))


def make_bandmap(k_shape, n_e=12, seed=0, uniform=True, zeros=False):
    r = rng(seed)
    axis = np.linspace(-2.0, 0.5, n_e) if uniform else np.sort(r.uniform(-2.0, 0.5, n_e))
    intensity = r.random((*k_shape, n_e)) + 0.05
    if zeros:
        intensity[..., ::3] = 0.0  # empty pixels must not give -inf
    coords = [np.arange(float(n)) for n in k_shape] + [axis]
    return db.BandMap(intensity, coords)


def off_grid_energies(axis, shape, seed=1, margin=1e-3):
    """Random energies inside the axis, at least ``margin`` away from every grid point (linear interp kinks)."""
    e = rng(seed).uniform(axis[0], axis[-1], shape)
    d = e[..., None] - axis
    near = np.abs(d).min(-1) < margin
    inward = np.where(e > (axis[0] + axis[-1]) / 2, -2 * margin, 2 * margin)
    return np.where(near, e + inward, e)


# -- interpolation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("uniform", [True, False])
def test_interp_linear_matches_numpy(x64, uniform):
    r = rng(2)
    axis = np.linspace(-1, 1, 9) if uniform else np.sort(r.uniform(-1, 1, 9))
    table = r.normal(size=(4, 6, 9))
    x = r.uniform(-1.5, 1.5, (4, 6))  # some outside the axis: clamped to the edge value
    got = interp_linear(jnp.asarray(table), jnp.asarray(axis), jnp.asarray(x), uniform=uniform)
    want = np.array([[np.interp(x[i, j], axis, table[i, j]) for j in range(6)] for i in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("uniform", [True, False])
def test_interp_cubic_is_the_natural_spline(x64, uniform):
    r = rng(3)
    axis = np.linspace(-1, 1, 10) if uniform else np.sort(r.uniform(-1, 1, 10))
    table = r.normal(size=(3, 10))
    x = r.uniform(axis[0], axis[-1], (3,))
    slopes = cubic_slopes(jnp.asarray(table), jnp.asarray(axis))
    got = interp_cubic(jnp.asarray(table), slopes, jnp.asarray(axis), jnp.asarray(x), uniform=uniform)
    for i in range(3):
        spline = CubicSpline(axis, table[i], bc_type="natural")
        np.testing.assert_allclose(slopes[i], spline(axis, 1), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got[i], spline(x[i]), rtol=1e-10, atol=1e-12)
    # clamped outside the axis
    out = interp_cubic(jnp.asarray(table), slopes, jnp.asarray(axis), jnp.asarray([-5.0, 5.0, 0.0]), uniform=uniform)
    np.testing.assert_allclose(out[:2], [table[0, 0], table[1, -1]], rtol=1e-12)


def test_interp_cubic_is_c1_at_knots(x64):
    axis = jnp.linspace(0.0, 1.0, 6)
    table = jnp.asarray(rng(4).normal(size=(1, 6)))
    slopes = cubic_slopes(table, axis)
    deriv = jax.grad(lambda e: interp_cubic(table, slopes, axis, e[None], uniform=True)[0])
    for knot in np.asarray(axis[1:-1]):
        left, right = deriv(jnp.asarray(knot - 1e-9)), deriv(jnp.asarray(knot + 1e-9))
        np.testing.assert_allclose(left, right, rtol=1e-6, atol=1e-6)
    lin = jax.grad(lambda e: interp_linear(table, axis, e[None], uniform=True)[0])
    assert abs(float(lin(axis[2] - 1e-9)) - float(lin(axis[2] + 1e-9))) > 1e-3  # linear is only C0


# -- intensity likelihood ------------------------------------------------------------------------------


def numpy_likelihood(intensity, axis, bands, floor=1e-6, space="log", interp="linear"):
    """-sum log I~ with hand-written normalisation, floor, interpolation (np.interp / scipy natural spline)."""
    i_f = np.maximum(intensity / intensity.max(), floor)
    total = 0.0
    for b in range(bands.shape[0]):
        for k in np.ndindex(bands.shape[1:]):
            y = np.log(i_f[k]) if space == "log" else i_f[k]
            e = np.clip(bands[(b, *k)], axis[0], axis[-1])
            v = np.interp(e, axis, y) if interp == "linear" else CubicSpline(axis, y, bc_type="natural")(e)
            total -= v if space == "log" else np.log(max(v, floor))
    return total


@pytest.mark.parametrize("interp", ["linear", "cubic"])
@pytest.mark.parametrize("space", ["log", "intensity"])
@pytest.mark.parametrize("k_shape,uniform", [(K_GRID, True), (K_GRID, False), (K_CUT, True)])
def test_likelihood_value_and_gradient(x64, interp, space, k_shape, uniform):
    bm = make_bandmap(k_shape, uniform=uniform, zeros=True)
    term = IntensityLikelihood(bm, interp=interp, space=space)
    axis = np.asarray(bm.energy)
    bands = off_grid_energies(axis, (2, *k_shape))
    want = numpy_likelihood(np.asarray(bm.intensity), axis, bands, space=space, interp=interp)
    check_term(term, bands, want)


@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("uniform", [True, False])
def test_likelihood_grid_table_on_axis_is_exact(double, uniform):
    with jax.enable_x64(double):
        bm = make_bandmap(K_GRID, zeros=True, uniform=uniform)
        intensity = np.asarray(bm.intensity, dtype=np.float64)
        want = -np.log(np.maximum(intensity / intensity.max(), 1e-6))
        off_grid = jnp.linspace(-2.5, 1.0, 5)

        @eqx.filter_jit  # the axis is a tracer here: exactness must not rely on identity
        def tables(term, axis, grid):
            sites = jax.vmap(lambda g: term.site_energy(jnp.asarray(1), jnp.full(K_GRID, g)), out_axes=-1)(grid)
            return (term.grid_table_on_axis(), term.grid_table(jnp.asarray(1), axis, K_GRID),
                    term.grid_table(jnp.asarray(0), grid, K_GRID), sites)

        for interp in ("linear", "cubic"):
            for space in ("log", "intensity"):
                term = IntensityLikelihood(bm, interp=interp, space=space)
                exact, on_axis, off_axis, sites = tables(term, bm.energy, off_grid)
                np.testing.assert_allclose(exact, want, rtol=1e-13 if double else 1e-6, atol=0 if double else 1e-6)
                np.testing.assert_array_equal(on_axis, exact)  # bit for bit, in float32 too
                assert on_axis.dtype == bm.intensity.dtype
                # off the axis: the interpolated site energies, the same for every band
                assert off_axis.shape == (*K_GRID, 5)
                tol = dict(rtol=1e-12, atol=1e-12) if double else dict(rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(off_axis, sites, **tol)
        np.testing.assert_array_equal(term.grid_table(0, bm.energy, K_GRID), term.grid_table_on_axis())  # eager
        assert np.max(want) == pytest.approx(-np.log(1e-6))  # zero counts hit the floor, not -inf


def test_likelihood_outside_axis_is_finite(x64):
    bm = make_bandmap(K_GRID, zeros=True)
    for interp in ("linear", "cubic"):
        term = IntensityLikelihood(bm, interp=interp)
        bands = jnp.stack([jnp.full(K_GRID, -100.0), jnp.full(K_GRID, 100.0), jnp.full(K_GRID, jnp.inf)])
        value, grad = value_and_grad(term, bands)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        np.testing.assert_array_equal(grad, 0.0)  # clamped: edge cost, no pull
        edges = np.asarray(term.grid_table_on_axis())[..., [0, -1, -1]]
        np.testing.assert_allclose(value, edges.sum(), rtol=1e-12)


def test_likelihood_from_arrays_descending_axis(x64):
    bm = make_bandmap(K_CUT)
    flipped = IntensityLikelihood(np.asarray(bm.intensity)[..., ::-1], energy=np.asarray(bm.energy)[::-1])
    direct = IntensityLikelihood(bm)
    bands = jnp.asarray(off_grid_energies(np.asarray(bm.energy), (1, *K_CUT)))
    np.testing.assert_allclose(flipped(bands), direct(bands), rtol=1e-12)
    assert flipped.uniform


def test_likelihood_validation():
    bm = make_bandmap(K_CUT)
    with pytest.raises(db.ValidationError, match="interp"):
        IntensityLikelihood(bm, interp="quadratic")
    with pytest.raises(db.ValidationError, match="floor"):
        IntensityLikelihood(bm, floor=0.0)
    with pytest.raises(db.ValidationError, match="energy"):
        IntensityLikelihood(np.ones((3, 4)))
    with pytest.raises(db.ShapeError, match="energy"):
        IntensityLikelihood(np.ones((3, 4)), energy=np.arange(5.0))
    with pytest.raises(db.ValidationError, match="intensity"):
        IntensityLikelihood(np.zeros((3, 4)), energy=np.arange(4.0))
    with pytest.raises(db.ShapeError, match="bands"):
        IntensityLikelihood(bm)(jnp.zeros((1, 4)))
    with pytest.raises(db.ShapeError, match="k_shape"):
        IntensityLikelihood(bm).grid_table(0, bm.energy, (4,))


# -- smoothness and curvature --------------------------------------------------------------------------


def numpy_smoothness(bands, eta):
    """Explicit loop over 4-neighbour (grid) / 2-neighbour (cut) pairs, each pair once, free boundaries."""
    eta = np.broadcast_to(eta, bands.shape[:1])
    total = 0.0
    for b in range(bands.shape[0]):
        e = bands[b]
        for k in np.ndindex(e.shape):
            for ax in range(e.ndim):
                nb = list(k)
                nb[ax] += 1
                if nb[ax] < e.shape[ax]:
                    total += (e[k] - e[tuple(nb)]) ** 2 / (2 * eta[b] ** 2)
    return total


def numpy_curvature(bands, eta):
    eta = np.broadcast_to(eta, bands.shape[:1])
    total = 0.0
    for b in range(bands.shape[0]):
        e = bands[b]
        for k in np.ndindex(e.shape):
            for ax in range(e.ndim):
                lo, hi = list(k), list(k)
                lo[ax] -= 1
                hi[ax] += 1
                if lo[ax] >= 0 and hi[ax] < e.shape[ax]:
                    total += (e[tuple(lo)] - 2 * e[k] + e[tuple(hi)]) ** 2 / (2 * eta[b] ** 2)
    return total


@pytest.mark.parametrize("k_shape", [K_GRID, K_CUT, (1, 4)])
@pytest.mark.parametrize("eta", [0.3, [0.2, 0.5, 1.1]])
def test_smoothness_and_curvature(x64, k_shape, eta):
    bands = rng(5).normal(size=(3, *k_shape))
    smooth, curv = Smoothness(eta), Curvature(eta)
    check_term(smooth, bands, numpy_smoothness(bands, np.asarray(eta)), rtol=1e-12)
    check_term(curv, bands, numpy_curvature(bands, np.asarray(eta)), rtol=1e-12)
    # the neighbour-term contract the discrete solvers rely on: U = sum_b c_b sum_<k,k'> (...)^2
    eta_b = np.broadcast_to(np.asarray(eta), (3,))
    for b in range(3):
        np.testing.assert_allclose(smooth.coupling(jnp.asarray(b)), 1 / (2 * eta_b[b] ** 2), rtol=1e-12)
    sq_diffs = [numpy_smoothness(bands[b : b + 1], 1 / np.sqrt(2)) for b in range(3)]  # sum_<k,k'> (...)^2
    coupled = sum(float(smooth.coupling(jnp.asarray(b))) * sq_diffs[b] for b in range(3))
    np.testing.assert_allclose(smooth(jnp.asarray(bands)), coupled, rtol=1e-12)


def test_smoothness_validation():
    with pytest.raises(db.ValidationError, match="eta"):
        Smoothness(0.0)
    with pytest.raises(db.ValidationError, match="eta"):
        Curvature([0.1, -1.0])
    with pytest.raises(db.ShapeError, match="eta"):
        Smoothness(np.ones((2, 2)))
    with pytest.raises(db.ShapeError, match="eta"):
        Smoothness([0.1, 0.2])(jnp.zeros((3, 4)))


# -- theory prior --------------------------------------------------------------------------------------


class ScaleAndShift(AbstractPerturbation):
    """A user perturbation: dE = a_b * T + c_b (the richer models of a later issue plug in the same way)."""

    scale: jax.Array
    shift: jax.Array

    def __call__(self, theory):
        return self.scale[:, None, None] * theory + self.shift[:, None, None]


@pytest.mark.parametrize("k_shape", [K_GRID, K_CUT])
def test_theory_prior(x64, k_shape):
    r = rng(6)
    theory = r.normal(size=(3, *k_shape))
    bands = r.normal(size=(3, *k_shape))
    shift, sigma = np.array([0.1, -0.2, 0.3]), np.array([0.2, 0.4, 0.8])
    term = TheoryPrior(theory, sigma, RigidShift(shift))
    want = sum(
        (bands[(b, *k)] - theory[(b, *k)] - shift[b]) ** 2 / (2 * sigma[b] ** 2)
        for b in range(3)
        for k in np.ndindex(k_shape)
    )
    np.testing.assert_allclose(term(jnp.asarray(bands)), want, rtol=1e-12)
    # the site-term path (what discrete solvers use) agrees with the fused __call__
    np.testing.assert_allclose(AbstractSiteTerm.__call__(term, jnp.asarray(bands)), want, rtol=1e-12)
    grid = jnp.linspace(-1.0, 1.0, 4)
    table = term.grid_table(jnp.asarray(2), grid, k_shape)
    for m, g in enumerate(np.asarray(grid)):
        np.testing.assert_allclose(table[..., m], term.site_energy(2, jnp.full(k_shape, g)), rtol=1e-12)
    check_term(term, bands, want, rtol=1e-12)
    # default perturbation is a zero rigid shift; scalar sigma
    plain = TheoryPrior(theory, 0.5)
    np.testing.assert_allclose(plain(jnp.asarray(theory)), 0.0, atol=1e-15)
    np.testing.assert_array_equal(plain.perturbation.shift, np.zeros(3))


def test_theory_prior_perturbation_is_learnable(x64):
    r = rng(7)
    theory, bands = r.normal(size=(2, *K_GRID)), r.normal(size=(2, *K_GRID))
    sigma = np.array([0.3, 0.6])
    term = TheoryPrior(db.Bands(theory, [np.arange(5.0), np.arange(7.0)]), sigma, RigidShift([0.1, 0.2]))
    g = eqx.filter_grad(lambda t: t(jnp.asarray(bands)))(term).perturbation.shift
    # dU/ds_b = -sum_k (E - T - s_b) / sigma_b^2
    want = [-np.sum(bands[b] - theory[b] - [0.1, 0.2][b]) / sigma[b] ** 2 for b in range(2)]
    np.testing.assert_allclose(g, want, rtol=1e-12)
    custom = TheoryPrior(theory, sigma, ScaleAndShift(jnp.array([0.1, -0.1]), jnp.array([0.0, 0.5])))
    target = theory * np.array([1.1, 0.9])[:, None, None] + np.array([0.0, 0.5])[:, None, None]
    want_u = np.sum((bands - target) ** 2 / (2 * sigma[:, None, None] ** 2))
    np.testing.assert_allclose(custom(jnp.asarray(bands)), want_u, rtol=1e-12)
    with pytest.raises(db.ValidationError, match="perturbation"):
        TheoryPrior(theory, 0.1, perturbation=lambda t: t)
    with pytest.raises(db.ShapeError, match="sigma"):
        TheoryPrior(theory, [0.1, 0.2, 0.3])


# -- multiband -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k_shape", [K_GRID, K_CUT])
def test_band_ordering(x64, k_shape):
    r = rng(8)
    steps = 0.2 * np.arange(4).reshape(-1, *([1] * len(k_shape)))
    bands = r.normal(scale=0.3, size=(4, *k_shape)) - steps  # mostly ordered, with violations
    delta, strength = np.array([0.1, 0.3, 0.0]), np.array([5.0, 2.0, 1.0])
    term = BandOrdering(delta, strength)
    want = 0.0
    for b in range(3):
        for k in np.ndindex(k_shape):
            v = bands[(b + 1, *k)] - bands[(b, *k)] + delta[b]
            want += strength[b] * max(v, 0.0) ** 2
    assert want > 0  # the random bands do violate the ordering somewhere
    check_term(term, bands, want, rtol=1e-12)
    ordered = -np.arange(4.0)[:, None].repeat(np.prod(k_shape), 1).reshape(4, *k_shape)  # 1 eV apart
    assert float(BandOrdering(0.5, 10.0)(jnp.asarray(ordered))) == 0.0
    assert float(BandOrdering(1.5, 10.0)(jnp.asarray(ordered))) == pytest.approx(3 * 10 * 0.25 * np.prod(k_shape))
    masked = BandOrdering(0.1, [0.0, 0.0, 0.0])
    assert float(masked(jnp.asarray(bands))) == 0.0
    with pytest.raises(db.ShapeError, match="delta"):
        BandOrdering([0.1, 0.2], 1.0)(jnp.asarray(bands))
    with pytest.raises(db.ValidationError, match="strength"):
        BandOrdering(0.1, -1.0)


@pytest.mark.parametrize("k_shape", [K_GRID, K_CUT])
def test_feature_exclusion(x64, k_shape):
    r = rng(9)
    bands = r.normal(scale=0.2, size=(4, *k_shape))
    width, strength = 0.15, 3.0
    weights = r.random((4, 4))
    for pw in (None, weights):
        term = FeatureExclusion(width, strength, pair_weights=pw)
        m = np.ones((4, 4)) if pw is None else pw
        want = sum(
            strength * m[b, c] * np.exp(-((bands[(b, *k)] - bands[(c, *k)]) ** 2) / (4 * width**2))
            for b in range(4)
            for c in range(b + 1, 4)
            for k in np.ndindex(k_shape)
        )
        check_term(term, bands, want, rtol=1e-12)
    # masking a physically degenerate pair removes its cost entirely
    same = np.zeros((2, *k_shape))
    assert float(FeatureExclusion(width, strength)(jnp.asarray(same))) == pytest.approx(strength * np.prod(k_shape))
    assert float(FeatureExclusion(width, strength, pair_weights=np.zeros((2, 2)))(jnp.asarray(same))) == 0.0
    with pytest.raises(db.ShapeError, match="pair_weights"):
        FeatureExclusion(width, strength, pair_weights=np.ones((3, 3)))(jnp.asarray(same))


def test_feature_exclusion_is_the_line_overlap(x64):
    """The documented derivation: exp(-d^2 / (4 w^2)) is the normalised overlap of two Gaussian lines."""
    w = 0.12
    e = np.linspace(-3, 3, 20001)
    g = lambda c: np.exp(-((e - c) ** 2) / (2 * w**2))  # noqa: E731
    for d in (0.0, 0.05, 0.2, 0.4):
        overlap = np.trapezoid(g(0.0) * g(d), e) / np.trapezoid(g(0.0) ** 2, e)
        term = FeatureExclusion(w, 1.0)(jnp.asarray([[0.0], [d]]))
        np.testing.assert_allclose(term, overlap, rtol=1e-9)


# -- composition, transformations, dtypes --------------------------------------------------------------


def all_terms(bm, n_bands=2):
    theory = np.asarray(rng(10).uniform(-1.5, 0.0, (n_bands, *bm.k_shape)))
    return [
        IntensityLikelihood(bm, interp="cubic"),
        Smoothness([0.2, 0.3][:n_bands] if n_bands == 2 else 0.2),
        Curvature(0.5),
        TheoryPrior(theory, 0.3, RigidShift(np.full(n_bands, 0.05))),
        BandOrdering(0.1, 4.0),
        FeatureExclusion(0.1, 2.0),
    ]


def test_composition(x64):
    bm = make_bandmap(K_GRID)
    like, smooth, curv, prior, order, excl = all_terms(bm)
    bands = jnp.asarray(off_grid_energies(np.asarray(bm.energy), (2, *K_GRID)))
    total = like + 0.5 * smooth + (curv + prior) * 2.0 + order + excl
    assert isinstance(total, Sum) and len(total.terms) == 5  # nested sums flattened by +, weights kept
    assert isinstance(total.terms[1], Weighted)
    flat = flatten_terms(total)
    assert [type(t) for _, t in flat] == [IntensityLikelihood, Smoothness, Curvature, TheoryPrior, BandOrdering,
                                          FeatureExclusion]
    np.testing.assert_allclose([float(w) for w, _ in flat], [1.0, 0.5, 2.0, 2.0, 1.0, 1.0])
    # each leaf term separately, then recombined by hand
    values, grads = zip(*(value_and_grad(t, bands) for _, t in flat))
    want = values[0] + 0.5 * values[1] + 2.0 * (values[2] + values[3]) + values[4] + values[5]
    value, grad = value_and_grad(total, bands)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(grad, sum(float(w) * g for (w, _), g in zip(flat, grads)), rtol=1e-10, atol=1e-12)
    parts = eqx.filter_jit(lambda t, e: t.energies(e))(total, bands)
    assert sorted(parts) == ["BandOrdering", "FeatureExclusion", "IntensityLikelihood", "Smoothness", "Sum"]
    np.testing.assert_allclose(parts["Sum"], 2.0 * (values[2] + values[3]), rtol=1e-12)


def test_user_term_one_method(x64):
    class Pin(AbstractTerm):
        """A user term: a quadratic pin of band 0 at one value."""

        value: float

        def __call__(self, bands):
            return jnp.sum((bands[0] - self.value) ** 2)

    bands = rng(11).normal(size=(2, *K_CUT))
    energy = Smoothness(0.5) + 3.0 * Pin(1.0)
    want = numpy_smoothness(bands, 0.5) + 3.0 * np.sum((bands[0] - 1.0) ** 2)
    check_term(energy, bands, want, rtol=1e-12)


def test_vmap_over_datasets():
    """A batch of datasets = a term whose leaves carry a leading batch axis; filter_vmap + jit over it."""
    maps = [make_bandmap(K_GRID, seed=s) for s in range(3)]
    thetas = [np.asarray(rng(20 + s).uniform(-1.5, 0.0, (2, *K_GRID))) for s in range(3)]
    singles = [
        IntensityLikelihood(bm, interp="cubic") + Smoothness([0.2 + 0.1 * s, 0.4]) + TheoryPrior(t, 0.3 + 0.1 * s)
        + BandOrdering(0.1, 1.0 + s) + FeatureExclusion(0.1, 2.0)
        for s, (bm, t) in enumerate(zip(maps, thetas))
    ]
    batched = jax.tree.map(lambda *xs: jnp.stack(xs), *singles)
    bands = jnp.asarray(np.stack([off_grid_energies(np.asarray(maps[0].energy), (2, *K_GRID), seed=s)
                                  for s in range(3)]))
    f = eqx.filter_jit(eqx.filter_vmap(lambda term, e: jax.value_and_grad(term)(e)))
    values, grads = f(batched, bands)
    for s in range(3):
        v, g = value_and_grad(singles[s], bands[s])
        np.testing.assert_allclose(values[s], v, rtol=1e-5)
        np.testing.assert_allclose(grads[s], g, rtol=1e-4, atol=1e-4)
    # terms can also be built inside vmap (a stack of raw intensities; hyperparameter sweeps: traced eta)
    stack = jnp.stack([m.intensity for m in maps])
    built = eqx.filter_jit(eqx.filter_vmap(
        lambda i, e: IntensityLikelihood(i, interp="cubic", energy=maps[0].energy)(e)))(stack, bands)
    np.testing.assert_allclose(built, [float(IntensityLikelihood(m, interp="cubic")(e)) for m, e in zip(maps, bands)],
                               rtol=1e-5)
    etas = jnp.array([0.1, 0.2, 0.4])
    sweep = eqx.filter_vmap(lambda eta: Smoothness(eta)(bands[0]))(etas)
    np.testing.assert_allclose(sweep, [float(Smoothness(float(e))(bands[0])) for e in etas], rtol=1e-5)


def test_float32_default():
    bm = make_bandmap(K_GRID, zeros=True)
    bands = jnp.asarray(off_grid_energies(np.asarray(bm.energy), (2, *K_GRID)), dtype=jnp.float32)
    for term in all_terms(bm):
        value, grad = value_and_grad(term, bands)
        assert value.dtype == jnp.float32 and grad.dtype == jnp.float32, type(term).__name__
        assert np.isfinite(value) and np.all(np.isfinite(grad)), type(term).__name__
    like = IntensityLikelihood(bm)
    assert like.grid_table(0, bm.energy, K_GRID).dtype == jnp.float32
    far = jax.grad(sum(all_terms(bm)[1:], start=like))(bands + 1e3)  # far outside the energy axis
    assert np.all(np.isfinite(far))
