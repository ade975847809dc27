"""Test-suite hygiene: each test module starts with JAX's compiled-program caches cleared, so the single pytest
process does not accumulate every executable of the ~430 tests (memory grows by GBs otherwise)."""

import gc

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _fresh_jax_caches():
    yield
    jax.clear_caches()
    gc.collect()
