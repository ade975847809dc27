"""Validation and behaviour of the BandMap / Bands containers."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffbands as db


def axes3(n=(4, 5, 6)):
    return [np.linspace(-1, 1, n[0]), np.linspace(-1, 1.5, n[1]), np.linspace(-2, 0, n[2])]


def test_bandmap_basic_volume_and_cut():
    bm = db.BandMap(np.random.default_rng(0).random((4, 5, 6)), axes3())
    assert bm.dims == ("kx", "ky", "E")
    assert bm.units == ("1/A", "1/A", "eV")
    assert bm.k_shape == (4, 5)
    assert bm.intensity.dtype == jnp.float32
    assert all(bm.uniform)
    cut = db.BandMap(np.ones((7, 3)), [np.arange(7.0), np.arange(3.0)])
    assert cut.dims == ("k", "E") and cut.k_shape == (7,)


def test_bandmap_coords_as_mapping():
    ax = axes3()
    bm = db.BandMap(np.ones((4, 5, 6)), {"E": ax[2], "ky": ax[1], "kx": ax[0]})
    np.testing.assert_allclose(bm.coord("ky"), ax[1], rtol=1e-6)


def test_descending_energy_is_normalised():
    rng = np.random.default_rng(1)
    vol = rng.random((4, 5, 6))
    ax = axes3()
    bm = db.BandMap(vol, [ax[0], ax[1], ax[2][::-1]])
    assert np.all(np.diff(np.asarray(bm.energy)) > 0)
    # the value at the (new) first energy is the one the user gave at the last position
    np.testing.assert_allclose(np.asarray(bm.intensity)[..., 0], vol[..., -1], rtol=1e-6)


def test_integer_counts_are_valid():
    counts = np.random.default_rng(2).poisson(5, size=(4, 5, 6)).astype(np.int32)
    bm = db.BandMap(counts, axes3())
    assert bm.intensity.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(bm.intensity), counts.astype(np.float32))


def test_nonuniform_axis_is_recorded():
    ax = axes3()
    ax[2] = np.array([-2.0, -1.9, -1.7, -1.0, -0.5, 0.0])
    bm = db.BandMap(np.ones((4, 5, 6)), ax)
    assert bm.uniform == (True, True, False)


@pytest.mark.parametrize(
    "make, exc, field",
    [
        (lambda: db.BandMap(np.ones((4, 6, 6)), axes3()), db.ShapeError, "coords['ky']"),
        (lambda: db.BandMap(np.full((4, 5, 6), np.nan), axes3()), db.NonFiniteError, "intensity"),
        (lambda: db.BandMap(np.full((4, 5, 6), np.inf), axes3()), db.NonFiniteError, "intensity"),
        (lambda: db.BandMap(-np.ones((4, 5, 6)), axes3()), db.ValidationError, "intensity"),
        (lambda: db.BandMap(np.ones((4, 5, 6)) * 1j, axes3()), db.DTypeError, "intensity"),
        (lambda: db.BandMap(np.array([["a"]]), [[0.0], [0.0]]), db.DTypeError, "intensity"),
        (lambda: db.BandMap(np.ones((1, 5, 6)), [[0.0], axes3()[1], axes3()[2]]), db.AxisError, "coords['kx']"),
        (lambda: db.BandMap(np.ones((0, 5, 6)), [[], axes3()[1], axes3()[2]]), db.AxisError, "coords['kx']"),
        (
            lambda: db.BandMap(np.ones((4, 5, 6)), [axes3()[0][::-1], axes3()[1], axes3()[2]]),
            db.AxisError,
            "coords['kx']",
        ),
        (
            lambda: db.BandMap(np.ones((4, 5, 6)), [axes3()[0], [0, 1, 1, 2, 3], axes3()[2]]),
            db.AxisError,
            "coords['ky']",
        ),
        (
            lambda: db.BandMap(np.ones((4, 5, 6)), [axes3()[0], axes3()[1], [0, 1, np.nan, 2, 3, 4]]),
            db.NonFiniteError,
            "coords['E']",
        ),
        (lambda: db.BandMap(np.ones((4, 5, 6)), axes3(), dims=("kx", "E")), db.ShapeError, "dims"),
        (lambda: db.BandMap(np.ones((4, 5, 6)), axes3(), dims=("kx", "kx", "E")), db.ValidationError, "dims"),
        (lambda: db.BandMap(np.ones((4, 5, 6)), axes3()[:2]), db.ShapeError, "coords"),
        (lambda: db.BandMap(np.ones(6), [axes3()[2]]), db.ShapeError, "intensity"),
        (lambda: db.BandMap(np.ones((4, 5, 6)), axes3(), metadata={"x": object()}), db.ValidationError, "metadata"),
        (lambda: db.Bands(np.ones((2, 4, 6)), axes3()[:2]), db.ShapeError, "coords['ky']"),
        (lambda: db.Bands(np.full((2, 4, 5), np.nan), axes3()[:2]), db.NonFiniteError, "energies"),
        (lambda: db.Bands(np.ones((2, 4, 5)) + 0j, axes3()[:2]), db.DTypeError, "energies"),
        (lambda: db.Bands(np.ones((0, 4, 5)), axes3()[:2]), db.ShapeError, "energies"),
        (lambda: db.Bands(np.ones((2, 4, 5)), axes3()[:2], mask=np.ones((2, 4))), db.ShapeError, "mask"),
        (lambda: db.Bands(np.ones((2, 4, 5)), axes3()[:2], labels=["a"]), db.ShapeError, "labels"),
    ],
)
def test_validation_errors_name_the_field(make, exc, field):
    with pytest.raises(exc) as info:
        make()
    assert isinstance(info.value, db.DiffbandsError)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_negative_intensity_allowed_on_request():
    bm = db.BandMap(-np.ones((4, 5, 6)), axes3(), allow_negative=True)
    assert float(bm.intensity.min()) == -1.0


def test_bands_mask_allows_nan_where_invalid():
    e = np.zeros((2, 4, 5))
    e[1, 0, 0] = np.nan
    mask = np.ones_like(e, dtype=bool)
    mask[1, 0, 0] = False
    b = db.Bands(e, axes3()[:2], mask=mask, labels=["top", "second"])
    assert b.labels == ("top", "second")
    with pytest.raises(db.NonFiniteError):
        db.Bands(e, axes3()[:2], mask=np.ones_like(e, dtype=bool))


def test_bands_select_and_matches():
    ax = axes3()
    b = db.Bands(np.arange(3 * 4 * 5, dtype=float).reshape(3, 4, 5), ax[:2])
    sub = b.select([0, 2])
    assert sub.n_bands == 2 and sub.labels == ("band 0", "band 2")
    bm = db.BandMap(np.ones((4, 5, 6)), ax)
    assert b.matches(bm)
    other = db.BandMap(np.ones((4, 5, 6)), [ax[0] * 2, ax[1], ax[2]])
    assert not b.matches(other)


def test_containers_are_pytrees_that_jit_and_vmap():
    bm = db.BandMap(np.random.default_rng(3).random((4, 5, 6)), axes3())
    total = eqx.filter_jit(lambda m: jnp.sum(m.intensity))(bm)
    np.testing.assert_allclose(total, np.asarray(bm.intensity).sum(), rtol=1e-5)
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), bm, bm)
    sums = eqx.filter_vmap(lambda m: jnp.sum(m.intensity))(stacked)
    assert sums.shape == (2,)
    grads = jax.grad(lambda m: jnp.sum(m.intensity**2))(bm)
    np.testing.assert_allclose(grads.intensity, 2 * np.asarray(bm.intensity), rtol=1e-6)


def test_metadata_is_static_and_hashable():
    bm = db.BandMap(np.ones((4, 5, 6)), axes3(), metadata={"sample": "WSe2", "hv": 21.2})
    assert bm.metadata["sample"] == "WSe2"
    assert hash(bm.metadata) == hash(db.FrozenMeta({"hv": 21.2, "sample": "WSe2"}))
    leaves = jax.tree_util.tree_leaves(bm)
    assert all(isinstance(x, jax.Array) for x in leaves)


def test_float64_when_x64_enabled():
    with jax.enable_x64(True):
        bm = db.BandMap(np.ones((4, 5, 6)), axes3())
        assert bm.intensity.dtype == jnp.float64
