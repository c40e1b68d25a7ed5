"""The one ``assert_close`` of the tests."""

import jax
import numpy as np


def assert_close(a, b, *, rtol=1e-5, atol=1e-5):
    """Every leaf of ``a`` is close to the matching leaf of ``b``.

    The trees must have as many leaves, and dicts the same keys; other
    containers may differ (minihaiku's ``LSTMState`` against dm-haiku's).
    """
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), (sorted(a), sorted(b))
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b), (len(leaves_a), len(leaves_b))
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
