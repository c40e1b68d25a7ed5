"""mh.lifted.unstack / stack / per_layer against the same model unrolled."""

import pathlib
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import absltest

import minihaiku as mh
from helpers.subprocess_env import subprocess_env

L = mh.lifted
WIDTH, LAYERS = 8, 4
X = jnp.linspace(-1.0, 1.0, 2 * WIDTH).reshape(2, WIDTH)


def _block(x):
    h = mh.nn.Linear(2 * WIDTH)(x)
    return x + mh.nn.Linear(WIDTH)(jnp.tanh(h))


def _stacked(layers=LAYERS):
    return mh.without_apply_rng(mh.transform(lambda x: L.layer_stack(layers)(_block)(x)))


def _unrolled(layers=LAYERS):
    def f(x):
        for i in range(layers):
            with mh.name_scope(f"layer_{i}"):
                x = _block(x)
        return x
    return mh.without_apply_rng(mh.transform(f))


def _shampoo_like(eps=1e-3):
    """A rank-dependent preconditioner: Shampoo's L^-1/4 G R^-1/4 for matrices, sign-ish else."""

    def inv_root(m):
        w, v = jnp.linalg.eigh(m)
        return (v * w ** -0.25) @ v.T

    def init(params):
        def one(p):
            if p.ndim == 2:
                return (eps * jnp.eye(p.shape[0]), eps * jnp.eye(p.shape[1]))
            return jnp.zeros_like(p)
        return jax.tree_util.tree_map(one, params)

    def update(updates, state, params=None):
        del params

        def one(g, s):
            if g.ndim == 2:
                left, right = s[0] + g @ g.T, s[1] + g.T @ g
                return inv_root(left) @ g @ inv_root(right), (left, right)
            acc = s + g * g
            return g / jnp.sqrt(acc + eps), acc

        flat = {p: one(updates[p], state[p]) for p in updates}
        return {p: u for p, (u, _) in flat.items()}, {p: s for p, (_, s) in flat.items()}

    return optax.GradientTransformation(init, update)


def _updates_both_ways(tx_factory, steps=3):
    """The updates of per_layer(tx) on the stacked model and of tx on the unrolled one."""
    stacked_f, unrolled_f = _stacked(), _unrolled()
    params = stacked_f.init(0, X)
    views = L.unstack(params, LAYERS)
    np.testing.assert_array_equal(  # the same network
        stacked_f.apply(params, X), unrolled_f.apply(views, X))
    tx_s, tx_u = L.per_layer(tx_factory(), LAYERS), tx_factory()
    state_s, state_u = tx_s.init(params), tx_u.init(views)
    grad_s = jax.jit(jax.grad(lambda p: jnp.sum(stacked_f.apply(p, X) ** 2)))
    grad_u = jax.jit(jax.grad(lambda p: jnp.sum(unrolled_f.apply(p, X) ** 2)))
    update_s, update_u = jax.jit(tx_s.update), jax.jit(tx_u.update)
    diffs = []
    for _ in range(steps):
        up_s, state_s = update_s(grad_s(params), state_s, params)
        up_u, state_u = update_u(grad_u(views), state_u, views)
        mapped = L.unstack(up_s, LAYERS)
        diffs.append(max(float(jnp.max(jnp.abs(mapped[k] - up_u[k]))) for k in up_u))
        params = optax.apply_updates(params, up_s)
        views = optax.apply_updates(views, up_u)
    return max(diffs), params, views


class ViewsTest(absltest.TestCase):

    def test_views_are_the_unrolled_models_params(self):
        params = _stacked().init(0, X)
        views = L.unstack(params, LAYERS)
        self.assertEqual(set(views), set(_unrolled().init(0, X)))
        for i in range(LAYERS):
            np.testing.assert_array_equal(
                views[f"~/layer_{i}/Linear_0/__call__/w"], params["~/Linear_0/__call__/w"][i])
        back = L.stack(views)
        self.assertEqual(list(back), list(params))
        for k in params:
            np.testing.assert_array_equal(back[k], params[k])
        self.assertEqual(set(L.unstack(L.stack(views), LAYERS)), set(views))

    def test_nested_stacks_round_trip(self):
        def f(x):
            inner = L.layer_stack(3)(lambda h: jnp.tanh(mh.nn.Linear(WIDTH)(h)))
            return L.layer_stack(2)(inner)(mh.nn.Linear(WIDTH, name="stem")(x))

        params = mh.transform(f).init(0, X)
        self.assertEqual(params["~/Linear_0/__call__/w"].shape, (2, 3, WIDTH, WIDTH))
        outer = L.unstack(params, 2, where="Linear_0")
        both = {**L.unstack(outer, 3, where="layer_")}
        self.assertIn("~/layer_1/layer_2/Linear_0/__call__/w", both)
        np.testing.assert_array_equal(both["~/layer_1/layer_2/Linear_0/__call__/w"],
                                      params["~/Linear_0/__call__/w"][1, 2])
        self.assertIn("~/stem_0/__call__/w", both)     # not stacked: kept as is
        back = L.stack(L.stack(both))
        self.assertEqual(set(back), set(params))
        for k in params:
            np.testing.assert_array_equal(back[k], params[k])

    def test_where_limits_the_split(self):
        tree = {"~/a/w": jnp.zeros((3, 2)), "~/b/w": jnp.zeros((3, 5))}
        views = L.unstack(tree, 3, where=lambda path, v: path.startswith("~/a"))
        self.assertEqual(sorted(views), ["~/b/w", "~/layer_0/a/w", "~/layer_1/a/w",
                                         "~/layer_2/a/w"])

    def test_bad_inputs(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "num_layers=0"):
            L.unstack({}, 0)
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"layers \[0, 2\]"):
            L.stack({"~/layer_0/w": jnp.zeros(2), "~/layer_2/w": jnp.zeros(2)})
        with self.assertRaisesRegex(mh.MismatchError, "layer_1 of '~/w' has shape"):
            L.stack({"~/layer_0/w": jnp.zeros(2), "~/layer_1/w": jnp.zeros(3)})
        with self.assertRaisesRegex(mh.InvalidArgumentError, "where=3"):
            L.unstack({}, 2, where=3)


class PerLayerTest(absltest.TestCase):

    def test_factored_adafactor_equals_unrolled(self):
        def adafactor():
            return optax.adafactor(1e-2, min_dim_size_to_factor=4)
        diff, params, views = _updates_both_ways(adafactor)
        self.assertLess(diff, 1e-6)
        stacked = L.unstack(params, LAYERS)
        for k in views:
            np.testing.assert_allclose(stacked[k], views[k], atol=1e-6)

    def test_plain_adafactor_on_the_stack_differs(self):
        # The check above has teeth: without per_layer the stacked [n, a, b]
        # tensor is factored over its last two axes only for rank >= 2 params,
        # but its update clipping and scale use the whole stack.
        stacked_f = _stacked()
        params = stacked_f.init(0, X)
        grads = jax.grad(lambda p: jnp.sum(stacked_f.apply(p, X) ** 2))(params)
        tx = optax.adafactor(1e-2, min_dim_size_to_factor=4)
        plain, _ = jax.jit(tx.update)(grads, tx.init(params), params)
        wrapped = L.per_layer(tx, LAYERS)
        ours, _ = jax.jit(wrapped.update)(grads, wrapped.init(params), params)
        self.assertGreater(max(float(jnp.max(jnp.abs(plain[k] - ours[k]))) for k in ours), 1e-4)

    def test_shampoo_like_equals_unrolled(self):
        diff, _, _ = _updates_both_ways(_shampoo_like)
        self.assertLess(diff, 1e-6)

    def test_unstacked_entries_and_extra_args_pass_through(self):
        tx = L.per_layer(optax.sgd(0.5), 3)
        params = {"~/a/w": jnp.ones((3, 2)), "~/b/w": jnp.ones((2,))}
        updates, state = tx.update(params, tx.init(params), params, value=jnp.float32(1.0))
        self.assertEqual(list(updates), list(params))
        np.testing.assert_allclose(updates["~/b/w"], -0.5 * jnp.ones(2))
        self.assertEqual(jax.tree_util.tree_leaves(state.stacked), [])

    @pytest.mark.slow
    def test_compile_time_of_64_layers_stays_near_8(self):
        def seconds(layers, lr):
            f = _stacked(layers)
            tx = L.per_layer(optax.adafactor(lr, min_dim_size_to_factor=4), layers)
            params = jax.eval_shape(f.init, 0, X)
            state = jax.eval_shape(tx.init, params)

            def step(params, state):
                grads = jax.grad(lambda p: jnp.sum(f.apply(p, X) ** 2))(params)
                updates, state = tx.update(grads, state, params)
                return optax.apply_updates(params, updates), state

            lowered = jax.jit(step).lower(params, state)
            start = time.perf_counter()
            lowered.compile()
            return time.perf_counter() - start

        seconds(2, 1e-2)    # one-time start-up costs
        # XLA caches compiled programs, so each trial bakes in its own learning
        # rate; interleaved, best of three: a busy CI core only adds time.
        trials = [(seconds(8, 1e-2 * k), seconds(64, 1e-2 * k)) for k in (1, 2, 3)]
        c8, c64 = min(t[0] for t in trials), min(t[1] for t in trials)
        self.assertLessEqual(c64 / c8, 1.3, trials)


_SCRIPT = pathlib.Path(__file__).with_name("layer_views_devices.py")


class ShardedTest(absltest.TestCase):

    @pytest.mark.slow
    def test_stacked_axis_stays_unsharded_on_4_devices(self):
        proc = subprocess.run([sys.executable, str(_SCRIPT)],
                              env=subprocess_env(4, JAX_PLATFORMS="cpu"), capture_output=True,
                              text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertIn("OK", proc.stdout)


if __name__ == "__main__":
    absltest.main()
