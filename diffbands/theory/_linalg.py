r"""Eigenvalues of Hermitian matrices with derivatives that stay finite at degeneracies.

Why: ``jnp.linalg.eigh`` differentiates eigenvalues *and* eigenvectors together. The eigenvector part
contains :math:`1/(w_j - w_i)`, which is infinite when two levels coincide (spin and symmetry degeneracies at
:math:`\Gamma`, K, the zone boundary of a bulk crystal, ...). Even when only eigenvalues are used, those
infinities meet zero cotangents and reverse-mode gradients can become NaN.

The derivative of an eigenvalue needs no eigenvector derivative. For a non-degenerate level the
Hellmann-Feynman theorem gives it exactly,

.. math:: \frac{\partial w_n}{\partial p} = \langle v_n | \frac{\partial H}{\partial p} | v_n \rangle,

and :func:`eigvalsh_safe` uses exactly this formula, ``dw = Re diag(V^H dH V)``, for every level.

At a degeneracy the individual sorted eigenvalues are not differentiable (they are only directionally
differentiable: a perturbation splits the level in a direction-dependent way), and no formula can give "the"
derivative of each. The diagonal formula then returns the derivatives in whatever orthonormal basis
``eigh`` chose for the degenerate subspace; those values are finite, and their **sum over the degenerate
subspace** equals :math:`\mathrm{tr}(P\,\partial H/\partial p)` (:math:`P` the projector on the subspace),
which is the exact derivative of the sum of the degenerate eigenvalues, a smooth function of :math:`H`.
Objectives that are symmetric in degenerate bands (sums, means, or any loss that treats a degenerate pair
alike) therefore get correct gradients; a loss on one member of a degenerate pair gets a finite but
basis-dependent value.

Complex matrices are diagonalised through their real embedding
:math:`H = A + iB \mapsto M = \begin{pmatrix} A & -B\\ B & A\end{pmatrix}` (real symmetric, ``2n x 2n``), whose
spectrum is that of :math:`H` with every eigenvalue twice; consecutive pairs are averaged. On CPU, JAX's
real ``eigh`` is one to two orders of magnitude faster than its complex one for small matrices (measured
with jax 0.10: 4096 complex64 22x22 matrices 7.7 s, their real 44x44 embeddings 0.5 s), so this is also
the fast path. The Hellmann-Feynman derivative carries over exactly: the pair average of
:math:`u^T\dot M u` over the two real eigenvectors of a doubled level is :math:`z^\dagger \dot H z`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._errors import ShapeError

__all__ = ["eigvalsh_safe", "real_embedding"]


def _symmetric_part(x):
    return 0.5 * (x + jnp.conj(jnp.swapaxes(x, -1, -2)))


@jax.custom_jvp
def _eigvalsh_real(m: jax.Array) -> jax.Array:
    return jnp.linalg.eigvalsh(m, symmetrize_input=False)


@_eigvalsh_real.defjvp
def _eigvalsh_real_jvp(primals, tangents):
    (m,), (dm,) = primals, tangents
    w, v = jnp.linalg.eigh(m, symmetrize_input=False)
    # <v_n| dM |v_n> for every n, without forming V^T dM V off its diagonal
    dw = jnp.einsum("...ji,...jk,...ki->...i", v, _symmetric_part(dm), v)
    return w, dw.astype(w.dtype)


def real_embedding(h: jax.Array) -> jax.Array:
    r"""The real symmetric ``(..., 2n, 2n)`` matrix :math:`\begin{pmatrix}\mathrm{Re}\,H & -\mathrm{Im}\,H\\
    \mathrm{Im}\,H & \mathrm{Re}\,H\end{pmatrix}` of a complex Hermitian ``h`` (same eigenvalues, each twice)."""
    a, b = jnp.real(h), jnp.imag(h)
    top = jnp.concatenate([a, -b], axis=-1)
    bottom = jnp.concatenate([b, a], axis=-1)
    return jnp.concatenate([top, bottom], axis=-2)


def eigvalsh_safe(h: jax.Array) -> jax.Array:
    r"""Ascending eigenvalues of the Hermitian (real symmetric or complex) matrix ``h`` of shape ``(..., n, n)``.

    The input is symmetrised, :math:`(H + H^\dagger)/2`, as ``jnp.linalg.eigvalsh`` does. The derivative is
    the Hellmann-Feynman diagonal :math:`\mathrm{Re}\,\mathrm{diag}(V^\dagger\,\dot H\,V)`, finite at
    degeneracies (see the module docstring for what it means there). Complex input goes through
    :func:`real_embedding`. Returns a real array of shape ``(..., n)``.
    """
    h = jnp.asarray(h)
    if h.ndim < 2 or h.shape[-1] != h.shape[-2]:
        raise ShapeError("h", f"must be a (batch of) square matrices, got shape {h.shape}")
    h = _symmetric_part(h)
    if not jnp.iscomplexobj(h):
        return _eigvalsh_real(h)
    w2 = _eigvalsh_real(real_embedding(h))
    return 0.5 * (w2[..., 0::2] + w2[..., 1::2])
