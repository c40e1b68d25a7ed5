"""Lifted ops as wrappers ``g -> x -> x``, nested at will, and the checks every nesting passes.

Each wrapper takes an inner function ``g`` mapping ``x`` to an ``x`` of the same
shape and returns one too. The innermost function builds a Linear, counts its
calls in state and draws a key; the whole nesting runs in a module called twice.
"""

import jax
import jax.numpy as jnp
import numpy as np

import minihaiku as mh
from lifted.common import L, Linear, X


def leaf(x):
    n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
    mh.set_state("n", n + 1)
    noise = jax.random.normal(mh.next_rng_key(), jnp.shape(x))
    return jnp.tanh(Linear(3)(x)) + 0.01 * noise + 0.001 * n


def _grad(g):
    return lambda x: x + 0.1 * L.grad(lambda x: jnp.sum(jnp.tanh(g(x))))(x)


def _vmap(g, split_rng):
    """Maps ``g`` over two examples ``x, -x`` and averages: keeps ``x``'s rank."""
    return lambda x: jnp.mean(L.vmap(g, split_rng=split_rng)(jnp.stack([x, -x])), axis=0)


WRAPPERS = {
    "remat": lambda g: L.remat(g),
    "scan": lambda g: lambda x: L.scan(lambda c, _: (g(c), None), x, None, length=2)[0],
    "layer_stack": lambda g: L.layer_stack(2)(g),
    "vmap_split": lambda g: _vmap(g, True),
    "vmap": lambda g: _vmap(g, False),
    # The predicate is traced but not batched: under vmap, state set in one
    # branch only would otherwise depend on the example (refused, rightly).
    "cond": lambda g: lambda x: L.cond(jnp.ones(()) > 0, g, lambda x: 0.5 * x, x),
    "switch": lambda g: lambda x: L.switch(jnp.ones((), jnp.int32), [lambda x: 2.0 * x, g], x),
    "fori_loop": lambda g: lambda x: L.fori_loop(0, 2, lambda i, x: g(x), x),
    "while_loop": lambda g: lambda x: L.while_loop(
        lambda c: c[0] < 2, lambda c: (c[0] + 1, g(c[1])), (0, x))[1],
    "grad": _grad,
}
NAMES = tuple(WRAPPERS)


class _Block(mh.Module):
    def __init__(self, names):
        super().__init__()
        self.names = names

    def __call__(self, x):
        fn = leaf
        for name in reversed(self.names):  # names[0] outermost
            fn = WRAPPERS[name](fn)
        return fn(x)


def model(names):
    """A transform running the nesting ``names`` (outermost first) in a module called twice."""
    def f(x):
        block = _Block(names)
        return block(block(x))
    return mh.transform_with_state(f)


def _close(test, a, b, what):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5,
                                   err_msg=what)


def check(test, names):
    """Init (eager = jitted), apply (eager = jitted), finite derivatives w.r.t. params."""
    init, apply = model(names)
    if "grad" in names and "while_loop" in names[names.index("grad"):]:
        # Reverse mode through lax.while_loop does not exist, lifted or not.
        with test.assertRaisesRegex(ValueError, "while_loop"):
            init(0, X)
        return
    params, state = init(0, X)
    test.assertNotEmpty(params)
    _close(test, jax.jit(init)(0, X), (params, state), f"{names}: jit(init) != init")
    out, new_state = apply(params, state, 1, X)
    test.assertEqual(out.shape, X.shape)
    jit_out, jit_state = jax.jit(apply)(params, state, 1, X)
    _close(test, (jit_out, jit_state), (out, new_state), f"{names}: jit(apply) != apply")

    def loss(p):
        return jnp.sum(apply(p, state, 1, X)[0])

    if "while_loop" in names:  # lax.while_loop is only forward-differentiable
        tangent = jax.tree_util.tree_map(jnp.ones_like, params)
        derivative = jax.jit(lambda p: jax.jvp(loss, (p,), (tangent,))[1])(params)
    else:
        derivative = jax.jit(jax.grad(loss))(params)
    for leaf_value in jax.tree_util.tree_leaves(derivative):
        test.assertTrue(np.all(np.isfinite(leaf_value)), f"{names}: non-finite derivative")
