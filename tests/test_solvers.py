"""Tests of diffbands.solvers: ICM parity with fuller's update, exact chain DP, gradient MAP, batching."""

from __future__ import annotations

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fuller_reference import fuller_iter_para
from scipy.ndimage import gaussian_filter

from diffbands import BandMap, SolverError
from diffbands._errors import ShapeError, ValidationError
from diffbands.energy import AbstractSiteTerm, Curvature, FeatureExclusion, IntensityLikelihood, Smoothness, TheoryPrior
from diffbands.solvers import (
    ChainDP,
    CheckerboardICM,
    Default,
    GradientMAP,
    SolveResult,
    default_solver,
    solve,
    viterbi,
)
from diffbands.solvers._icm import _conditional_argmin, best_rigid_shift, search_window

# -- helpers ------------------------------------------------------------------------------------------


class TableTerm(AbstractSiteTerm):
    """A site term given by an explicit cost table ``(n_bands, *k_shape, n_grid)`` on a grid."""

    table: jax.Array
    grid: jax.Array

    def site_energy(self, band, values):
        idx = jnp.argmin(jnp.abs(values[..., None] - self.grid), axis=-1)
        return jnp.take_along_axis(self.table[band], idx[..., None], axis=-1)[..., 0]

    def grid_table(self, band, grid, k_shape):
        return self.table[band]


def _band_volume(rng, nx, ny, energy, noise=(0.02, 0.5)):
    """A positive random volume with a smooth band in it, normalised to max 1."""
    kx, ky = np.arange(nx), np.arange(ny)
    band = -0.5 + 0.3 * np.cos(kx[:, None] / 8.0) * np.sin(ky[None, :] / 11.0)
    vol = 0.3 * np.exp(-((energy - band[..., None]) ** 2) / (2 * 0.08**2)) + rng.uniform(*noise, (nx, ny, energy.size))
    return vol / vol.max()


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


# -- CheckerboardICM -----------------------------------------------------------------------------------


def test_icm_matches_fuller_reference_on_odd_non_square_volume(x64):
    """Index-for-index parity with the numpy reference of fuller's ``iter_para`` on 37 x 50 x 60."""
    rng = np.random.default_rng(1)
    nx, ny, ne = 37, 50, 60
    energy = np.linspace(-1.0, 0.0, ne)
    vol = _band_volume(rng, nx, ny, energy)
    eta, n_epochs = 0.04, 10
    ind0 = rng.integers(0, ne, (nx, ny))

    ref, margin = fuller_iter_para(vol, energy, eta, ind0, n_epochs)
    # no near-ties: the comparison of two float64 implementations is meaningful
    assert margin > 1e-9
    # the update does real work: most indices moved, including the last (odd) row and column
    assert np.mean(ref != ind0) > 0.5
    assert np.any(ref[-1] != ind0[-1]) and np.any(ref[:, -1] != ind0[:, -1])

    bm = BandMap(vol, [np.arange(nx), np.arange(ny), energy])
    en = IntensityLikelihood(bm) + Smoothness(eta)
    for loop in (True, False):
        res = solve(CheckerboardICM(max_epochs=n_epochs, energy_loop=loop), en, energy[ind0][None])
        assert res.indices.dtype == jnp.int32
        assert int(res.n_steps) == n_epochs
        np.testing.assert_array_equal(np.asarray(res.indices[0]), ref)
        np.testing.assert_array_equal(np.asarray(res.bands[0]), energy[ref])


def test_icm_one_epoch_parity_and_monotone_trace(x64):
    rng = np.random.default_rng(2)
    nx, ny, ne = 9, 14, 25
    energy = np.linspace(-1.0, 0.0, ne)
    vol = _band_volume(rng, nx, ny, energy)
    ind0 = rng.integers(0, ne, (nx, ny))
    en = IntensityLikelihood(BandMap(vol, [np.arange(nx), np.arange(ny), energy])) + Smoothness(0.05)
    res = solve(CheckerboardICM(max_epochs=50), en, energy[ind0][None])
    ref1, _ = fuller_iter_para(vol, energy, 0.05, ind0, 1)
    res1 = solve(CheckerboardICM(max_epochs=1), en, energy[ind0][None])
    np.testing.assert_array_equal(np.asarray(res1.indices[0]), ref1)
    # converged: a fixed point, and one more epoch of the reference changes nothing
    assert bool(res.converged)
    n = int(res.n_steps)
    refn, _ = fuller_iter_para(vol, energy, 0.05, np.asarray(res.indices[0]), 1)
    np.testing.assert_array_equal(refn, np.asarray(res.indices[0]))
    trace = np.asarray(res.trace)
    assert np.all(np.isfinite(trace[:n])) and np.all(np.isnan(trace[n:]))
    assert np.all(np.diff(trace[:n]) <= 1e-9 * np.abs(trace[:n - 1]))  # ICM never increases U
    np.testing.assert_allclose(float(res.energy), float(en(res.bands)), rtol=1e-12)


def test_icm_on_cut_matches_reference_and_is_a_fixed_point(x64):
    """1-D cut (2 neighbours): the same update as the fuller reference on an (n, 1) grid."""
    rng = np.random.default_rng(3)
    nk, ne = 41, 30
    energy = np.linspace(-1.0, 0.0, ne)
    vol = _band_volume(rng, nk, 1, energy)[:, 0]
    ind0 = rng.integers(0, ne, nk)
    en = IntensityLikelihood(BandMap(vol, [np.arange(nk), energy])) + Smoothness(0.03)
    res = solve(CheckerboardICM(max_epochs=4), en, energy[ind0][None])
    ref, margin = fuller_iter_para(vol[:, None, :], energy, 0.03, ind0[:, None], 4)
    assert margin > 1e-9
    np.testing.assert_array_equal(np.asarray(res.indices[0]), ref[:, 0])
    # run to convergence; the exact chain MAP (ChainDP) can only be lower or equal
    full = solve(CheckerboardICM(), en, energy[ind0][None])
    exact = solve(ChainDP(), en, energy[ind0][None])
    assert bool(full.converged)
    assert float(exact.energy) <= float(full.energy) + 1e-12


def test_icm_multiband_band_batch_and_per_band_eta():
    rng = np.random.default_rng(4)
    nx, ny, ne = 12, 15, 40
    energy = np.linspace(-1.0, 0.0, ne).astype(np.float32)
    vol = _band_volume(rng, nx, ny, energy)
    en = IntensityLikelihood(vol, energy=energy) + Smoothness(jnp.array([0.02, 0.05, 0.2]))
    b0 = jnp.stack([jnp.full((nx, ny), -0.2), jnp.full((nx, ny), -0.5), jnp.full((nx, ny), -0.8)])
    results = [solve(CheckerboardICM(band_batch=bb), en, b0) for bb in (2, None)]
    for r in results[1:]:
        np.testing.assert_array_equal(np.asarray(r.indices), np.asarray(results[0].indices))
    # bands are independent in ICM: solving band 1 alone gives the same answer
    alone = solve(CheckerboardICM(), IntensityLikelihood(vol, energy=energy) + Smoothness(0.05), b0[1:2])
    np.testing.assert_array_equal(np.asarray(alone.indices[0]), np.asarray(results[0].indices[1]))


def test_rigid_shift_recovers_a_coherent_offset():
    rng = np.random.default_rng(5)
    nx, ny, ne = 20, 24, 120
    energy = np.linspace(-2.0, 0.0, ne).astype(np.float32)
    step = float(energy[1] - energy[0])
    kx, ky = np.meshgrid(np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), indexing="ij")
    band = -1.0 + 0.2 * np.cos(np.pi * kx) * np.cos(np.pi * ky)
    vol = np.exp(-((energy - band[..., None]) ** 2) / (2 * 0.05**2)) + 1e-3 * rng.uniform(size=(nx, ny, ne))
    en = IntensityLikelihood(vol, energy=energy) + Smoothness(0.05)
    b0 = jnp.asarray(band[None] + 20 * step, jnp.float32)  # 20 grid steps (0.34 eV) too high
    plain = solve(CheckerboardICM(), en, b0)
    shifted = solve(CheckerboardICM(max_shift=0.5), en, b0)
    assert _rmse(plain.bands[0], band) > 10 * step  # single-site moves cannot undo the offset
    assert _rmse(shifted.bands[0], band) < 1.0 * step
    assert float(shifted.energy) < float(plain.energy)
    # the search alone, limited to 0.2 eV (11 steps): it goes as far as allowed towards the band
    table = en.terms[0].grid_table_on_axis().reshape(-1, ne)
    idx0 = jnp.asarray(np.abs(energy - b0[0][..., None]).argmin(-1), jnp.int32)
    c = jnp.asarray(1 / (2 * 0.05**2), jnp.float32)
    limited = jax.jit(best_rigid_shift, static_argnums=4)(table, c, idx0, jnp.asarray(energy), 0.2)
    np.testing.assert_array_equal(np.asarray(limited), np.asarray(idx0) - 11)


def test_icm_search_window_contains_every_minimiser_and_shrinks():
    """The exact window of the energy loop: every minimiser of the full conditional cost lies inside it,
    ties included (integer costs make many), so the windowed loop returns the full argmin; with a strong
    coupling it is much narrower than the grid; with zero coupling it is the whole grid."""
    rng = np.random.default_rng(21)
    n_grid, n_sites = 60, 400
    grid = jnp.asarray(np.sort(rng.uniform(-1.0, 1.0, n_grid)).astype(np.float32))
    unary = jnp.asarray(rng.integers(0, 6, (n_grid, n_sites)).astype(np.float32))  # many ties
    umin = jnp.min(unary, axis=0)
    for weight_scale, mu_lo, mu_hi in ((0.0, -1.0, 1.0), (5.0, -1.2, 1.2), (400.0, -0.2, -0.1)):
        weight = jnp.asarray(weight_scale * rng.uniform(0.5, 1.0, n_sites).astype(np.float32))
        mu = jnp.asarray(rng.uniform(mu_lo, mu_hi, n_sites).astype(np.float32))
        cost = np.asarray(unary + weight[None] * jnp.square(grid[:, None] - mu[None]))
        minimisers = np.flatnonzero(np.any(cost == cost.min(axis=0, keepdims=True), axis=1))
        lo, hi = (int(x) for x in search_window(unary, grid, weight, mu, umin))
        assert lo <= minimisers.min() and minimisers.max() <= hi
        full = np.argmin(cost, axis=0)
        for window in (None, umin):
            got = _conditional_argmin(unary, grid, weight, mu, True, window)
            np.testing.assert_array_equal(np.asarray(got), full)
        if weight_scale == 0.0:
            assert (lo, hi) == (0, n_grid - 1)
        if weight_scale == 400.0:  # mu in a 0.1-wide band, radius <= sqrt(6 / 200): a fraction of the grid
            assert hi - lo < n_grid // 2


def test_icm_window_and_cheap_trace_match_the_full_search_and_full_trace():
    """Windowed loop vs full loop vs argmin reduction: the same indices; ICM's own energy (the default
    trace) equals the full energy when every term is decomposable; with an ignored term it is the
    decomposable part, while the result's energy is always the full energy."""
    rng = np.random.default_rng(22)
    nx, ny, ne = 14, 11, 80
    energy = np.linspace(-1.0, 0.0, ne).astype(np.float32)
    vol = _band_volume(rng, nx, ny, energy)
    en = IntensityLikelihood(vol, energy=energy) + Smoothness(jnp.array([0.02, 0.2]))
    b0 = jnp.stack([jnp.full((nx, ny), -0.45), jnp.full((nx, ny), -0.6)])
    ref = solve(CheckerboardICM(window=False, full_trace=True, max_epochs=30), en, b0)
    n = int(ref.n_steps)
    assert n > 2
    for solver in (CheckerboardICM(max_epochs=30), CheckerboardICM(max_epochs=30, energy_loop=False)):
        res = solve(solver, en, b0)
        np.testing.assert_array_equal(np.asarray(res.indices), np.asarray(ref.indices))
        assert int(res.n_steps) == n
        np.testing.assert_allclose(np.asarray(res.trace[:n]), np.asarray(ref.trace[:n]), rtol=2e-5)
        assert np.all(np.isnan(np.asarray(res.trace[n:])))
        np.testing.assert_allclose(float(res.energy), float(en(res.bands)), rtol=1e-5)
    # an ignored (non-decomposable) term: the trace is ICM's part, the result's energy the full one
    excl = FeatureExclusion(0.05, 3.0)
    res = solve(CheckerboardICM(max_epochs=30, ignore_unsupported=True), en + excl, b0)
    np.testing.assert_array_equal(np.asarray(res.indices), np.asarray(ref.indices))
    np.testing.assert_allclose(np.asarray(res.trace[:n]), np.asarray(ref.trace[:n]), rtol=2e-5)
    np.testing.assert_allclose(float(res.energy), float(en(res.bands) + excl(res.bands)), rtol=1e-5)
    full = solve(CheckerboardICM(max_epochs=30, ignore_unsupported=True, full_trace=True), en + excl, b0)
    np.testing.assert_allclose(float(full.trace[n - 1]), float(res.energy), rtol=1e-5)
    # zero epochs: the (snapped) start, an empty trace, nothing run
    zero = solve(CheckerboardICM(max_epochs=0), en, b0)
    assert int(zero.n_steps) == 0 and zero.trace.shape == (0,)
    np.testing.assert_allclose(np.asarray(zero.bands), np.asarray(b0), atol=0.5 * float(energy[1] - energy[0]))


def test_icm_rejects_unsupported_terms_by_name():
    energy = np.linspace(-1, 0, 20).astype(np.float32)
    vol = _band_volume(np.random.default_rng(6), 6, 7, energy)
    en = IntensityLikelihood(vol, energy=energy) + Smoothness(0.1) + 2.0 * Curvature(0.1)
    b0 = jnp.full((1, 6, 7), -0.5)
    with pytest.raises(SolverError, match="Curvature"):
        solve(CheckerboardICM(), en, b0)
    with pytest.raises(SolverError, match="Curvature"):
        solve(ChainDP(), IntensityLikelihood(vol[:, 0], energy=energy) + Curvature(0.1), jnp.full((1, 6), -0.5))
    # optimising only the decomposable part is allowed on request; the trace is of the full energy
    res = solve(CheckerboardICM(ignore_unsupported=True), en, b0)
    np.testing.assert_allclose(float(res.energy), float(en(res.bands)), rtol=1e-5)
    # no grid anywhere: a clear error
    with pytest.raises(SolverError, match="grid"):
        solve(CheckerboardICM(), Smoothness(0.1), b0)


def test_settings_and_inputs_are_validated():
    with pytest.raises(ValidationError, match="max_epochs"):
        CheckerboardICM(max_epochs=-1)
    with pytest.raises(ValidationError, match="band_batch"):
        CheckerboardICM(band_batch=0)
    with pytest.raises(ValidationError, match="max_shift"):
        CheckerboardICM(max_shift=-0.1)
    with pytest.raises(ValidationError, match="optimizer"):
        GradientMAP("sgd-with-typo")
    with pytest.raises(ValidationError, match="learning_rate"):
        GradientMAP("adam", learning_rate=-1.0)
    with pytest.raises(ValidationError, match="refine"):
        ChainDP(refine=CheckerboardICM())
    energy = np.linspace(-1, 0, 20).astype(np.float32)
    en = IntensityLikelihood(_band_volume(np.random.default_rng(7), 6, 7, energy), energy=energy)
    with pytest.raises(ShapeError, match="bands0"):
        solve(CheckerboardICM(), en, jnp.zeros(6))
    with pytest.raises(ValidationError, match="bands0"):
        solve(CheckerboardICM(), en, np.full((1, 6, 7), np.nan))
    with pytest.raises(ShapeError, match="bands0"):
        solve(ChainDP(), en, jnp.zeros((1, 6, 7)))
    with pytest.raises(ValidationError, match="grid"):
        solve(CheckerboardICM(), en, jnp.zeros((1, 6, 7)), grid=jnp.array([0.0, -1.0]))


# -- ChainDP ---------------------------------------------------------------------------------------------


def _brute_force(table, grid, c):
    """All ``M^N`` paths in lexicographic order; the first with the minimal energy."""
    n_k, n_e = table.shape
    best, best_path = np.inf, None
    for path in itertools.product(range(n_e), repeat=n_k):
        e = grid[list(path)]
        u = table[np.arange(n_k), list(path)].sum() + c * np.sum(np.diff(e) ** 2)
        if u < best:  # strict: the lexicographically first optimum is kept
            best, best_path = u, np.array(path)
    return best_path, best


def test_chain_dp_equals_brute_force_with_ties():
    """5 k points x 4 energies (4^5 paths), integer costs so that ties are exact and frequent."""
    rng = np.random.default_rng(8)
    grid = np.arange(4.0)
    n_ties = 0
    for trial in range(12):
        tables = rng.integers(0, 4, (2, 5, 4)).astype(np.float64)
        eta = 0.5 if trial % 2 else 1.0  # c = 2 or 0.5: exact in binary floating point
        c = 1 / (2 * eta**2)
        en = TableTerm(jnp.asarray(tables, jnp.float32), jnp.asarray(grid, jnp.float32)) + Smoothness(eta)
        res = solve(ChainDP(), en, jnp.zeros((2, 5)), grid=jnp.asarray(grid, jnp.float32))
        for b in range(2):
            path, best = _brute_force(tables[b], grid, c)
            np.testing.assert_array_equal(np.asarray(res.indices[b]), path)
            # count optimal paths: several optima happen, and the DP picks the lexicographically first
            all_u = [tables[b][np.arange(5), list(p)].sum() + c * np.sum(np.diff(grid[list(p)]) ** 2)
                     for p in itertools.product(range(4), repeat=5)]
            n_ties += int(np.sum(np.asarray(all_u) == best) > 1)
        np.testing.assert_allclose(float(res.energy), float(en(res.bands)))
        assert bool(res.converged) and int(res.n_steps) == 1
    assert n_ties >= 3  # the tie-breaking rule was really exercised


def test_viterbi_single_point_and_no_coupling():
    u = jnp.array([[3.0, 1.0, 1.0, 2.0]])
    assert np.asarray(viterbi(u, jnp.array(5.0), jnp.arange(4.0))).tolist() == [1]
    u = jnp.asarray(np.random.default_rng(9).normal(size=(7, 6)))
    np.testing.assert_array_equal(np.asarray(viterbi(u, jnp.array(0.0), jnp.arange(6.0))), np.argmin(u, axis=1))


def test_chain_dp_with_refinement_concatenates_traces():
    energy = np.linspace(-1.0, 0.0, 50).astype(np.float32)
    k = np.linspace(-1, 1, 40)
    band = -0.5 + 0.2 * np.cos(np.pi * k)
    vol = np.exp(-((energy - band[:, None]) ** 2) / (2 * 0.06**2)) + 1e-3
    en = IntensityLikelihood(vol, energy=energy, interp="cubic") + Smoothness(0.05)
    res = solve(ChainDP(refine=GradientMAP("lbfgs", max_steps=50)), en, jnp.zeros((1, 40)))
    n = int(res.n_steps)
    assert res.trace.shape == (51,) and n >= 2
    assert np.all(np.isfinite(np.asarray(res.trace[:n]))) and np.all(np.isnan(np.asarray(res.trace[n:])))
    assert res.indices is not None
    dp_only = solve(ChainDP(), en, jnp.zeros((1, 40)))
    np.testing.assert_array_equal(np.asarray(res.indices), np.asarray(dp_only.indices))
    assert float(res.energy) <= float(dp_only.energy)
    step = float(energy[1] - energy[0])
    assert _rmse(res.bands[0], band) < _rmse(dp_only.bands[0], band)
    assert _rmse(res.bands[0], band) < step / 3


# -- GradientMAP -----------------------------------------------------------------------------------------


def _quadratic_problem(x64=False):
    """``U = sum (E - T)^2 / (2 s^2) + c sum_<k,k'> (E_k - E_k')^2`` and its exact minimiser."""
    rng = np.random.default_rng(10)
    nx, ny = 7, 9
    theory = rng.normal(size=(1, nx, ny))
    sigma, eta = 0.5, 0.7
    c = 1 / (2 * eta**2)
    n = nx * ny
    lap = np.zeros((n, n))
    idx = np.arange(n).reshape(nx, ny)
    for a, b in [(idx[1:], idx[:-1]), (idx[:, 1:], idx[:, :-1])]:
        for i, j in zip(a.ravel(), b.ravel()):
            lap[i, i] += 1
            lap[j, j] += 1
            lap[i, j] -= 1
            lap[j, i] -= 1
    exact = np.linalg.solve(np.eye(n) / sigma**2 + 2 * c * lap, theory.ravel() / sigma**2).reshape(1, nx, ny)
    return TheoryPrior(theory, sigma) + Smoothness(eta), exact


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_gradient_map_converges_to_the_exact_minimum(optimizer):
    en, exact = _quadratic_problem()
    b0 = jnp.zeros((1, 7, 9))
    solver = GradientMAP(optimizer, learning_rate=0.05 if optimizer == "adam" else None, max_steps=3000)
    res = solve(solver, en, b0)
    n = int(res.n_steps)
    trace = np.asarray(res.trace)
    assert bool(res.converged) and n < 3000
    assert np.all(np.isfinite(trace[:n])) and np.all(np.isnan(trace[n:]))
    assert float(res.energy) < float(en(b0))
    np.testing.assert_allclose(np.asarray(res.bands), exact, atol=2e-3)
    if optimizer == "lbfgs":
        assert np.all(np.diff(trace[:n]) <= 1e-5 * np.abs(trace[:n - 1]))  # line search: monotone
        assert n < 100


def test_gradient_map_custom_optax_transformation_and_general_terms():
    import optax

    en, _ = _quadratic_problem()
    en = en + Curvature(0.5)  # a term that discrete solvers refuse
    res = solve(GradientMAP(optax.sgd(1e-2), max_steps=200, rtol=1e-7, xtol=0.0), en, jnp.zeros((1, 7, 9)))
    assert float(res.energy) < float(en(jnp.zeros((1, 7, 9))))
    lb = solve(GradientMAP("lbfgs", max_steps=200), en, jnp.zeros((1, 7, 9)))
    assert float(lb.energy) <= float(res.energy) + 1e-4 * abs(float(res.energy))
    assert res.indices is None


# -- batching over datasets --------------------------------------------------------------------------------


def _stack(*trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def test_vmapped_batch_of_datasets_equals_separate_solves():
    rng = np.random.default_rng(11)
    nx, ny, ne = 10, 12, 40
    energy = np.linspace(-1.0, 0.0, ne).astype(np.float32)
    ens = [IntensityLikelihood(_band_volume(rng, nx, ny, energy), energy=energy, interp="cubic")
           + Smoothness(eta) for eta in (0.03, 0.08)]
    b0s = [jnp.full((1, nx, ny), -0.45), jnp.full((1, nx, ny), -0.55)]
    batch_en, batch_b0 = _stack(*ens), jnp.stack(b0s)
    # Default covers CheckerboardICM (with the rigid-shift search), L-BFGS and the chaining of results
    for solver in (GradientMAP("adam", max_steps=60), Default()):
        batched = eqx.filter_vmap(lambda e, b: solve(solver, e, b))(batch_en, batch_b0)  # noqa: B023 - called at once
        assert isinstance(batched, SolveResult) and batched.bands.shape == (2, 1, nx, ny)
        for i in range(2):
            single = solve(solver, ens[i], b0s[i])
            n_one, n_batch = int(single.n_steps), int(batched.n_steps[i])
            # the discrete stage is exact; the L-BFGS refinement agrees to float32 rounding (XLA splits batched
            # reductions differently), which can move its stop on band motion (0.5 meV RMS) by one step
            assert abs(n_batch - n_one) <= (1 if isinstance(solver, Default) else 0), (n_batch, n_one)
            if single.indices is not None:
                np.testing.assert_array_equal(np.asarray(batched.indices[i]), np.asarray(single.indices))
            diff = np.asarray(batched.bands[i]) - np.asarray(single.bands)
            if n_batch == n_one:
                np.testing.assert_allclose(diff, 0.0, atol=1e-4)
            else:  # one refinement step apart: the stopping rule bounds what that last step moved
                refine = solver.refine
                assert np.max(np.abs(diff)) <= max(refine.xtol, 1e-4) or np.sqrt(np.mean(diff**2)) <= refine.rms_tol
            t_batch, t_one = np.asarray(batched.trace[i]), np.asarray(single.trace)
            both = np.isfinite(t_batch) & np.isfinite(t_one)
            assert np.sum(np.isfinite(t_batch) != np.isfinite(t_one)) == abs(n_batch - n_one)
            np.testing.assert_allclose(t_batch[both], t_one[both], rtol=1e-4)


def test_vmapped_chain_dp_equals_separate_solves():
    rng = np.random.default_rng(12)
    energy = np.linspace(-1.0, 0.0, 30).astype(np.float32)
    vols = [_band_volume(rng, 25, 1, energy)[:, 0] for _ in range(2)]
    ens = [IntensityLikelihood(v, energy=energy) + Smoothness(eta) for v, eta in zip(vols, (0.02, 0.1))]
    b0 = jnp.zeros((2, 2, 25))  # two datasets of two bands each
    batched = eqx.filter_vmap(lambda e, b: solve(ChainDP(), e, b))(_stack(*ens), b0)
    for i in range(2):
        single = solve(ChainDP(), ens[i], b0[i])
        np.testing.assert_array_equal(np.asarray(batched.indices[i]), np.asarray(single.indices))
    assert not np.array_equal(np.asarray(batched.indices[0]), np.asarray(batched.indices[1]))


# -- default strategy and the acceptance experiment ---------------------------------------------------------


def _synthetic_single_band(n=128, ne=300, sigma=0.06, peak=30.0, background=1.0, seed=0):
    """Gaussian line (sigma eV) on a cosine band, ``peak`` expected counts at the peak on ``background``
    counts, Poisson noise; energy step 17.6 meV as in the WSe2 data."""
    rng = np.random.default_rng(seed)
    k = np.linspace(-1.0, 1.0, n)
    energy = np.linspace(-4.5, 0.75, ne)
    band = -1.5 + 0.4 * (np.cos(np.pi * k)[:, None] + np.cos(np.pi * k)[None, :])
    lam = background + peak * np.exp(-((energy - band[..., None]) ** 2) / (2 * sigma**2))
    return k, energy, band, rng.poisson(lam).astype(np.float32)


def test_acceptance_single_band_poisson_128x128x300():
    """Init 0.3 eV off; the default strategy (ICM with rigid-shift search, then cubic L-BFGS refinement)
    reaches an RMSE below a third of the energy step and below the discrete ICM result."""
    k, energy, band, counts = _synthetic_single_band()
    step = float(energy[1] - energy[0])
    # the reference pipeline's last preprocessing step: Gaussian smoothing (0.8, 0.8, 1.0) pixels
    bm = BandMap(gaussian_filter(counts, (0.8, 0.8, 1.0)), [k, k, energy])
    en = IntensityLikelihood(bm) + Smoothness(0.05)
    b0 = jnp.asarray(band[None] + 0.3, jnp.float32)
    icm = solve(CheckerboardICM(max_shift=0.5), en, b0)
    # the default strategy refines on the smooth (cubic) likelihood; its ICM stage sees the same grid table
    en_cubic = IntensityLikelihood(bm, interp="cubic") + Smoothness(0.05)
    best = solve(default_solver(), en_cubic, b0)
    icm_rmse, rmse = _rmse(icm.bands[0], band), _rmse(best.bands[0], band)
    assert bool(icm.converged)
    assert icm_rmse < 0.5 * step
    assert rmse < step / 3
    assert rmse < icm_rmse
    np.testing.assert_array_equal(np.asarray(best.indices), np.asarray(icm.indices))


def test_default_on_cut_uses_exact_dp_and_handles_general_terms():
    energy = np.linspace(-1.0, 0.0, 60).astype(np.float32)
    k = np.linspace(-1, 1, 50)
    band = -0.5 + 0.2 * np.cos(np.pi * k)
    vol = np.exp(-((energy - band[:, None]) ** 2) / (2 * 0.05**2)) + 1e-3
    en = IntensityLikelihood(vol, energy=energy) + Smoothness(0.05) + Curvature(0.05)
    b0 = jnp.full((1, 50), -0.2)
    res = solve(Default(), en, b0)
    n = int(res.n_steps)
    assert res.indices is not None and n >= 2 and res.trace.shape == (1 + 500,)
    assert np.all(np.isfinite(np.asarray(res.trace[:n]))) and np.all(np.isnan(np.asarray(res.trace[n:])))
    # the exact grid MAP of the decomposable part: compare with the DP run directly
    table = en.terms[0].grid_table_on_axis()
    np.testing.assert_array_equal(
        np.asarray(res.indices[0]), np.asarray(viterbi(table, jnp.asarray(1 / (2 * 0.05**2)), jnp.asarray(energy)))
    )
    assert _rmse(res.bands[0], band) < 0.25 * float(energy[1] - energy[0])
    # without site terms there is nothing discrete to do: refinement only
    smooth_only = Smoothness(0.05) + Curvature(0.05)
    start = jnp.asarray(band[None] + 0.01 * np.sin(7 * k), jnp.float32)
    res = solve(Default(refine=GradientMAP("adam", learning_rate=1e-3, max_steps=50)), smooth_only, start,
                grid=jnp.asarray(energy))
    assert res.indices is None and float(res.energy) < float(smooth_only(start))
