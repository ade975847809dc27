"""A plain numpy reference of fuller's parallel ICM update (``MrfRec.iter_para``), for parity tests.

Written from the description of the method (Xian, Stimper et al. 2023) and a reading of fuller's
TensorFlow code; it follows fuller's structure but is not a copy of it:

* The log posterior of one band, up to a constant, is
  ``log p = sum_k log I(k, E[n(k)]) - sum_<k,k'> (E[n(k)] - E[n(k')])^2 / (2 eta^2)``.
  Like fuller, the energies are pre-divided by ``sqrt(2) eta`` (``ENN = E / (sqrt(2) eta)``), so the
  pairwise term is ``(ENN_m - ENN_n)^2``, and each site is set to the **argmax** over all energy indices of
  ``log I(k, m) - sum_{k' in N(k)} (ENN_m - ENN[n(k')])^2``, each neighbour's squared difference computed
  directly (no expansion of the square). Ties go to the lowest index (``argmax``, like ``tf.argmax``).
* The grid is split, like fuller, into the four parity sub-lattices ``(i, j)`` = (kx index mod 2,
  ky index mod 2). "White" = ``(0, 0)`` and ``(1, 1)``, updated together first; "black" = ``(0, 1)`` and
  ``(1, 0)``, updated next from the white result. One epoch = white then black.
* Neighbours live on the sub-lattices of opposite parity along each axis; a neighbour that falls outside
  the grid contributes nothing (free boundaries).

Changed with respect to fuller (its quirks, which diffbands deliberately does not reproduce):

1. fuller truncates both grid sizes to even numbers (``lengthKx = 2 * (lengthKx // 2)``), so on an odd
   grid the last row/column is never updated and is not seen as a neighbour. Here the sub-lattices have
   ``ceil`` / ``floor`` sizes and every site takes part.
2. fuller slices the ky-neighbour arrays with the kx length (``lengthKx // 2``), which is only right on a
   square grid. Here each axis uses its own length.
3. fuller's constructor shifts the intensity, ``I <- I - min(I) + min(I[I > 0])``; that happens outside
   ``iter_para`` and is the identity for strictly positive intensities, which is what the tests use.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fuller_iter_para", "fuller_epoch"]

WHITE = ((0, 0), (1, 1))
BLACK = ((0, 1), (1, 0))


def _shift(arr: np.ndarray, offset: int, n_target: int, axis: int) -> np.ndarray:
    """``out[a] = arr[a + offset]`` along ``axis`` for ``a < n_target``; zero where that is out of range."""
    shape = list(arr.shape)
    shape[axis] = n_target
    out = np.zeros(shape, dtype=arr.dtype)
    src = np.arange(n_target) + offset
    ok = (src >= 0) & (src < arr.shape[axis])
    out_idx = [slice(None)] * arr.ndim
    src_idx = [slice(None)] * arr.ndim
    out_idx[axis] = np.flatnonzero(ok)
    src_idx[axis] = src[ok]
    out[tuple(out_idx)] = arr[tuple(src_idx)]
    return out


def _log_posterior(sub_log_i, sub_ind, enn, i, j):
    """``log I - sum_neighbours (ENN_m - ENN_n)^2`` for the sites of sub-lattice ``(i, j)``.

    Site ``(2a + i, 2b + j)``. Along x its neighbours ``2a + i - 1`` and ``2a + i + 1`` are in the
    sub-lattice of parity ``1 - i``, at coarse index ``a - 1`` and ``a`` (for ``i = 0``) or ``a`` and
    ``a + 1`` (for ``i = 1``); likewise along y.
    """
    target = sub_log_i[i][j]
    nx, ny = target.shape[:2]
    logp = target.copy()
    offsets = (-1, 0) if i == 0 else (0, 1)
    sq = np.square(enn[sub_ind[1 - i][j]][..., None] - enn[None, None, :])  # neighbours along x
    for off in offsets:
        logp -= _shift(sq, off, nx, axis=0)
    offsets = (-1, 0) if j == 0 else (0, 1)
    sq = np.square(enn[sub_ind[i][1 - j]][..., None] - enn[None, None, :])  # neighbours along y
    for off in offsets:
        logp -= _shift(sq, off, ny, axis=1)
    return logp


def _split(arr):
    return [[arr[i::2, j::2] for j in range(2)] for i in range(2)]


def fuller_epoch(log_i: np.ndarray, ind: np.ndarray, enn: np.ndarray) -> tuple[np.ndarray, float]:
    """One red-black epoch on ``ind`` ``(nx, ny)``; returns the new indices and the smallest gap between the
    best and the second-best log posterior over all updates (to detect near-ties)."""
    sub_log_i = _split(log_i)
    sub_ind = [[s.copy() for s in row] for row in _split(ind)]
    margin = np.inf
    for colour in (WHITE, BLACK):
        new = {}
        for i, j in colour:
            if sub_ind[i][j].size == 0:
                continue
            logp = _log_posterior(sub_log_i, sub_ind, enn, i, j)
            new[(i, j)] = np.argmax(logp, axis=-1)
            if logp.shape[-1] > 1:
                top2 = np.sort(logp, axis=-1)[..., -2:]
                margin = min(margin, float(np.min(top2[..., 1] - top2[..., 0])))
        for (i, j), v in new.items():  # sites of one colour are not neighbours: update them together
            sub_ind[i][j] = v
    out = np.empty_like(ind)
    for i in range(2):
        for j in range(2):
            out[i::2, j::2] = sub_ind[i][j]
    return out, margin


def fuller_iter_para(
    intensity: np.ndarray, energy: np.ndarray, eta: float, ind0: np.ndarray, num_epoch: int
) -> tuple[np.ndarray, float]:
    """``num_epoch`` epochs of fuller's red-black ICM (without its quirks, see the module docstring).

    Args:
        intensity: ``I[kx, ky, E]``, strictly positive.
        energy: the energy axis ``E``.
        eta: the smoothness scale (``c = 1 / (2 eta^2)``).
        ind0: initial energy indices ``(nx, ny)``.
        num_epoch: number of epochs.

    Returns:
        The final indices and the smallest best-vs-second-best gap met (near-tie detector).
    """
    log_i = np.log(intensity)
    enn = np.asarray(energy, dtype=np.float64) / (np.sqrt(2.0) * eta)
    ind = np.asarray(ind0).copy()
    margin = np.inf
    for _ in range(num_epoch):
        ind, m = fuller_epoch(log_i, ind, enn)
        margin = min(margin, m)
    return ind, margin
