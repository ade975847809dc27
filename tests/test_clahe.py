"""Tests of diffbands.preprocess.mclahe (multidimensional CLAHE) against a plain numpy/scipy reference."""

import itertools

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from diffbands import BandMap
from diffbands._errors import DiffbandsError, ValidationError
from diffbands.preprocess import mclahe


def _reference(x, kernel, n_bins, clip_limit):
    """MCLAHE written out plainly: loops over blocks, np.histogram, scipy's multilinear map_coordinates."""
    x = np.asarray(x, np.float64)
    v = (x - x.min()) / (x.max() - x.min())
    b = np.minimum((v * n_bins).astype(int), n_bins - 1)
    nb = [-(-s // k) for s, k in zip(x.shape, kernel)]
    maps = np.zeros(nb + [n_bins])
    clip = clip_limit * np.prod(kernel)
    for j in itertools.product(*(range(n) for n in nb)):
        sl = tuple(slice(i * k, (i + 1) * k) for i, k in zip(j, kernel))
        h = np.bincount(b[sl].ravel(), minlength=n_bins).astype(float)
        h = np.minimum(h, clip) + np.maximum(h - clip, 0).sum() / n_bins
        maps[j] = np.cumsum(h) / h.sum()
    u = [np.clip((np.arange(s) + 0.5) / k - 0.5, 0, n - 1) for s, k, n in zip(x.shape, kernel, nb)]
    grids = np.meshgrid(*u, indexing="ij")
    coords = np.stack([g.ravel() for g in grids] + [b.ravel().astype(float)])
    return map_coordinates(maps, coords, order=1, mode="nearest").reshape(x.shape), maps, b


@pytest.mark.parametrize("shape,kernel", [((60,), (12,)), ((40, 36), (10, 12)), ((16, 15, 8), (4, 5, 4))])
def test_output_range_and_numpy_reference(shape, kernel):
    rng = np.random.default_rng(len(shape))
    x = rng.gamma(2.0, size=shape).astype(np.float32)
    out = np.asarray(mclahe(x, kernel, n_bins=32, clip_limit=0.05))
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    ref, _, _ = _reference(x, kernel, 32, 0.05)
    np.testing.assert_allclose(out, ref, atol=2e-5)


def test_large_clip_limit_is_histogram_equalisation_per_block():
    rng = np.random.default_rng(3)
    x = np.exp(rng.standard_normal((22, 18))).astype(np.float32)
    out = np.asarray(mclahe(x, (11, 9), n_bins=64, clip_limit=1e3))
    v = (x - x.min()) / (x.max() - x.min())
    bins = np.minimum((v * 64).astype(int), 63)
    # in the outer quarter of each corner block (up to its centre voxel) no neighbour is interpolated: the
    # output is that block's plain histogram equalisation, the fraction of its voxels in lower or equal bins
    for bi, bj in itertools.product(range(2), range(2)):
        blk = bins[11 * bi:11 * bi + 11, 9 * bj:9 * bj + 9]
        rows = range(0, 6) if bi == 0 else range(16, 22)
        cols = range(0, 5) if bj == 0 else range(13, 18)
        for i, j in itertools.product(rows, cols):
            assert out[i, j] == pytest.approx(np.mean(blk <= bins[i, j]), abs=1e-6)
    # one block covering everything: exactly plain histogram equalisation, monotone in x
    whole = np.asarray(mclahe(x, x.shape, n_bins=64, clip_limit=1e3))
    np.testing.assert_allclose(whole, (bins[..., None, None] >= bins[None, None]).mean((-1, -2)), atol=1e-6)
    order = np.argsort(x.ravel())
    assert np.all(np.diff(whole.ravel()[order]) >= 0)
    # a vanishing clip limit flattens the histogram: the linear map (b + 1) / n_bins
    lin = np.asarray(mclahe(x, x.shape, n_bins=64, clip_limit=1e-7))
    np.testing.assert_allclose(lin, (bins + 1) / 64, atol=1e-5)


def test_constant_histogram_blocks_give_one_monotone_map():
    rng = np.random.default_rng(4)
    tile = rng.random((8, 8)).astype(np.float32)
    x = np.tile(tile, (4, 3))  # every block has the same histogram, so every map is the same
    out = np.asarray(mclahe(x, (8, 8), n_bins=32, clip_limit=0.03))
    order = np.argsort(x.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= -1e-6)  # monotone in the input everywhere
    assert np.allclose(out, np.tile(out[:8, :8], (4, 3)), atol=1e-6)
    # with clipping active, the map differs from plain equalisation
    plain = np.asarray(mclahe(x, (8, 8), n_bins=32, clip_limit=10.0))
    assert np.max(np.abs(out - plain)) > 0.02


def test_no_block_seams():
    # a smooth field whose histogram differs strongly between blocks
    i, j = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    x = (np.sin(i / 7.0) * np.cos(j / 9.0) + 0.02 * i).astype(np.float32)
    kernel = (16, 16)
    out = np.asarray(mclahe(x, kernel, n_bins=128, clip_limit=0.02))
    _, maps, b = _reference(x, kernel, 128, 0.02)
    nearest = maps[i // 16, j // 16, b]  # each voxel mapped by its own block only: seams
    d_out, d_near = np.abs(np.diff(out, axis=0)), np.abs(np.diff(nearest, axis=0))
    seam = np.arange(63) % 16 == 15  # differences across a block boundary (rows 15|16, 31|32, 47|48)
    assert d_near[seam].max() > 3 * d_near[~seam].max()  # the un-interpolated version has seams
    assert d_out[seam].max() < 1.5 * d_out[~seam].max()  # the interpolated one has none


def test_bandmap_in_bandmap_out_and_3d():
    rng = np.random.default_rng(5)
    inten = rng.poisson(5.0, size=(20, 18, 10)).astype(np.float32)
    bm = BandMap(inten, [np.linspace(-1, 1, 20), np.linspace(-1, 1, 18), np.linspace(-2, 0, 10)],
                 dims=("kx", "ky", "E"))  # fmt: skip
    out = mclahe(bm, (10, 9, 5), n_bins=16, clip_limit=0.1)
    assert isinstance(out, BandMap) and out.dims == bm.dims and out.shape == bm.shape
    np.testing.assert_allclose(np.asarray(out.coords[2]), np.asarray(bm.coords[2]))
    ref, _, _ = _reference(inten, (10, 9, 5), 16, 0.1)
    np.testing.assert_allclose(np.asarray(out.intensity), ref, atol=2e-5)
    # an int kernel applies to every axis; a kernel larger than the array is clamped to it
    np.testing.assert_allclose(np.asarray(mclahe(inten, 100, n_bins=16)), np.asarray(mclahe(inten, (20, 18, 10), n_bins=16)))


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(kernel_size=(4, 4, 4)), "kernel_size"),
        (dict(kernel_size=(4, 0)), "kernel_size"),
        (dict(kernel_size=(4, 2.5)), "kernel_size"),
        (dict(kernel_size=4, n_bins=1), "n_bins"),
        (dict(kernel_size=4, n_bins=3.0), "n_bins"),
        (dict(kernel_size=4, clip_limit=0.0), "clip_limit"),
        (dict(kernel_size=4, clip_limit=float("nan")), "clip_limit"),
        (dict(kernel_size=4, clip_limit="big"), "clip_limit"),
    ],
)
def test_bad_arguments(kwargs, field):
    x = np.ones((8, 8), np.float32)
    with pytest.raises(ValidationError, match=field):
        mclahe(x, **kwargs)


def test_bad_data():
    with pytest.raises(DiffbandsError, match="data"):
        mclahe(np.array([1.0, np.nan, 2.0]), 2)
    with pytest.raises(DiffbandsError, match="data"):
        mclahe(np.zeros((0, 3)), 2)
    # a constant array is valid: everything maps to one value in [0, 1]
    out = np.asarray(mclahe(np.full((6, 6), 3.0), 3))
    assert np.all((out >= 0) & (out <= 1)) and np.ptp(out) < 1e-6
