"""Energy terms: the building blocks of the negative log posterior of band energies.

An energy term is an :class:`equinox.Module` mapping band energies ``E`` of shape ``(n_bands, *k_shape)``
to a scalar ``U(E)`` (a negative log density, up to a constant); MAP inference minimises the sum of terms.
Terms hold their own data and parameters as PyTree leaves, so a whole energy jits, vmaps (over bands,
datasets, hyperparameters) and differentiates with respect to anything inside it.

Terms compose: ``a + b`` is :class:`Sum`, ``w * a`` is :class:`Weighted`. A user writes a new term by
subclassing :class:`AbstractTerm` and implementing ``__call__``.

Two refinements let discrete solvers (checkerboard ICM, chain DP) work on the energy grid:

* :class:`AbstractSiteTerm`: ``U(E) = sum_b sum_k f_b(k, E_b(k))``, a sum of independent per-site costs.
  Implement ``site_energy(b, values)``; discrete solvers call ``grid_table(b, grid, k_shape)``.
* :class:`AbstractNeighbourTerm`: ``U(E) = sum_b c_b sum_<k,k'> (E_b(k) - E_b(k'))^2`` over nearest-neighbour
  pairs with free boundaries. Implement ``coupling(b)`` (the coefficient ``c_b``).

Anything else (curvature, band coupling, ...) is a general term: gradient solvers handle it; discrete
solvers refuse it with a :class:`~diffbands.SolverError` instead of silently ignoring it.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = [
    "AbstractTerm",
    "AbstractSiteTerm",
    "AbstractNeighbourTerm",
    "Sum",
    "Weighted",
    "flatten_terms",
]


class AbstractTerm(eqx.Module):
    r"""``U(E) -> scalar`` for band energies ``E`` of shape ``(n_bands, *k_shape)``.

    A term is a negative log density up to a constant, :math:`U_t(E) = -\log p_t(E) + c`, so a sum of terms
    is the negative log of the product of densities (likelihood times priors), and ``w * term`` tempers it
    (:math:`p_t^w`). Subclasses hold their data and parameters as fields (PyTree leaves: ``jax.grad``,
    ``jit`` and ``vmap`` see them) and implement ``__call__`` with ``jax.numpy`` (no Python loop over
    ``k``). See ``experiments/tutorials/t1_new_prior.py`` for a worked example.
    """

    @abc.abstractmethod
    def __call__(self, bands: jax.Array) -> jax.Array:
        """The energy (a float scalar) of the band energies ``bands``."""

    def __add__(self, other: AbstractTerm) -> Sum:
        if not isinstance(other, AbstractTerm):
            return NotImplemented
        return Sum((*_terms_of(self), *_terms_of(other)))

    def __mul__(self, weight) -> Weighted:
        return Weighted(jnp.asarray(weight, dtype=float), self)

    __rmul__ = __mul__

    @property
    def name(self) -> str:
        return type(self).__name__

    def hessian_diag(self, bands: jax.Array) -> jax.Array | None:
        """The diagonal of the Hessian, :math:`\\partial^2 U / \\partial E_b(k)^2`, shape of ``bands``, where a
        closed form is cheap, else ``None`` (the default): :func:`diffbands.band_uncertainty` then finds it by
        probing with Hessian-vector products (exact, but one per colour of the coupling graph and band)."""
        return None


class AbstractSiteTerm(AbstractTerm):
    """``U(E) = sum_b sum_k f_b(k, E_b(k))``: independent per-site costs (likelihoods, unary priors)."""

    @abc.abstractmethod
    def site_energy(self, band: jax.Array, values: jax.Array) -> jax.Array:
        """``f_b(k, values[k])`` for band index ``band`` (int scalar, may be traced) and ``values`` of
        shape ``k_shape``; returns an array of shape ``k_shape``."""

    def __call__(self, bands: jax.Array) -> jax.Array:
        idx = jnp.arange(bands.shape[0])
        return jnp.sum(jax.vmap(self.site_energy)(idx, bands))

    def grid_table_sites(
        self, band: jax.Array, grid: jax.Array, k_shape: tuple[int, ...], sites, weight=None
    ) -> jax.Array:
        """:meth:`grid_table` at the flat site indices ``sites`` only, energy-major: shape
        ``(len(grid), len(sites))`` (the layout discrete solvers read row by row); with ``weight``,
        ``(weight * table).astype(grid.dtype)``. Terms with a direct form override it to avoid forming the
        whole table first."""
        table = self.grid_table(band, grid, k_shape)
        if weight is not None:
            table = (weight * table).astype(grid.dtype)
        return table.reshape(-1, grid.shape[0])[sites].T

    def site_params(self, band: jax.Array):
        """Optional **pointwise form** ``f_b(k, E) = site_cost(p_b(k), E)``: the per-site parameters
        ``p_b`` (a PyTree whose leaves have the k-grid shape or are scalars), or ``None`` (the default).

        Discrete solvers evaluate a term with a pointwise form on the fly, one grid energy at a time, from
        ``p_b`` instead of storing its ``(n_k, n_grid)`` table for every band (e.g. the theory prior: one
        target energy per site instead of a table as large as the data)."""
        del band
        return None

    def site_cost(self, params, values: jax.Array) -> jax.Array:
        """``f(p, E)`` elementwise for parameters ``params`` from :meth:`site_params` (leaves broadcast
        against ``values``); only needed when :meth:`site_params` is not ``None``."""
        raise NotImplementedError(f"{type(self).__name__} has no pointwise form (site_params returns None)")

    def grid_table(self, band: jax.Array, grid: jax.Array, k_shape: tuple[int, ...]) -> jax.Array:
        """Per-site cost of every grid energy: shape ``(*k_shape, len(grid))``.

        The default evaluates :meth:`site_energy` at each grid value; terms with a cheaper exact form
        (e.g. the likelihood on its own energy axis) override it.
        """
        table = jax.vmap(lambda g: self.site_energy(band, jnp.full(k_shape, g, dtype=grid.dtype)))(grid)
        return jnp.moveaxis(table, 0, -1)


class AbstractNeighbourTerm(AbstractTerm):
    """``U(E) = sum_b c_b sum_<k,k'> (E_b(k) - E_b(k'))^2`` over nearest-neighbour pairs, free boundaries."""

    @abc.abstractmethod
    def coupling(self, band: jax.Array) -> jax.Array:
        """The coefficient ``c_b`` of band ``band`` (e.g. ``1 / (2 eta_b^2)``)."""


class Sum(AbstractTerm):
    """The sum of several terms."""

    terms: tuple[AbstractTerm, ...]

    def __call__(self, bands: jax.Array) -> jax.Array:
        return sum((t(bands) for t in self.terms), start=jnp.zeros((), dtype=bands.dtype))

    def energies(self, bands: jax.Array) -> dict[str, jax.Array]:
        """The value of each term, keyed by a unique name (for reports)."""
        out = {}
        for t in self.terms:
            key = t.name
            i = 1
            while key in out:
                i += 1
                key = f"{t.name}_{i}"
            out[key] = t(bands)
        return out


class Weighted(AbstractTerm):
    """``weight * term``."""

    weight: jax.Array
    term: AbstractTerm

    def __call__(self, bands: jax.Array) -> jax.Array:
        return self.weight * self.term(bands)

    @property
    def name(self) -> str:
        return self.term.name


def _terms_of(term: AbstractTerm) -> tuple[AbstractTerm, ...]:
    return term.terms if isinstance(term, Sum) else (term,)


def flatten_terms(energy: AbstractTerm) -> list[tuple[jax.Array, AbstractTerm]]:
    """``energy`` as a flat list of ``(weight, leaf_term)`` with nested sums and weights multiplied out."""
    out: list[tuple[jax.Array, AbstractTerm]] = []

    def walk(term, w):
        if isinstance(term, Sum):
            for t in term.terms:
                walk(t, w)
        elif isinstance(term, Weighted):
            walk(term.term, w * term.weight)
        else:
            out.append((w, term))

    walk(energy, jnp.ones(()))
    return out
