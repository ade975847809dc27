"""Hyperparameters without a grid search by eye.

* :func:`learn_eta`: learn ``eta`` (and the theory-prior width ``sigma``) by gradient descent on a
  held-out-pixel likelihood, differentiating through the MAP solution (implicit function theorem).
* :func:`sweep`: the reference's ``eta x offset`` grid as one compiled, batched call, optionally scored by the
  same held-out criterion.
* Building blocks: :class:`MaskedLikelihood`, :class:`HeldOut`, :func:`split_holdout`, :func:`holdout_mask`, :func:`holdout_masks`,
  :func:`set_eta`, :func:`set_sigma`, :func:`hypergradient`.
"""

from ._learn import (
    HeldOut,
    HeldOutCounts,
    LearnResult,
    MaskedLikelihood,
    holdout_mask,
    holdout_masks,
    hypergradient,
    learn_eta,
    make_folds,
    set_eta,
    set_sigma,
    split_holdout,
    thin_counts,
)
from ._sweep import SweepResult, sweep

__all__ = [
    "HeldOut",
    "HeldOutCounts",
    "LearnResult",
    "MaskedLikelihood",
    "SweepResult",
    "holdout_mask",
    "holdout_masks",
    "hypergradient",
    "learn_eta",
    "make_folds",
    "set_eta",
    "set_sigma",
    "split_holdout",
    "sweep",
    "thin_counts",
]
