"""Closed-form Hessian diagonals of the non-site terms agree with the Hessian from autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffbands as db
from diffbands._uncertainty import _probe_diag, _rest_hessian_diag
from diffbands.energy import Curvature, FeatureExclusion, Smoothness


def _autodiff_diag(term, bands):
    n = bands.size
    h = jax.hessian(lambda x: term(x.reshape(bands.shape)))(bands.ravel())
    return np.diag(np.asarray(h).reshape(n, n)).reshape(bands.shape)


TERMS = {
    "smoothness": lambda: Smoothness(0.1),
    "smoothness_per_band": lambda: Smoothness(jnp.array([0.05, 0.1, 0.2])),
    "curvature": lambda: Curvature(jnp.array([0.3, 0.2, 0.1])),
    "exclusion": lambda: FeatureExclusion(0.04, 1.5),
    "exclusion_pairs": lambda: FeatureExclusion(0.04, 1.5, pair_weights=np.array(
        [[0, 1.0, 0.0], [0, 0, 2.0], [0, 0, 0]])),
}


@pytest.mark.parametrize("name", sorted(TERMS))
@pytest.mark.parametrize("k_shape", [(7,), (5, 4), (1, 6)])
def test_closed_form_diagonal_matches_autodiff(name, k_shape):
    term = TERMS[name]()
    # three bands, two of them close (so the exclusion's curvature changes sign between pairs)
    rng = np.random.default_rng(0)
    base = np.array([-0.5, -0.53, -0.9]).reshape((3,) + (1,) * len(k_shape))
    bands = jnp.asarray(base + 0.03 * rng.standard_normal((3,) + k_shape), jnp.float32)
    got = np.asarray(term.hessian_diag(bands))
    want = _autodiff_diag(term, bands)
    assert got.shape == bands.shape
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-3 * np.abs(want).max())


def test_uncertainty_diagonal_same_as_probing():
    """band_uncertainty's diagonal (closed forms) equals the probed one it replaced."""
    rng = np.random.default_rng(1)
    bands = jnp.asarray(np.array([-0.5, -0.55]).reshape(2, 1, 1) + 0.02 * rng.standard_normal((2, 6, 5)),
                        jnp.float32)
    rest = Smoothness(0.1) + 2.0 * FeatureExclusion(0.05, 1.0) + Curvature(0.5)
    closed = np.asarray(_rest_hessian_diag(rest, bands))
    probed = np.asarray(_probe_diag(rest, bands, jnp.zeros_like(bands), 3))
    np.testing.assert_allclose(closed, probed, rtol=1e-4, atol=1e-3)
    # a term without a closed form is still probed, and added to the closed ones
    class Quartic(db.energy.AbstractTerm):
        def __call__(self, b):
            return jnp.sum(b**4)

    mixed = np.asarray(_rest_hessian_diag(rest + Quartic(), bands))
    np.testing.assert_allclose(mixed, probed + 12 * np.asarray(bands) ** 2, rtol=1e-4, atol=1e-3)
