"""The local cubic interpolation of the likelihood (no slope table) and ICM reading the data in place."""

import jax.numpy as jnp
import numpy as np
import pytest

import diffbands as db
from diffbands import synth
from diffbands.energy import IntensityLikelihood, Smoothness, interp_local_cubic


@pytest.mark.parametrize("uniform", [True, False])
def test_local_cubic_is_exact_for_quadratics_and_interpolates_knots(uniform):
    """Slopes from the parabola through each knot and its neighbours: a quadratic in energy is reproduced
    exactly between the knots (uniform and non-uniform axes), and every knot is returned as stored."""
    axis = np.linspace(-1.0, 1.0, 12) if uniform else np.sort(np.r_[-1.0, 1.0, np.random.default_rng(0).uniform(-1, 1, 10)])
    coef = np.array([[0.3, -1.2, 2.0], [1.0, 0.5, -0.7]])  # two sites: c0 + c1 x + c2 x^2
    table = coef[:, :1] + coef[:, 1:2] * axis + coef[:, 2:] * axis**2
    x = np.array([-0.93, 0.41])
    got = interp_local_cubic(jnp.asarray(table), jnp.asarray(axis), jnp.asarray(x), uniform=uniform)
    want = coef[:, 0] + coef[:, 1] * x + coef[:, 2] * x**2
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
    at_knots = interp_local_cubic(jnp.asarray(table), jnp.asarray(axis), jnp.asarray(axis[[3, 7]]), uniform=uniform)
    np.testing.assert_allclose(np.asarray(at_knots), table[[0, 1], [3, 7]], atol=1e-6)


def test_icm_in_place_equals_the_copied_table():
    """ICM on the likelihood's own axis reads the k-major data in place; on the same grid given as a copy
    (a grid equal to the axis but not recognised as it) it builds the energy-major table: same answer."""
    k = np.linspace(-1, 1, 20)
    truth = db.Bands((-0.6 + 0.2 * np.cos(2 * k))[None], [k], dims=("k",))
    bm = synth.simulate(truth, np.linspace(-1.5, 0.0, 60), synth.Spectrometer(synth.Voigt(0.08, 0.03)), counts=200.0,
                        seed=3)
    energy = IntensityLikelihood(bm, interp="local-cubic") + Smoothness(0.05)
    init = truth.with_energies(np.asarray(truth.energies) + 0.1)
    in_place = db.reconstruct(energy, init, db.solvers.CheckerboardICM(max_epochs=30, in_place=True),
                              uncertainty=None)
    grid = np.asarray(bm.energy) + 0.0  # the same values, another array: tabulated, energy-major
    copied = db.reconstruct(energy, init, db.solvers.CheckerboardICM(max_epochs=30, in_place=True), grid=grid,
                            uncertainty=None)
    auto = db.reconstruct(energy, init, db.solvers.CheckerboardICM(max_epochs=30), uncertainty=None)  # small: copied
    np.testing.assert_array_equal(np.asarray(in_place.bands.energies), np.asarray(auto.bands.energies))
    np.testing.assert_array_equal(np.asarray(in_place.bands.energies), np.asarray(copied.bands.energies))
    err = np.abs(np.asarray(in_place.bands.energies) - np.asarray(truth.energies))
    assert np.sqrt(np.mean(err**2)) < 0.07  # from 0.1 eV off (single-site moves leave some at the ends)
