r"""Solving a batch of datasets across devices and processes with ``jax.sharding``.

A batch of band maps (a time-resolved series, a temperature or doping scan, ...) is embarrassingly
parallel: every dataset is reconstructed on its own. :func:`solve_batch` puts the batch axis on a named
axis of a device :class:`jax.sharding.Mesh` and runs, with :func:`jax.shard_map`, the *same* compiled
program on every device: each device ``vmap``\ s the solver over its own slice of the batch. There is no
communication inside the solve: each device's ``while_loop`` stops when its own datasets have converged,
and the results are those of separate single-device solves: bit for bit for the discrete solvers
(tested with 4 host devices), and to float32 rounding for gradient refinements (XLA may split their
reductions differently when the host's cores are shared among several devices).

How this maps onto hardware:

* **One host, several accelerators** (e.g. 8 GPUs): ``mesh = jax.make_mesh((8,), ("data",))``; each GPU
  holds ``B / 8`` volumes, their tables and states. The batch must be divisible by the mesh axis (it is
  padded with copies of the last dataset, which are dropped from the result).
* **Several hosts** (a GPU cluster, a TPU pod slice): start one process per host (``jax.distributed.
  initialize(coordinator_address, num_processes, process_id)``; on Slurm, Kubernetes TPU or Cloud TPU the
  arguments are detected automatically), build the *global* mesh over ``jax.devices()`` (all processes'
  devices) and call :func:`solve_batch` in every process with the same arguments (SPMD). Inputs are
  global arrays: :func:`global_batch` builds them from a batch every process holds (fine for small
  batches); for large series build them with ``jax.make_array_from_callback`` from a loader that reads
  only the requested slice, so that a process only reads the datasets of its own devices. On TPU the
  mesh axis runs over the chips (``jax.make_mesh((n_chips,), ("data",))``) and nothing else changes; on a
  single GPU with many small datasets ``per_device="vmap"`` fills the device better. Each process reads back the
  results of its own devices (:func:`local_results`); nothing crosses the network except the
  coordination at start-up. On CPU hosts the same code runs with one process per host (tested with 2
  processes on loopback).
* **Bands along a mesh axis** are not offered here: bands share the intensity table and may be coupled by
  multi-band terms (e.g. :class:`~diffbands.energy.FeatureExclusion`), and a generic energy cannot be
  sliced by band. Within one device, the ICM already runs all bands in one compiled program; for a single
  volume larger than one device's memory, the natural split is along k (tiles with a one-site halo
  exchanged each half-epoch), which is future work.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._errors import ShapeError, ValidationError
from .energy._base import AbstractTerm
from .solvers._base import AbstractSolver, SolveResult, _check_grid, find_grid

__all__ = ["solve_batch", "global_batch", "local_results", "default_mesh"]


def default_mesh(axis: str = "data") -> Mesh:
    """A 1-D mesh over every device of every process, named ``axis``."""
    return _auto(jax.make_mesh((jax.device_count(),), (axis,)))


def _auto(mesh: Mesh) -> Mesh:
    """The same devices and axis names with ``Auto`` axis types (the compiler places what we do not pin)."""
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(jax.sharding.AxisType.Auto,) * len(mesh.axis_names))


def _batch_size(tree) -> int:
    sizes = {x.shape[0] for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array)) if x.ndim > 0}
    if len(sizes) != 1:
        raise ShapeError("energy", f"every array leaf needs the same leading batch axis, got sizes {sorted(sizes)}")
    return sizes.pop()


def _pad(tree, n: int):
    """Append ``n`` copies of the last batch member to every array leaf."""
    if n == 0:
        return tree

    def pad(x):
        return jnp.concatenate([x, jnp.repeat(x[-1:], n, axis=0)], axis=0)

    return jax.tree.map(lambda x: pad(x) if eqx.is_array(x) else x, tree)


def global_batch(tree, mesh: Mesh, axis: str = "data"):
    """``tree`` (array leaves with a leading batch axis) as global arrays sharded along ``axis`` of ``mesh``.

    Every process calls this with the same (full) tree; each process only materialises the slices of its
    own devices (``jax.make_array_from_callback``), so in a multi-process run the other processes' data
    can be anything of the right shape (e.g. produced lazily)."""

    def put(x):
        if not eqx.is_array(x):
            return x
        host = np.asarray(x)
        sharding = NamedSharding(_auto(mesh), P(axis, *([None] * (host.ndim - 1))))
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(put, tree, is_leaf=lambda x: eqx.is_array(x))


def local_results(result: SolveResult) -> dict[int, SolveResult]:
    """The batch members held by this process's devices, ``{batch index: SolveResult}`` (host arrays)."""
    out: dict[int, Any] = {}
    leaves, treedef = jax.tree.flatten(result)
    per_index: dict[int, list] = {}
    for i, leaf in enumerate(leaves):
        for shard in leaf.addressable_shards:
            start = shard.index[0].start or 0
            data = np.asarray(shard.data)
            for j in range(data.shape[0]):
                per_index.setdefault(start + j, [None] * len(leaves))[i] = data[j]
    for b, parts in per_index.items():
        if all(p is not None for p in parts):
            out[b] = jax.tree.unflatten(treedef, parts)
    return out


def solve_batch(
    solver: AbstractSolver,
    energy: AbstractTerm,
    bands0,
    grid=None,
    *,
    mesh: Mesh | None = None,
    axis: str = "data",
    per_device: str = "map",
) -> SolveResult:
    """Solve a batch of datasets, the batch sharded along ``axis`` of ``mesh`` (see the module docstring).

    Args:
        solver: any diffbands solver (e.g. :class:`~diffbands.solvers.CheckerboardICM`,
            :func:`~diffbands.solvers.default_solver`).
        energy: a batched energy: every array leaf has a leading batch axis of size ``B`` (e.g. built with
            ``jax.tree.map(lambda *x: jnp.stack(x), *energies)``, or ``eqx.filter_vmap`` of a constructor).
        bands0: initial bands, ``(B, n_bands, *k_shape)``.
        grid: the energy grid shared by all datasets (``None``: the energy axis of the first dataset's
            likelihood).
        mesh: the device mesh (default: all devices of all processes on one axis).
        axis: the mesh axis that carries the batch.
        per_device: how a device runs its datasets: ``"map"`` one after the other (``lax.map``: each one
            stops at its own convergence and gives bit for bit the result of a separate :func:`~diffbands.
            solvers.solve`), or ``"vmap"`` all at once (vectorised: better for many small datasets on a GPU;
            the loop runs until the slowest has converged, and float reductions may round differently).

    Returns:
        A batched :class:`~diffbands.solvers.SolveResult` (leading axis ``B``), sharded like the input. In a
        multi-process run it is a global array: read your own members with :func:`local_results`.
    """
    if not isinstance(solver, AbstractSolver):
        raise ValidationError("solver", f"must be a diffbands solver, got {type(solver).__name__}")
    if not isinstance(energy, AbstractTerm):
        raise ValidationError("energy", f"must be an AbstractTerm, got {type(energy).__name__}")
    mesh = default_mesh(axis) if mesh is None else _auto(mesh)
    if axis not in mesh.axis_names:
        raise ValidationError("axis", f"{axis!r} is not an axis of the mesh {tuple(mesh.axis_names)}")
    bands0 = bands0 if isinstance(bands0, jax.Array) else jnp.asarray(bands0)
    if bands0.ndim < 3:
        raise ShapeError("bands0", f"must have shape (batch, n_bands, *k_shape), got {bands0.shape}")
    if not jnp.issubdtype(bands0.dtype, jnp.floating):
        bands0 = bands0.astype(jnp.zeros((), dtype=float).dtype)
    n = bands0.shape[0]
    if _batch_size(energy) != n:
        raise ShapeError("energy", f"batch size {_batch_size(energy)} differs from bands0's {n}")
    if grid is None:
        grid = find_grid(energy)
        if grid is not None:
            grid = grid[0] if grid.ndim == 2 else grid
    if grid is not None:
        grid = _check_grid(np.asarray(grid))
    n_dev = mesh.shape[axis]
    pad = (-n) % n_dev
    if pad and not bands0.is_fully_addressable:
        raise ShapeError("bands0", f"batch size {n} must be a multiple of the {n_dev} devices along {axis!r} "
                         "when the batch is a global (multi-process) array")
    energy, bands0 = _pad(energy, pad), _pad(bands0, pad)
    if per_device not in ("map", "vmap"):
        raise ValidationError("per_device", f"must be 'map' or 'vmap', got {per_device!r}")
    sharding = NamedSharding(mesh, P(axis))

    def place(x):  # split along the batch axis (global arrays from ``global_batch`` already are)
        if not eqx.is_array(x) or (isinstance(x, jax.Array) and not x.is_fully_addressable):
            return x
        return jax.device_put(x, sharding)

    energy, bands0 = jax.tree.map(place, (energy, bands0))
    result = _sharded_run(solver, energy, bands0, grid, mesh, axis, per_device)
    if pad:
        result = jax.tree.map(lambda x: x[:n], result)
    return result


@eqx.filter_jit
def _sharded_run(solver, energy, bands0, grid, mesh, axis, per_device):
    # one compilation per solver settings, shapes, mesh and mode (``filter_jit`` caches on all of them)
    dynamic, static = eqx.partition(energy, eqx.is_array)
    spec = P(axis)

    def one(args):
        dyn, b, g = args
        return solver.run(eqx.combine(dyn, static), b, g)

    def local(dyn, b, g):
        if per_device == "vmap":
            return jax.vmap(one, in_axes=((0, 0, None),))((dyn, b, g))
        return jax.lax.map(lambda a: one((*a, g)), (dyn, b))

    # ``spec`` is a prefix for every leaf: inputs and outputs are split along their batch axis; the grid
    # is replicated
    return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, P()), out_specs=spec, check_vma=False)(
        dynamic, bands0, grid
    )
