r"""A data-driven start when no theory exists: bands tracked along intensity ridges with exact chain DP.

:func:`track_peaks` turns a band map into a starting set of :class:`~diffbands.Bands`:

1. **Ridge strength.** The intensity is normalised, compressed (``x = (I / max I)^p``, ``p = power``) so that
   weak bands are not drowned by bright ones, and smoothed with a Gaussian of ``smooth`` pixels (momentum
   axes, energy). A band is a ridge of ``x``: along the direction across it ``x`` has a maximum, so the most
   negative eigenvalue :math:`\lambda_\min` of the Hessian of ``x`` (in pixel units, over all axes) is large
   and negative there, whatever the band's slope. The ridge strength is :math:`R = \max(0, -\lambda_\min)`
   (zero on flat background and on the convex flanks of a peak); unlike a plain energy maximum, it also
   sees steep bands, whose energy distribution curves are broad.
2. **One band at a time.** Each band is the exact minimiser, by :class:`~diffbands.solvers.ChainDP` (Viterbi
   on the energy grid), of :math:`-\sum_k \log \tilde R(k, E(k)) + \sum_k (E(k) - E(k+1))^2 / 2\eta^2`, with
   :math:`\tilde R` the remaining ridge strength normalised to 1 and floored at ``floor``: the path that
   collects the most ridge while staying continuous. Where no ridge is left (the band ends, or fades), the
   path just continues smoothly. The ridge within ``separation`` of the path is then removed,
   :math:`\tilde R \leftarrow \tilde R\,(1 - e^{-(E - E(k))^2 / 2 w^2})`, and the next band is searched.
3. **Which bands.** A point of a path is *visible* where the ridge it collected is at least ``threshold``
   times the strongest ridges of the map (the 90 % quantile over momenta of the
   largest ridge at each momentum), after a running majority vote over
   ``5`` neighbours along the chain (single noisy pixels neither make nor break a band). With
   ``n_bands=None`` bands are taken while at least ``min_coverage`` of their points are visible ("every
   clearly visible band", at most ``max_bands``); with ``n_bands`` exactly that many are taken (an error
   if one of them is not visible anywhere). The result's ``mask`` is the visibility.
4. **Sub-grid energies** by a parabola through the smoothed ``x`` around each path point, and the bands
   ordered by their mean energy over visible points, band 0 the topmost.

**Volumes** ``(kx, ky, E)`` are tracked on a spanning path of the momentum grid: the rows ``kx = const``
joined in serpentine order (row 0 forward, row 1 backward, ...), so consecutive points of the chain are
always grid neighbours and one Viterbi pass covers the whole grid. Neighbours across rows are not coupled
in this start (a band that is absent on a whole row can jump there); a 2-D reconstruction
(:func:`diffbands.reconstruct` with :func:`diffbands.default_energy`) from this start adds that coupling.

Everything is vectorised over momenta (one compiled Viterbi per band; the Python loop runs over bands only).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._data import BandMap, Bands
from ._errors import ValidationError
from .energy import IntensityLikelihood, Smoothness
from .preprocess._ops import _smooth_axis
from .solvers import ChainDP, solve

__all__ = ["ridge_strength", "track_peaks"]

_VOTE = 5  # running-majority window (chain points) of the visibility


def _positive(field: str, value, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(field, f"must be a number, got {value!r}") from None
    if not (np.isfinite(v) and (v >= 0 if allow_zero else v > 0)):
        raise ValidationError(field, f"must be finite and {'>=' if allow_zero else '>'} 0, got {value!r}")
    return v


def _smooth_pairs(smooth, ndim: int) -> tuple[float, ...]:
    """``smooth`` (a scalar or ``(sigma_k, sigma_E)`` in pixels) as one sigma per axis (0 = none)."""
    s = np.atleast_1d(np.asarray(smooth, dtype=float))
    if s.ndim != 1 or s.size not in (1, 2) or not np.all(np.isfinite(s) & (s >= 0)):
        raise ValidationError("smooth", f"must be one or two finite pixel widths >= 0 (k, E), got {smooth!r}")
    sk, se = (float(s[0]), float(s[0])) if s.size == 1 else (float(s[0]), float(s[1]))
    return (sk,) * (ndim - 1) + (se,)


@jax.jit
def _ridge(x: jax.Array) -> jax.Array:
    """``max(0, -lambda_min(Hessian x))`` at every pixel (pixel units, central differences)."""
    grads = jnp.gradient(x)
    grads = grads if isinstance(grads, list) else [grads]
    hess = jnp.stack([jnp.stack(jnp.gradient(g), axis=-1) for g in grads], axis=-1)  # (..., d, d)
    hess = 0.5 * (hess + jnp.swapaxes(hess, -1, -2))
    return jnp.maximum(-jnp.linalg.eigvalsh(hess)[..., 0], 0.0)


def ridge_strength(bandmap: BandMap, *, smooth=(1.0, 2.0), power: float = 0.5) -> tuple[jax.Array, jax.Array]:
    """``(R, x)``: the ridge strength ``max(0, -lambda_min)`` of the Hessian of the compressed, smoothed
    intensity ``x = smooth((I / max I)^power)`` (see the module docstring), both of the band map's shape."""
    if not isinstance(bandmap, BandMap):
        raise ValidationError("bandmap", f"must be a diffbands.BandMap, got {type(bandmap).__name__}")
    power = _positive("power", power)
    sigmas = _smooth_pairs(smooth, bandmap.ndim)
    inten = jnp.maximum(jnp.asarray(bandmap.intensity), 0.0)
    peak = float(jnp.max(inten))
    if not peak > 0:
        raise ValidationError("intensity", "is zero everywhere: there are no peaks to track")
    x = (inten / peak) ** power
    for ax, s in enumerate(sigmas):
        if s > 0 and x.shape[ax] > 1:
            x = _smooth_axis(x, jnp.arange(x.shape[ax], dtype=x.dtype), jnp.asarray(s, x.dtype), ax)
    return _ridge(x), x


def _serpentine(k_shape: tuple[int, ...]) -> np.ndarray:
    """Flat indices of the momentum grid in spanning-path order (rows joined back and forth)."""
    idx = np.arange(int(np.prod(k_shape))).reshape(k_shape[0], -1)
    idx[1::2] = idx[1::2, ::-1]
    return idx.reshape(-1)


def _vote(visible: jax.Array) -> jax.Array:
    """Running majority of ``visible`` over ``_VOTE`` consecutive chain points (edges: the points there)."""
    v = visible.astype(jnp.float32)
    ones = jnp.ones(_VOTE, jnp.float32)
    return jnp.convolve(v, ones, mode="same") / jnp.convolve(jnp.ones_like(v), ones, mode="same") > 0.5


def _notch(idx: jax.Array, grid: jax.Array, w: float, de: float) -> jax.Array:
    """``1 - exp(-(E - E_path)^2 / 2 w_k^2)`` on the chain: the factor that removes a found band's ridge.

    A ridge of normal width ``w`` crossed by the energy axis at a slope of ``s`` energy pixels per momentum
    pixel is ``w sqrt(1 + s^2)`` wide along energy, so the notch widens with the path's local slope."""
    slope = jnp.gradient(idx.astype(grid.dtype)) if idx.size > 1 else jnp.zeros(idx.shape, grid.dtype)
    wk = w * jnp.sqrt(1 + jnp.square(slope))
    d = (jnp.arange(grid.size, dtype=grid.dtype)[None, :] - idx[:, None].astype(grid.dtype)) * de
    return 1 - jnp.exp(-0.5 * jnp.square(d / wk[:, None]))


def _split(paths: list, masks: list, min_length: int) -> tuple[list, list, list]:
    """Every run of visible points (at least ``min_length`` long) of every path as a path of its own,
    continued at constant energy outside the run."""
    out_p, out_m, out_c = [], [], []
    for path, vis in zip(paths, masks):  # a loop over bands and their runs, not over momenta
        v = np.asarray(vis, bool)
        run_id = np.cumsum(np.diff(np.concatenate([[False], v]).astype(int)) == 1) * v  # 0 = invisible
        ids, counts = np.unique(run_id[v], return_counts=True)
        kk = np.arange(v.size)
        for i in ids[counts >= min_length]:
            m = run_id == i
            out_p.append(jnp.asarray(np.interp(kk, kk[m], np.asarray(path)[m])))  # constant outside the stretch
            out_m.append(jnp.asarray(m))
            out_c.append(float(m.mean()))
    return out_p, out_m, out_c


def _subgrid(x: jax.Array, idx: jax.Array, grid: jax.Array) -> jax.Array:
    """Energies of the parabola vertex through ``x`` at ``idx - 1, idx, idx + 1`` (grid value at edges)."""
    n = x.shape[-1]
    i = jnp.clip(idx, 1, n - 2)
    y0, y1, y2 = (jnp.take_along_axis(x, (i + d)[:, None], axis=-1)[:, 0] for d in (-1, 0, 1))
    den = y0 - 2 * y1 + y2
    off = jnp.where(den < 0, 0.5 * (y0 - y2) / jnp.where(den < 0, den, -1.0), 0.0)
    off = jnp.where((idx == i) & (jnp.abs(off) <= 1.0), off, 0.0)
    step = jnp.where(off >= 0, grid[jnp.minimum(i + 1, n - 1)] - grid[i], grid[i] - grid[i - 1])
    return grid[idx] + off * step


def track_peaks(
    bandmap: BandMap,
    n_bands: int | None = None,
    *,
    smooth=(1.0, 2.0),
    power: float = 0.5,
    eta: float | None = None,
    separation: float | None = None,
    threshold: float = 0.08,
    min_coverage: float = 0.3,
    max_bands: int = 16,
    floor: float = 1e-3,
    segments: bool = False,
    min_length: int = 8,
) -> Bands:
    """A starting set of bands from the data alone: intensity ridges joined into continuous paths by ChainDP.

    See the module docstring for the method. Arguments:

    - ``bandmap``: a cut ``(k, E)`` or a volume ``(kx, ky, E)`` (momentum axes; any positive intensity).
    - ``n_bands``: how many bands to return; ``None`` returns every clearly visible band (see
      ``min_coverage``), at most ``max_bands``.
    - ``smooth``: Gaussian smoothing in pixels, a scalar or ``(momentum, energy)``.
    - ``power``: intensity compression before the ridge measure (``1`` = none).
    - ``eta``: smoothness scale of the paths (eV per momentum step); default four energy steps. Raise it
      for steep bands.
    - ``separation``: width ``w`` (eV) of the ridge removed around each found band; default three energy
      steps or the energy smoothing, whichever is wider.
    - ``threshold``: a path point is visible where its ridge is at least this fraction of the strongest ridges.
    - ``min_coverage``: the fraction of visible points a band needs to count as clearly visible.
    - ``floor``: relative floor of the normalised ridge in the path cost.
    - ``segments`` (cuts only): return every visible stretch of at least ``min_length`` momenta of every path
      as a band of its own (masked outside the stretch). A path may pass through several branches where
      it is invisible in between (steep bands cross the energy window on a short stretch of k only); as
      segments, each branch is one band; outside its stretch it is continued at its end energies.

    Returns :class:`~diffbands.Bands` on the band map's momentum axes with ``mask`` = visible, labels
    ``"peak 0", ...`` (band 0 topmost) and the settings and per-band coverage in ``metadata``.
    """
    if not isinstance(bandmap, BandMap):
        raise ValidationError("bandmap", f"must be a diffbands.BandMap, got {type(bandmap).__name__}")
    if bandmap.ndim not in (2, 3):
        raise ValidationError("bandmap", f"must be a cut (k, E) or a volume (kx, ky, E), got dims {bandmap.dims}")
    if n_bands is not None and (not isinstance(n_bands, (int, np.integer)) or isinstance(n_bands, bool)
                                or n_bands < 1):  # fmt: skip
        raise ValidationError("n_bands", f"must be a positive integer or None, got {n_bands!r}")
    if not isinstance(max_bands, (int, np.integer)) or max_bands < 1:
        raise ValidationError("max_bands", f"must be a positive integer, got {max_bands!r}")
    threshold = _positive("threshold", threshold)
    min_coverage = _positive("min_coverage", min_coverage, allow_zero=True)
    if min_coverage > 1:
        raise ValidationError("min_coverage", f"is a fraction and must be <= 1, got {min_coverage}")
    floor = _positive("floor", floor)
    if floor >= 1:
        raise ValidationError("floor", f"must be in (0, 1), got {floor}")
    grid = jnp.asarray(bandmap.energy)
    de = float(np.median(np.diff(np.asarray(grid, np.float64))))
    sig_e = _smooth_pairs(smooth, bandmap.ndim)[-1]
    eta = 4 * de if eta is None else _positive("eta", eta)
    w = max(3 * de, sig_e * de) if separation is None else _positive("separation", separation)

    ridge, x = ridge_strength(bandmap, smooth=smooth, power=power)
    k_shape = bandmap.k_shape
    order = _serpentine(k_shape) if len(k_shape) == 2 else np.arange(k_shape[0])
    n_chain, n_e = order.size, grid.size
    chain = jnp.asarray(ridge).reshape(n_chain, n_e)[order]
    x_chain = jnp.asarray(x).reshape(n_chain, n_e)[order]
    ref = float(jnp.quantile(jnp.max(chain, axis=1), 0.9))  # the strongest ridges (robust to a few hot columns)
    if not ref > 1e-6:  # x is normalised to max 1; below this the curvature is rounding noise of flat data
        raise ValidationError("intensity", "has no intensity maxima along energy (no ridge): no band to track")

    want = max_bands if n_bands is None else int(n_bands)
    solver = ChainDP()
    remaining = chain / ref
    paths, masks, coverage = [], [], []
    for b in range(want):  # one exact chain solve per band; everything inside is vectorised over momenta
        if not float(jnp.max(remaining)) > 0:
            if n_bands is not None:
                raise ValidationError("n_bands", f"asked for {n_bands} bands but the data hold ridges for {b} only")
            break
        energy = IntensityLikelihood(jnp.minimum(remaining, 1.0), energy=grid, floor=floor, normalize=False) \
            + Smoothness(eta)
        res = solve(solver, energy, jnp.full((1, n_chain), grid[0]), grid)
        assert res.indices is not None  # ChainDP is discrete: it always returns grid indices
        idx = res.indices[0]
        got = jnp.take_along_axis(remaining, idx[:, None], axis=1)[:, 0]
        visible = _vote(got >= threshold)
        cov = float(jnp.mean(visible))
        if n_bands is None and cov < min_coverage:
            break
        if n_bands is not None and cov == 0.0:
            raise ValidationError(
                "n_bands", f"asked for {n_bands} bands but band {b} is not visible anywhere (only {b} found); "
                "lower `threshold` or ask for fewer bands")
        paths.append(_subgrid(x_chain, idx, grid))
        masks.append(visible)
        coverage.append(cov)
        remaining = remaining * _notch(idx, grid, w, de)
    if not paths:
        raise ValidationError(
            "intensity", f"no clearly visible band (none covers {min_coverage:.0%} of the momenta with a ridge "
            f"above {threshold:g} of the strongest); lower `threshold` or `min_coverage`, or pass n_bands")

    if segments:
        if len(k_shape) != 1:
            raise ValidationError("segments", "splitting into visible stretches is defined for cuts (k, E) only")
        if not isinstance(min_length, (int, np.integer)) or min_length < 1:
            raise ValidationError("min_length", f"must be a positive integer, got {min_length!r}")
        paths, masks, coverage = _split(paths, masks, int(min_length))
        if not paths:
            raise ValidationError("min_length", f"no visible stretch is {min_length} momenta long")
    inverse = np.argsort(order)
    energies = np.asarray(jnp.stack(paths))[:, inverse].reshape(len(paths), *k_shape)
    mask = np.asarray(jnp.stack(masks))[:, inverse].reshape(len(paths), *k_shape)
    mean_e = [float(np.mean(e[m])) if m.any() else float(np.mean(e)) for e, m in zip(energies, mask)]
    rank = np.argsort(mean_e)[::-1]
    return Bands(
        energies[rank],
        [np.asarray(c) for c in bandmap.k_coords],
        dims=bandmap.k_dims,
        units=bandmap.units[:-1],
        energy_unit=bandmap.units[-1],
        mask=mask[rank],
        labels=[f"peak {i}" for i in range(len(paths))],
        metadata={
            "source": "diffbands.track_peaks",
            "settings": {"n_bands": n_bands, "smooth": list(np.atleast_1d(np.asarray(smooth, float))),
                         "power": float(power), "eta": eta, "separation": w, "threshold": threshold,
                         "min_coverage": min_coverage, "max_bands": int(max_bands), "floor": floor,
                         "min_length": int(min_length)},
            "coverage": [coverage[i] for i in rank],
            "path": "serpentine over kx rows" if len(k_shape) == 2 else "along k",
            "segments": bool(segments),
        },
    )
