"""Memory of the solvers (issue 7): one likelihood table for all bands, no hidden volume-sized copies.

The memory sizes asserted here are XLA's own accounting of a compiled function (``memory_analysis``),
which does not depend on the machine's load; the peak resident memory of whole runs is measured by
``benchmarks/memory_scale.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffbands as db
from diffbands import solvers
from diffbands._memory import estimate_solve_bytes
from diffbands._uncertainty import _n_probes, _probe
from diffbands.energy import AbstractSiteTerm, IntensityLikelihood, Smoothness, TheoryPrior
from diffbands.energy._interp import cubic_slopes, interp_grid, interp_grid_sites
from diffbands.solvers import CheckerboardICM, solve
from diffbands.solvers._icm import _colour_sites


def _volume(shape=(17, 12), n_e=47, seed=0):
    rng = np.random.default_rng(seed)
    e = np.linspace(-2.0, 0.0, n_e).astype(np.float32)
    kx = np.linspace(-1, 1, shape[0])[:, None]
    band = (-1.0 + 0.4 * np.cos(2 * kx) * np.ones(shape)).astype(np.float32)
    vol = np.exp(-((e - band[..., None]) ** 2) / (2 * 0.08**2)) + 0.1 * rng.random((*shape, n_e))
    return vol.astype(np.float32), e, band


class _TabulatedPrior(AbstractSiteTerm):
    """The theory prior without its pointwise form: the ICM must tabulate it per band (the old way)."""

    prior: TheoryPrior

    def site_energy(self, band, values):
        return self.prior.site_energy(band, values)

    def grid_table(self, band, grid, k_shape):
        return self.prior.grid_table(band, grid, k_shape)


def test_icm_pointwise_prior_matches_tabulated_prior_bit_for_bit():
    vol, e, band = _volume(shape=(9, 8), n_e=32)
    theory = np.stack([band, band - 0.3, band + 0.25]) + np.float32(0.04)
    b0 = jnp.asarray(theory + np.float32(0.05))
    prior = TheoryPrior(theory, jnp.array([0.2, 0.3, 0.5]))
    lik = IntensityLikelihood(vol, energy=e)
    for band_batch, max_shift, loop in ((1, 0.3, True), (None, 0.0, False), (2, 0.0, True)):
        s = CheckerboardICM(max_epochs=15, band_batch=band_batch, max_shift=max_shift, energy_loop=loop)
        fast = solve(s, lik + Smoothness(0.1) + 0.5 * prior, b0)
        slow = solve(s, lik + Smoothness(0.1) + 0.5 * _TabulatedPrior(prior), b0)
        np.testing.assert_array_equal(np.asarray(fast.indices), np.asarray(slow.indices))
        np.testing.assert_array_equal(np.asarray(fast.trace), np.asarray(slow.trace))
        assert int(fast.n_steps) > 1


def test_icm_state_holds_one_table_for_all_bands():
    vol, e, band = _volume(n_e=128)
    grid = jnp.asarray(e)
    sizes = {}
    for n_bands in (1, 8):
        b0 = jnp.asarray(np.stack([band + 0.01 * i for i in range(n_bands)]))
        en = IntensityLikelihood(vol, energy=e) + Smoothness(0.1) + TheoryPrior(np.asarray(b0), 0.3)
        state = CheckerboardICM().init(en, b0, grid)
        for colour, sites in zip(state.unary, _colour_sites(band.shape)):
            assert colour.tables is None  # no per-band table: the prior is evaluated on the fly
            assert colour.shared.shape == (e.size, sites.size)
        init = jax.jit(lambda en, b: CheckerboardICM().init(en, b, grid))
        mem = init.lower(en, b0).compile().memory_analysis()
        sizes[n_bands] = mem.temp_size_in_bytes + mem.output_size_in_bytes
    # per-band tables would make this ~8x; what grows with the bands is (n_bands, n_k) bookkeeping only
    assert sizes[8] < 1.3 * sizes[1], sizes
    assert sizes[1] >= vol.nbytes  # the shared table itself is there


@pytest.mark.parametrize("cubic", [False, True])
@pytest.mark.parametrize("n_grid", [47, 31])
def test_interp_grid_sites_equals_interp_grid(cubic, n_grid):
    vol, e, _ = _volume()
    table = jnp.log(jnp.asarray(vol))
    axis = jnp.asarray(e)
    slopes = cubic_slopes(table, axis) if cubic else None
    grid = axis if n_grid == e.size else jnp.linspace(-2.1, 0.05, n_grid, dtype=jnp.float32)
    full = np.asarray(interp_grid(table, axis, grid, slopes)).reshape(-1, n_grid)
    rows = np.array([0, 5, 7, 100, 203], dtype=np.int32)
    flat = table.reshape(-1, e.size)
    got = interp_grid_sites(flat, axis, grid, jnp.asarray(rows), None if slopes is None else slopes.reshape(-1, e.size))
    if n_grid == e.size:  # on the axis: the stored values exactly
        np.testing.assert_array_equal(np.asarray(got), full[rows].T)
    else:  # between knots: the same formula, up to float rounding (fusion may differ)
        np.testing.assert_allclose(np.asarray(got), full[rows].T, rtol=1e-6, atol=1e-6)


def test_probes_partition_the_band_momentum_points():
    shape = (3, 7, 5)
    for period in (3, 8):
        total = sum(np.asarray(_probe(jnp.asarray(i), shape, period, jnp.float32)) for i in range(_n_probes(shape, period)))
        np.testing.assert_array_equal(total, np.ones(shape))  # every point in exactly one probe


def test_bandmap_keeps_its_own_copy():
    vol, e, _ = _volume()
    k = [np.linspace(-1, 1, n) for n in vol.shape[:2]]
    bm = db.BandMap(vol, k + [e])
    lik = IntensityLikelihood(vol, energy=e)
    before = np.asarray(bm.intensity).copy(), np.asarray(lik.table).copy()
    vol[...] = 123.0  # the caller reuses its buffer
    np.testing.assert_array_equal(np.asarray(bm.intensity), before[0])
    np.testing.assert_array_equal(np.asarray(lik.table), before[1])


def test_memory_estimate_counts_per_band_tables_only_when_needed():
    vol, e, band = _volume()
    b0 = np.stack([band] * 6)
    shape, n_k = b0.shape, band.size
    table = n_k * e.size * 4
    lik = IntensityLikelihood(vol, energy=e)
    prior = TheoryPrior(b0, 0.3)
    icm = CheckerboardICM()
    pointwise = estimate_solve_bytes(icm, shape, e.size, 4, lik + Smoothness(0.1) + prior)
    tabulated = estimate_solve_bytes(icm, shape, e.size, 4, lik + Smoothness(0.1) + _TabulatedPrior(prior))
    unknown = estimate_solve_bytes(icm, shape, e.size, 4)
    assert table <= pointwise < 3 * table + 50 * 6 * n_k * 4
    assert tabulated >= 6 * table and tabulated == unknown + 2 * table
    default = estimate_solve_bytes(solvers.default_solver(), shape, e.size, 4, lik + Smoothness(0.1) + prior)
    assert default == pointwise
