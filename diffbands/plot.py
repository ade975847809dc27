r"""Figures of band maps with bands overlaid (matplotlib, an optional dependency: ``pip install diffbands[plot]``).

For a volume ``(kx, ky, E)`` :func:`plot_bandmap` draws a constant-energy map and the two central momentum cuts;
for a cut ``(k, E)`` it draws the cut. Band sets passed in ``bands`` (a name -> :class:`~diffbands.Bands` mapping)
are overlaid: as lines on cuts and as iso-energy contours on the constant-energy map.

**Uncertainty.** A band set with a Laplace uncertainty :math:`\sigma_b(k)` (see
:func:`diffbands.band_uncertainty`; ``uncertainty=`` here, or the ``"uncertainty"`` set that
:meth:`diffbands.Reconstruction.save` writes beside ``"result"``) is drawn on the cuts with shaded bands
:math:`E_b(k) \pm n\sigma_b(k)` for each ``n`` in ``sigma_levels`` (default 1; ``(1, 2)`` adds the
2-sigma band, lighter). Low-confidence points (where the data do not localise the band, see
:func:`diffbands.low_confidence`) are marked with small crosses. :func:`plot_reconstruction` does all this
for a :class:`~diffbands.Reconstruction`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._data import BandMap, Bands
from ._errors import DiffbandsError, ValidationError

__all__ = ["UNCERTAINTY_SET", "plot_bandmap", "plot_reconstruction", "require_matplotlib"]

_STYLES = [("w", "-"), ("tab:orange", "--"), ("tab:cyan", ":"), ("tab:red", "-."), ("tab:green", "-")]
_SIGMA_ALPHA = {1: 0.55, 2: 0.3}  # shading of the 1- and 2-sigma bands (other levels: 0.2)
_SIGMA_ON_WHITE = "#4dff4d"  # white lines vanish in the bright band cores: shade their sigma in green
_LOW_STYLE = dict(marker="x", s=7, linewidths=0.6, color="tab:cyan", zorder=4)

#: The name of the band set that holds the 1-sigma uncertainty of ``"result"`` in a saved reconstruction.
UNCERTAINTY_SET = "uncertainty"


def require_matplotlib():
    """Import matplotlib with a headless backend, or raise a clear error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise DiffbandsError("plotting needs matplotlib: pip install 'diffbands[plot]'") from None
    return plt


def _nearest(axis: np.ndarray, value: float) -> int:
    return int(np.argmin(np.abs(axis - value)))


def _default_energy(bm: BandMap, bands: Mapping[str, Bands]) -> float:
    """An informative constant-energy slice: 0.3 eV below the top band if bands are given, else the brightest."""
    e = np.asarray(bm.energy)
    for b in bands.values():
        top = np.nanmax(np.asarray(b.energies)[0])
        return float(np.clip(top - 0.3, e[0], e[-1]))
    profile = np.asarray(bm.intensity).reshape(-1, e.size).sum(0)
    return float(e[int(np.argmax(profile))])


def _per_set(field: str, value, bands: Mapping[str, Bands]) -> dict:
    """``value`` (a mapping set name -> x, or one x for ``"result"``, else the first set) as a dict."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(bands))
        if unknown:
            raise ValidationError(field, f"names band set(s) {unknown} not among those drawn: {sorted(bands)}")
        return dict(value)
    if not bands:
        raise ValidationError(field, "given without any band set to attach it to")
    return {"result" if "result" in bands else next(iter(bands)): value}


def _check_sigma(bandmap: BandMap, bands: Mapping[str, Bands], sigma: Mapping[str, object]) -> dict[str, np.ndarray]:
    out = {}
    for name, s in sigma.items():
        arr = np.asarray(s.energies if isinstance(s, Bands) else s, dtype=np.float64)
        shape = np.asarray(bands[name].energies).shape
        if arr.shape != shape:
            raise ValidationError(f"uncertainty['{name}']", f"shape {arr.shape} differs from the bands' {shape}")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValidationError(f"uncertainty['{name}']", "must be finite and >= 0 (a 1-sigma width in eV)")
        out[name] = arr
    return out


def _check_low(bands: Mapping[str, Bands], low: Mapping[str, object]) -> dict[str, np.ndarray]:
    out = {}
    for name, m in low.items():
        arr = np.asarray(m).astype(bool)
        shape = np.asarray(bands[name].energies).shape
        if arr.shape != shape:
            raise ValidationError(f"low_confidence['{name}']", f"shape {arr.shape} differs from the bands' {shape}")
        out[name] = arr
    return out


def _draw_band(ax, k, e, color, ls, label, sigma=None, low=None, levels=(1.0,), lw=0.7):
    """One band ``e(k)`` on a cut: the line, ``e +- n sigma`` shaded for each level, low-confidence crosses."""
    if sigma is not None:
        for n in sorted(levels, reverse=True):  # the widest first, underneath
            ax.fill_between(k, e - n * sigma, e + n * sigma, color=_SIGMA_ON_WHITE if color == "w" else color,
                            alpha=_SIGMA_ALPHA.get(int(n), 0.2),
                            lw=0, label=f"{label} ±{n:g}σ" if label else None, gid=f"sigma{n:g}")
    ax.plot(k, e, color=color, ls=ls, lw=lw, alpha=0.8, label=label)
    if low is not None and np.any(low):
        ax.scatter(k[low], e[low], label=f"{label}: low confidence" if label else None, gid="low_confidence",
                   **_LOW_STYLE)


def plot_bandmap(
    bandmap: BandMap,
    bands: Mapping[str, Bands] | Bands | None = None,
    *,
    energy: float | None = None,
    k_cut: tuple[float, float] | None = None,
    title: str | None = None,
    gamma: float = 0.5,
    uncertainty: Mapping[str, Bands] | Bands | np.ndarray | None = None,
    low_confidence: Mapping[str, np.ndarray] | np.ndarray | None = None,
    sigma_levels: tuple[float, ...] = (1.0,),
):
    r"""A figure of ``bandmap`` with ``bands`` overlaid; returns the matplotlib ``Figure``.

    ``energy`` picks the constant-energy slice (eV), ``k_cut = (kx0, ky0)`` the momentum cuts (default: the
    centre of the grid). ``gamma`` is the power-law colour scale (``I**gamma``) that keeps weak bands visible.

    ``uncertainty``: the 1-sigma width :math:`\sigma_b(k)` (eV) of band sets, drawn on the cuts as shaded
    bands :math:`E_b(k) \pm n \sigma_b(k)`, ``n`` in ``sigma_levels`` (e.g. ``(1, 2)``): a mapping set name
    -> :class:`~diffbands.Bands` (or array of the bands' shape), or one of them for the set ``"result"`` (else
    the first set). A set named ``"uncertainty"`` in ``bands`` (as :meth:`~diffbands.Reconstruction.save`
    writes it) is taken as the uncertainty of ``"result"`` and not drawn as bands. ``low_confidence``: bool
    arrays of the bands' shape (mapping or one array, as ``uncertainty``); those points get crosses.
    """
    plt = require_matplotlib()
    if isinstance(bands, Bands):
        bands = {"bands": bands}
    bands = dict(bands or {})
    saved_sigma = bands.pop(UNCERTAINTY_SET, None)
    if uncertainty is None and saved_sigma is not None and "result" in bands:
        uncertainty = {"result": saved_sigma}
    for name, b in bands.items():
        if not b.matches(bandmap):
            raise ValidationError(f"bands['{name}']", f"momentum grid {b.k_shape} does not match the band map's {bandmap.k_shape}")
    levels = tuple(float(n) for n in np.atleast_1d(np.asarray(sigma_levels, dtype=np.float64)))
    if not levels or not all(np.isfinite(n) and n > 0 for n in levels):
        raise ValidationError("sigma_levels", f"must be positive multiples of sigma, e.g. (1, 2); got {sigma_levels!r}")
    sigmas = _check_sigma(bandmap, bands, _per_set("uncertainty", uncertainty, bands))
    lows = _check_low(bands, _per_set("low_confidence", low_confidence, bands))
    vol = np.asarray(bandmap.intensity, dtype=np.float64)
    vmax = np.percentile(vol, 99.9) or 1.0
    img = np.clip(vol / vmax, 0, 1) ** gamma
    e = np.asarray(bandmap.energy)
    eu = bandmap.units[-1]
    if bandmap.ndim == 2:
        fig, ax = plt.subplots(figsize=(5.0, 4.2), constrained_layout=True)
        k = np.asarray(bandmap.coords[0])
        ax.pcolormesh(k, e, img.T, cmap="magma", shading="auto", rasterized=True)
        for (name, b), (c, ls) in zip(bands.items(), _STYLES):
            sig, low = sigmas.get(name), lows.get(name)
            for i in range(b.n_bands):
                _draw_band(ax, k, np.asarray(b.energies[i]), c, ls, name if i == 0 else None,
                           None if sig is None else sig[i], None if low is None else low[i], levels, lw=0.8)
        ax.set_ylim(e[0], e[-1])
        ax.set_xlabel(f"{bandmap.dims[0]} ({bandmap.units[0]})")
        ax.set_ylabel(f"{bandmap.dims[-1]} ({eu})")
        if bands:
            ax.legend(loc="lower right", fontsize=8, framealpha=0.6)
        if title:
            ax.set_title(title)
        return fig
    if bandmap.ndim != 3:
        raise ValidationError("bandmap", f"can plot 2-D cuts and 3-D volumes, not {bandmap.ndim}-D data")
    kx, ky = (np.asarray(c) for c in bandmap.k_coords)
    e0 = _default_energy(bandmap, bands) if energy is None else float(energy)
    m = _nearest(e, e0)
    kx0, ky0 = k_cut if k_cut is not None else (kx[kx.size // 2], ky[ky.size // 2])
    i0, j0 = _nearest(kx, kx0), _nearest(ky, ky0)
    fig, axes = plt.subplots(1, 3, figsize=(13.0, 4.2), constrained_layout=True)
    ax = axes[0]
    ax.pcolormesh(kx, ky, img[:, :, m].T, cmap="magma", shading="auto", rasterized=True)
    ax.set_aspect("equal")
    ax.axhline(ky[j0], color="0.7", lw=0.6)
    ax.axvline(kx[i0], color="0.7", lw=0.6)
    ax.set_title(f"{bandmap.dims[-1]} = {e[m]:.3f} {eu}")
    ax.set_xlabel(f"{bandmap.dims[0]} ({bandmap.units[0]})")
    ax.set_ylabel(f"{bandmap.dims[1]} ({bandmap.units[1]})")
    for (_name, b), (c, ls) in zip(bands.items(), _STYLES):
        eb = np.asarray(b.energies)
        for i in range(b.n_bands):
            if eb[i].min() < e[m] < eb[i].max():
                ax.contour(kx, ky, eb[i].T, levels=[e[m]], colors=c, linestyles=ls, linewidths=0.9)
    for ax, (k, cut, lab, u) in zip(
        axes[1:],
        [
            (kx, img[:, j0, :], f"{bandmap.dims[0]} at {bandmap.dims[1]} = {ky[j0]:.3f}", bandmap.units[0]),
            (ky, img[i0, :, :], f"{bandmap.dims[1]} at {bandmap.dims[0]} = {kx[i0]:.3f}", bandmap.units[1]),
        ],
    ):
        ax.pcolormesh(k, e, cut.T, cmap="magma", shading="auto", rasterized=True)
        ax.axhline(e[m], color="0.7", lw=0.6)
        ax.set_xlabel(f"{lab.split(' at ')[0]} ({u})")
        ax.set_ylabel(f"{bandmap.dims[-1]} ({eu})")
        ax.set_title(lab + f" {u}")
    for (name, b), (c, ls) in zip(bands.items(), _STYLES):
        eb = np.asarray(b.energies)
        sig, low = sigmas.get(name), lows.get(name)
        for i in range(b.n_bands):
            lbl = name if i == 0 else None
            for ax, sel in ((axes[1], (i, slice(None), j0)), (axes[2], (i, i0, slice(None)))):
                _draw_band(ax, kx if ax is axes[1] else ky, eb[sel], c, ls, lbl,
                           None if sig is None else sig[sel], None if low is None else low[sel], levels)
    if bands:
        axes[2].legend(loc="lower right", fontsize=8, framealpha=0.6)
    for ax in axes[1:]:
        ax.set_ylim(e[0], e[-1])
    if title:
        fig.suptitle(title)
    return fig


def plot_reconstruction(bandmap: BandMap, rec, *, truth: Bands | None = None, sigma_levels=(1.0,), **kwargs):
    """:func:`plot_bandmap` of a :class:`~diffbands.Reconstruction`: its bands (``"result"``) with their
    Laplace uncertainty shaded and low-confidence points marked, the initial bands (``"init"``) and, if given,
    ``truth``. Other keyword arguments go to :func:`plot_bandmap`."""
    from ._reconstruct import Reconstruction

    if not isinstance(rec, Reconstruction):
        raise ValidationError("rec", f"must be a diffbands.Reconstruction, got {type(rec).__name__}")
    sets = {"result": rec.bands, "init": rec.init, **({"truth": truth} if truth is not None else {})}
    return plot_bandmap(
        bandmap, sets,
        uncertainty=None if rec.uncertainty is None else {"result": rec.uncertainty},
        low_confidence=None if rec.low_confidence is None else {"result": rec.low_confidence},
        sigma_levels=sigma_levels, **kwargs,
    )
