"""Working memory of the energy terms that a 14-band gradient solve evaluates (issue 7).

The compiled programs' temporary buffers are read from XLA's own accounting (``memory_analysis``), which is
deterministic for a given program, so these are assertions about the program, not timings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffbands as db
from diffbands.energy import FeatureExclusion, IntensityLikelihood, Smoothness, TheoryPrior


def _bandmap(k_shape, n_e, seed=0, uniform=True):
    r = np.random.default_rng(seed)
    axis = np.linspace(-3.0, 0.5, n_e) if uniform else np.sort(r.uniform(-3.0, 0.5, n_e))
    coords = [np.linspace(-1, 1, n) for n in k_shape] + [axis]
    return db.BandMap(r.random((*k_shape, n_e)) + 0.05, coords)


@pytest.mark.parametrize("interp", ["linear", "cubic", "local-cubic"])
@pytest.mark.parametrize("uniform", [True, False])
def test_likelihood_sum_is_the_sum_of_site_costs(interp, uniform):
    """The band-at-a-time ``__call__`` gives the per-site costs' sum and gradient, also under ``vmap``."""
    with jax.enable_x64(True):
        bm = _bandmap((6, 5), 40, uniform=uniform)
        term = IntensityLikelihood(bm, interp=interp)
        r = np.random.default_rng(1)
        bands = jnp.asarray(r.uniform(-3.2, 0.6, (3, 6, 5)))  # a few positions beyond the axis (clamped)

        def by_site(e):
            return jnp.sum(jax.vmap(term.site_energy)(jnp.arange(e.shape[0]), e))

        value, grad = jax.value_and_grad(term)(bands)
        want, want_grad = jax.value_and_grad(by_site)(bands)
        np.testing.assert_allclose(value, want, rtol=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)
        batch = jnp.stack([bands, bands + 0.01])
        np.testing.assert_allclose(jax.vmap(term)(batch), [want, by_site(bands + 0.01)], rtol=1e-12)
        # second derivatives go through the rematerialised band loop too
        v = jnp.asarray(r.normal(size=bands.shape))
        hvp = jax.jvp(jax.grad(term), (bands,), (v,))[1]
        np.testing.assert_allclose(hvp, jax.jvp(jax.grad(by_site), (bands,), (v,))[1], rtol=1e-8, atol=1e-10)


def _temp_bytes(fn, *args) -> int:
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_gradient_of_the_default_energy_needs_a_few_band_arrays():
    """Value and gradient of likelihood + smoothness + theory prior + exclusion for 14 bands need a few
    arrays the size of the bands, not one per band pair or per interpolation knot (before: about 25)."""
    bm = _bandmap((48, 40), 120)
    bands = jnp.asarray(np.linspace(-2.5, -0.2, 14)[:, None, None] + np.zeros((14, 48, 40)), jnp.float32)
    energy = (IntensityLikelihood(bm, interp="local-cubic") + Smoothness(0.1) + TheoryPrior(bands, 0.3)
              + FeatureExclusion(0.035, 1.0))
    temp = _temp_bytes(lambda e, b: jax.value_and_grad(lambda x: e(x))(b), energy, bands)
    if temp == 0:
        pytest.fail("XLA reported no temporary memory at all; the accounting is unavailable on this backend")
    assert temp <= 10 * bands.nbytes, f"{temp / bands.nbytes:.1f} band arrays of temporaries"
    excl = _temp_bytes(lambda e, b: e(b), FeatureExclusion(0.035, 1.0), bands)
    assert excl <= 2 * bands.nbytes, f"exclusion value: {excl / bands.nbytes:.1f} band arrays"


def test_private_copy_is_aligned_and_independent():
    """The BandMap's copy starts on a 64-byte boundary (so XLA adopts it instead of copying it again) and
    does not alias the caller's array."""
    from diffbands._data import _aligned_copy

    arr = np.arange(3 * 5 * 7, dtype=np.float32).reshape(3, 5, 7)[:, :, 1:]  # not contiguous
    out = _aligned_copy(arr)
    assert out.ctypes.data % 64 == 0 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)
    bm = db.BandMap(arr, [np.arange(3.0), np.arange(5.0), np.arange(6.0)])
    arr[...] = -1.0
    assert float(np.min(np.asarray(bm.intensity))) >= 0.0


def test_memory_is_released_after_long_compilations_only(monkeypatch):
    from diffbands import _memory

    calls = []
    monkeypatch.setattr(_memory, "_TRIM", lambda pad: calls.append(pad))
    _memory._after_compile(_memory._COMPILE_EVENT, 2.0, fun_name="f")
    _memory._after_compile(_memory._COMPILE_EVENT, 0.01, fun_name="f")
    _memory._after_compile("/jax/some/other_event", 5.0)
    assert calls == [0]
    assert _memory._LISTENING  # installed when diffbands was imported
