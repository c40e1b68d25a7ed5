"""The one dm-haiku comparison: an mh.nn function and dm-haiku's on the same weights.

The minihaiku params are randomised, copied into Haiku's layout by a
``to_haiku`` function, and outputs and gradients (w.r.t. the float inputs
and the params) are compared at atol 1e-5. dm-haiku is a test-only
dependency; the library never imports it.
"""

import haiku as hk
import jax
import jax.numpy as jnp

import minihaiku as mh
from helpers.close import assert_close

KEY = jax.random.PRNGKey(0)
ATOL = 1e-5


def randn(seed, shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, dtype)


def randomize(params, seed=1):
    return {k: randn(seed + i, v.shape) for i, (k, v) in enumerate(params.items())}


def module_params(params, prefix, names=("w", "b")):
    """``{name: params[prefix + name]}`` for the names present."""
    return {n: params[prefix + n] for n in names if prefix + n in params}


def compare(mh_fn, hk_fn, to_haiku, *args, grads=True, grad_atol=1e-5):
    """Asserts ``mh_fn`` and ``hk_fn`` agree on copied weights; returns the mh params.

    Checks that the copied tree has exactly the layout Haiku creates, that the
    outputs match, and (``grads``) that the gradients of a random projection of
    the output w.r.t. the params and every float argument match (``grad_atol``:
    the absolute tolerance of the gradients).
    """
    ours, theirs = mh.transform(mh_fn), hk.transform(hk_fn)
    params = randomize(ours.init(KEY, *args))
    hk_params = to_haiku(params)
    hk_shapes = jax.tree_util.tree_map(jnp.shape, theirs.init(KEY, *args))
    assert jax.tree_util.tree_map(jnp.shape, hk_params) == hk_shapes, (
        jax.tree_util.tree_map(jnp.shape, hk_params), hk_shapes)
    out = ours.apply(params, None, *args)
    assert_close(out, theirs.apply(hk_params, None, *args))
    if not grads:
        return params
    cotangent = jax.tree_util.tree_map(lambda y: randn(99, jnp.shape(y)), out)

    leaves, treedef = jax.tree_util.tree_flatten(args)
    floats = [i for i, v in enumerate(leaves) if jnp.issubdtype(jnp.result_type(v), jnp.inexact)]

    def project(apply, p, float_leaves):
        full = list(leaves)
        for i, v in zip(floats, float_leaves, strict=True):
            full[i] = v
        y = apply(p, None, *jax.tree_util.tree_unflatten(treedef, full))
        return sum(jnp.sum(a * c) for a, c in zip(jax.tree_util.tree_leaves(y),
                                                   jax.tree_util.tree_leaves(cotangent),
                                                   strict=True))

    float_args = [leaves[i] for i in floats]
    g_params, g_args = jax.grad(lambda p, xs: project(ours.apply, p, xs), (0, 1))(
        params, float_args)
    hk_g_params, hk_g_args = jax.grad(lambda p, xs: project(theirs.apply, p, xs),
                                      (0, 1))(hk_params, float_args)
    assert_close(to_haiku(g_params), hk_g_params, atol=grad_atol)
    assert_close(g_args, hk_g_args, atol=grad_atol)
    return params
