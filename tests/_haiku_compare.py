"""Test helper: run a minihaiku function and its dm-haiku twin on the same weights."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

import minihaiku as mh

KEY = jax.random.PRNGKey(0)
ATOL = 1e-5


def randn(seed, shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def randomize(params, seed=1):
    return {k: randn(seed + i, v.shape) for i, (k, v) in enumerate(params.items())}


def assert_close(a, b, atol=ATOL):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=atol)


def check_values_and_grads(test, mh_fn, hk_fn, to_haiku, *args):
    """Same outputs, and same gradients wrt params and the first input, as Haiku.

    ``to_haiku`` maps a minihaiku params dict (or its gradient) to Haiku's tree.
    """
    ours = mh.transform(mh_fn)
    params = randomize(ours.init(KEY, *args))
    theirs = hk.transform(hk_fn)
    hk_params = to_haiku(params)
    hk_shapes = jax.tree_util.tree_map(jnp.shape, theirs.init(KEY, *args))
    test.assertEqual(jax.tree_util.tree_map(jnp.shape, hk_params), hk_shapes)
    out = ours.apply(params, None, *args)
    assert_close(out, theirs.apply(hk_params, None, *args))
    cot = randn(99, out.shape)

    def loss(apply, p, x):
        return jnp.sum(apply(p, None, x, *args[1:]) * cot)

    g_p, g_x = jax.grad(lambda p, x: loss(ours.apply, p, x), (0, 1))(params, args[0])
    hk_g_p, hk_g_x = jax.grad(lambda p, x: loss(theirs.apply, p, x), (0, 1))(hk_params, args[0])
    assert_close(to_haiku(g_p), hk_g_p)
    assert_close(g_x, hk_g_x)
    return ours, params
