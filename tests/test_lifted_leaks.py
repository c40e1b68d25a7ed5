"""The mh.lifted tests once more, under ``jax_check_tracer_leaks``.

A lifted transform that let a tracer escape (a param created inside a JAX
transform and stored in the outer frame, say) would fail here even when the
values happen to come out right. The full rerun of test_lifted.py is marked
slow (``pytest -m slow``); the default run checks every lifted transform at
once in ``AllTransformsLeakTest``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest

import minihaiku as mh
import test_lifted as base

L = mh.lifted


class _LeakChecked:

    def setUp(self):
        super().setUp()
        self._was = jax.config.jax_check_tracer_leaks
        jax.config.update("jax_check_tracer_leaks", True)

    def tearDown(self):
        jax.config.update("jax_check_tracer_leaks", self._was)
        super().tearDown()


def _everything(x):
    """Every lifted transform once, with params, state and keys."""
    Linear = base.Linear
    x = L.remat(lambda x: jnp.tanh(Linear(3)(x)))(x)

    def cell(h, x):
        n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
        mh.set_state("n", n + 1)
        return jnp.tanh(Linear(3)(x) + Linear(3)(h)), mh.next_rng_key()

    x, _ = L.scan(cell, x, jnp.ones((2,) + x.shape))
    x = L.layer_stack(2)(lambda x: jnp.tanh(Linear(3)(x)) + mh.get_state(
        "s", (), init=jnp.ones))(x)
    x = L.vmap(lambda x: Linear(3)(x) + jax.random.normal(mh.next_rng_key(), (3,)),
               split_rng=True)(x)
    x = L.cond(jnp.sum(x) > 0, lambda x: Linear(3)(x), lambda x: 2 * Linear(3)(x), x)
    x = L.switch(1, [lambda x: Linear(3)(x), lambda x: -Linear(3)(x)], x)
    x = L.fori_loop(0, 2, lambda i, x: jnp.tanh(Linear(3)(x)), x)
    return L.while_loop(lambda c: c[0] < 2, lambda c: (c[0] + 1, Linear(3)(c[1])), (0, x))[1]


class AllTransformsLeakTest(_LeakChecked, absltest.TestCase):

    def test_checker_is_on(self):
        leaked = []
        with self.assertRaises(Exception):
            jax.jit(lambda x: leaked.append(x) or x)(1.0)

    def test_every_transform_init_apply_jit_jvp(self):
        init, apply = mh.transform_with_state(_everything)
        params, state = init(0, base.X)
        out, new_state = apply(params, state, 1, base.X)
        jit_params, jit_state = jax.jit(init)(0, base.X)
        # Bit for bit, as the API promises.
        jax.tree_util.tree_map(np.testing.assert_array_equal, (jit_params, jit_state),
                               (params, state))
        jit_out, _ = jax.jit(apply)(params, state, 1, base.X)
        base.assert_close(jit_out, out)
        self.assertEqual(int(new_state["~/n"]), 2)
        # Forward mode: while_loop has no reverse mode.
        tangent = jax.tree_util.tree_map(jnp.ones_like, params)
        primal_out, tangent_out = jax.jit(lambda p, t: jax.jvp(
            lambda p: apply(p, state, 1, base.X)[0], (p,), (t,)))(params, tangent)
        base.assert_close(primal_out, out)
        self.assertEqual(tangent_out.shape, out.shape)


@pytest.mark.slow
class RematLeakTest(_LeakChecked, base.RematTest):
    pass


@pytest.mark.slow
class ScanLeakTest(_LeakChecked, base.ScanTest):
    pass


@pytest.mark.slow
class LayerStackLeakTest(_LeakChecked, base.LayerStackTest):
    pass


@pytest.mark.slow
class VmapLeakTest(_LeakChecked, base.VmapTest):
    pass


@pytest.mark.slow
class CondSwitchLeakTest(_LeakChecked, base.CondSwitchTest):
    pass


@pytest.mark.slow
class LoopsLeakTest(_LeakChecked, base.LoopsTest):
    pass


@pytest.mark.slow
class NestingLeakTest(_LeakChecked, base.NestingTest):
    pass


@pytest.mark.slow
class UnliftedLeakTest(_LeakChecked, base.UnliftedTransformTest):
    pass


if __name__ == "__main__":
    absltest.main()
