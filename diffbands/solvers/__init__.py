"""Solvers: interchangeable objects that minimise an energy over band energies, run by :func:`solve`.

* :class:`CheckerboardICM`: discrete red-black ICM on the energy grid (fuller's ``iter_para``, any shape).
* :class:`ChainDP`: exact MAP (Viterbi) on 1-D cuts and k-paths, optionally refined by gradient.
* :class:`GradientMAP`: continuous optimisation of the full energy with optax (L-BFGS, Adam, ...).
* :class:`Default` / :func:`default_solver`: discrete solve, then L-BFGS refinement.
* :func:`solve_chunked`: the same solve in compiled chunks of steps, reporting a :class:`SolveProgress`
  between chunks (checkpoints) and resuming from one; bit-identical to :func:`solve` on CPU.

Every solve is jit-compiled and vmaps over a leading batch of datasets.
"""

from ._base import AbstractIterativeSolver, AbstractSolver, SolveResult, solve
from ._chain_dp import ChainDP, viterbi
from ._chunked import SolveProgress, solve_chunked
from ._default import Default, default_solver
from ._gradient import GradientMAP
from ._icm import CheckerboardICM

__all__ = [
    "AbstractIterativeSolver",
    "AbstractSolver",
    "ChainDP",
    "CheckerboardICM",
    "Default",
    "GradientMAP",
    "SolveProgress",
    "SolveResult",
    "default_solver",
    "solve",
    "solve_chunked",
    "viterbi",
]
