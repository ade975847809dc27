r"""Band decomposition: hexike coefficients, approximation error, compression, distances between band sets.

With the hexikes :math:`H_j` orthonormal over the ``N`` pixels of the Brillouin zone
(:math:`\frac1N\sum_k H_i H_j = \delta_{ij}`), a band's coefficients are the projections
:math:`c_{bj} = \frac1N \sum_{k\in BZ} E_b(k) H_j(k)` (eV, the RMS of each term), the reconstruction with the
first ``m`` terms is :math:`\sum_{j\le m} c_{bj} H_j`, and its RMS error over the BZ is non-increasing in ``m``.
"""

from __future__ import annotations

from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._data import Bands
from .._errors import ShapeError, ValidationError
from ._bases import _positive_int, hexike_basis

__all__ = ["BandDistances", "HexikeDecomposition", "compression_ratio", "distance_matrix", "hexike_decompose"]


class HexikeDecomposition(eqx.Module):
    """Hexike coefficients of bands within the Brillouin zone.

    ``coeffs`` ``(n_bands, n_terms)`` (eV; Noll order ``1..n_terms``), ``reconstruction``
    ``(n_bands, *k_shape)`` with all terms (0 outside the BZ), ``rms_error`` ``(n_bands, n_terms)``: the RMS
    over the BZ of ``band - reconstruction with the first m terms`` for ``m = 1..n_terms`` (eV),
    ``mask`` the BZ pixels used ``(*k_shape)``, ``basis`` ``(n_terms, *k_shape)``.
    """

    coeffs: jax.Array
    reconstruction: jax.Array
    rms_error: jax.Array
    mask: jax.Array
    basis: jax.Array

    @property
    def n_terms(self) -> int:
        return self.coeffs.shape[1]

    def mean_rms_error(self) -> jax.Array:
        """The RMS error vs number of terms, averaged (in quadrature) over bands: ``(n_terms,)``."""
        return jnp.sqrt(jnp.mean(self.rms_error**2, axis=0))


def _band_array(bands, kx, ky):
    if isinstance(bands, Bands):
        if len(bands.coords) != 2:
            raise ShapeError("bands", f"must be a (kx, ky) volume, got dims {bands.dims}")
        kx = bands.coords[0] if kx is None else kx
        ky = bands.coords[1] if ky is None else ky
        valid = None if bands.mask is None else np.asarray(bands.mask)
        arr = np.asarray(bands.energies, dtype=np.float64)
    else:
        arr = np.asarray(bands, dtype=np.float64)
        valid = None
        if kx is None or ky is None:
            raise ValidationError("kx/ky", "are required when `bands` is an array")
    if arr.ndim != 3:
        raise ShapeError("bands", f"must have shape (n_bands, n_kx, n_ky), got {arr.shape}")
    return arr, np.asarray(kx, dtype=np.float64), np.asarray(ky, dtype=np.float64), valid


def hexike_decompose(bands, a, n_terms: int, *, kx=None, ky=None, mask=None) -> HexikeDecomposition:
    """Decompose bands ``(n_bands, n_kx, n_ky)`` into the first ``n_terms`` hexikes of the BZ of lattice
    constant ``a``.

    ``bands`` is a :class:`~diffbands.Bands` volume (its axes are used) or an array with ``kx``, ``ky``.
    ``mask`` (optional, ``(n_kx, n_ky)``) restricts the pixels (default: the first BZ); the basis is
    orthonormalised on exactly these pixels. Entries invalid in a ``Bands`` mask must lie outside it.
    """
    arr, kx, ky, valid = _band_array(bands, kx, ky)
    n_terms = _positive_int("n_terms", n_terms)
    basis, m = hexike_basis(kx, ky, a, n_terms, mask=mask, return_mask=True)
    m_np = np.asarray(m)
    if valid is not None and not np.all(valid[:, m_np]):
        raise ValidationError("bands", "has masked-out (invalid) entries inside the decomposition mask")
    if not np.all(np.isfinite(arr[:, m_np])):
        raise ValidationError("bands", "must be finite inside the decomposition mask")
    E = jnp.asarray(np.where(m_np[None], arr, 0.0), dtype=basis.dtype)
    return _decompose(E, basis, m)


@jax.jit
def _decompose(E, basis, mask):
    n_pix = jnp.sum(mask)
    coeffs = jnp.tensordot(E, basis, axes=((1, 2), (1, 2))) / n_pix  # (n_bands, n_terms)

    def step(residual, xs):
        c, h = xs  # (n_bands,), (nx, ny)
        residual = residual - c[:, None, None] * h
        err = jnp.sqrt(jnp.sum(jnp.where(mask, residual, 0.0) ** 2, axis=(1, 2)) / n_pix)
        return residual, err

    residual, errs = jax.lax.scan(step, E, (coeffs.T, basis))
    reconstruction = jnp.where(mask, E - residual, 0.0)
    return HexikeDecomposition(coeffs, reconstruction, errs.T, mask, basis)


def compression_ratio(volume_shape, n_bands: int, n_terms: int) -> float:
    """``prod(volume_shape) / (n_bands * n_terms)``: data voxels per stored hexike coefficient.

    E.g. a ``256 x 256 x 470`` volume and 14 bands of 400 terms: about 5500."""
    shape = tuple(_positive_int("volume_shape", s) for s in np.atleast_1d(np.asarray(volume_shape)).tolist())
    return float(np.prod(shape, dtype=np.float64)) / (_positive_int("n_bands", n_bands) * _positive_int("n_terms", n_terms))


class BandDistances(eqx.Module):
    """Distances between named band sets (all in one k grid and band count).

    ``per_band`` ``(n_sets, n_sets, n_bands)`` and ``mean`` ``(n_sets, n_sets)`` are RMS distances in meV
    (``mean`` is the quadrature mean over bands), after removing each band's rigid offset (its mean difference)
    when asked; ``similarity`` ``(n_sets, n_sets)`` is the cosine similarity of the mean-removed bands
    (all bands stacked), 1 for identical shapes. ``names`` orders the rows and columns.
    """

    per_band: jax.Array
    mean: jax.Array
    similarity: jax.Array
    names: tuple[str, ...] = eqx.field(static=True)
    remove_offset: bool = eqx.field(static=True)


def distance_matrix(band_sets: Mapping[str, object], mask=None, remove_offset: bool = True) -> BandDistances:
    """RMS distances (meV) and similarities between band sets ``{name: Bands or (n_bands, *k_shape) array}``.

    ``mask`` (``k_shape`` or ``(n_bands, *k_shape)`` bool, optional) selects the pixels compared (e.g. the
    BZ); invalid entries of a ``Bands`` mask are excluded too. ``remove_offset=True`` subtracts the per-band
    mean difference (rigid offsets are not counted as distance).
    """
    if not isinstance(band_sets, Mapping) or len(band_sets) < 1:
        raise ValidationError("band_sets", "must be a non-empty mapping name -> bands")
    names = tuple(str(n) for n in band_sets)
    arrays, valid = [], None
    for name, b in band_sets.items():
        if isinstance(b, Bands):
            if b.mask is not None:
                valid = np.asarray(b.mask) if valid is None else valid & np.asarray(b.mask)
            b = np.where(np.asarray(b.mask), np.asarray(b.energies), 0.0) if b.mask is not None else b.energies
        arr = np.asarray(b, dtype=np.float64)
        if arrays and arr.shape != arrays[0].shape:
            raise ShapeError(f"band_sets['{name}']", f"shape {arr.shape} differs from {arrays[0].shape}")
        if arr.ndim < 2:
            raise ShapeError(f"band_sets['{name}']", f"must have shape (n_bands, *k_shape), got {arr.shape}")
        arrays.append(arr)
    shape = arrays[0].shape
    w = np.ones(shape, dtype=bool) if valid is None else valid.copy()
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape == shape[1:]:
            m = np.broadcast_to(m, shape)
        if m.shape != shape:
            raise ShapeError("mask", f"shape {m.shape} fits neither k_shape {shape[1:]} nor {shape}")
        w &= m
    for name, arr in zip(names, arrays):
        if not np.all(np.isfinite(arr[w])):
            raise ValidationError(f"band_sets['{name}']", "must be finite at the compared pixels")
    if not np.all(w.reshape(shape[0], -1).any(axis=1)):
        raise ValidationError("mask", "leaves a band with no pixel to compare")
    X = jnp.asarray(np.stack([np.where(w, a, 0.0) for a in arrays]), dtype=float)
    per_band, mean, sim = _distances(X, jnp.asarray(w), remove_offset)
    return BandDistances(per_band, mean, sim, names, bool(remove_offset))


@eqx.filter_jit
def _distances(X, w, remove_offset: bool):
    nb = X.shape[1]
    wf = w.astype(X.dtype).reshape(nb, -1)
    Xf = X.reshape(X.shape[0], nb, -1)
    count = jnp.sum(wf, axis=1)
    D = Xf[:, None] - Xf[None]  # (S, S, nb, n_k)
    if remove_offset:
        D = D - (jnp.sum(D * wf, axis=-1) / count)[..., None]
    per_band = 1e3 * jnp.sqrt(jnp.sum(wf * D**2, axis=-1) / count)
    mean = jnp.sqrt(jnp.mean(per_band**2, axis=-1))
    centred = (Xf - (jnp.sum(Xf * wf, axis=-1) / count)[..., None]) * wf
    flat = centred.reshape(X.shape[0], -1)
    norms = jnp.linalg.norm(flat, axis=1)
    sim = (flat @ flat.T) / jnp.maximum(norms[:, None] * norms[None], jnp.finfo(X.dtype).tiny)
    return per_band, mean, sim
