"""Shared input handling of the theory package: parameter files (JSON) and momentum arrays."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp

from .._errors import DataNotFoundError, FormatError, ShapeError, ValidationError


def read_json(path) -> Any:
    """The parsed content of the JSON file ``path``; :class:`DataNotFoundError` if it is missing,
    :class:`FormatError` if it is not valid JSON."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataNotFoundError(f"parameter file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise FormatError(f"{path}: not valid JSON ({err})") from None


def check_k(k, width: tuple[int, ...] = (2,)) -> jax.Array:
    """``k`` as a real float array whose last axis (Cartesian components, 1/A) has one of the lengths ``width``."""
    k = jnp.asarray(k)
    if k.ndim < 1 or k.shape[-1] not in width:
        want = " or ".join(map(str, width))
        raise ShapeError("k", f"last axis must have length {want} (Cartesian 1/angstrom), got shape {k.shape}")
    if jnp.issubdtype(k.dtype, jnp.complexfloating):
        raise ValidationError("k", "must be real")
    if not jnp.issubdtype(k.dtype, jnp.floating):
        k = k.astype(jnp.result_type(float))
    return k
