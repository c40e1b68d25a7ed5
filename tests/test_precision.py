"""mh.precision: dtype policies against hand-written mixed-precision JAX."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

import minihaiku as mh
from minihaiku import frame as frame_lib

BF16 = "params=float32,compute=bfloat16,output=float32"
X = jnp.linspace(-2.0, 2.0, 24).reshape(4, 6)
KEY = jax.random.PRNGKey(0)


def bf(v):
    return v.astype(jnp.bfloat16)


def mlp_by_hand(p, x, prefix="~/MLP_0/__call__"):
    """A bf16-compute MLP([8, 3]) with f32 params and output, written out."""
    w0, b0 = p[f"{prefix}/Linear_0/__call__/w"], p[f"{prefix}/Linear_0/__call__/b"]
    w1, b1 = p[f"{prefix}/Linear_1/__call__/w"], p[f"{prefix}/Linear_1/__call__/b"]
    h = jax.nn.relu(bf(x) @ bf(w0) + bf(b0))
    return (h @ bf(w1) + bf(b1)).astype(jnp.float32)


def hlo_dots(lowered) -> list:
    return re.findall(r"(\w+)\[[\d,]*\]\{[\d,]*\} dot\(", lowered.as_text(dialect="hlo"))


class PrecisionTestCase(absltest.TestCase):

    def tearDown(self):
        mh.precision.clear_policies()
        super().tearDown()


class PolicyTest(PrecisionTestCase):

    def test_string_and_constructor_agree(self):
        self.assertEqual(mh.precision.Policy.parse(BF16),
                         mh.precision.Policy(jnp.float32, jnp.bfloat16, jnp.float32))
        self.assertEqual(mh.precision.Policy.parse("compute=float16").compute_dtype,
                         jnp.float16)

    def test_bad_strings_and_targets_are_refused(self):
        for text in ("params=notadtype", "weights=float32", "float32"):
            with self.assertRaises(mh.InvalidArgumentError, msg=text):
                mh.precision.Policy.parse(text)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "Module subclass or a regex"):
            mh.precision.set_policy(int, BF16)
        with self.assertRaises(mh.InvalidArgumentError):
            mh.precision.set_policy(mh.nn.MLP, 3)

    def test_set_get_clear(self):
        mh.precision.set_policy(mh.nn.MLP, BF16)
        mh.precision.set_policy("encoder", "compute=float16")
        self.assertEqual(mh.precision.get_policy(mh.nn.MLP), mh.precision.Policy.parse(BF16))
        self.assertEqual(mh.precision.get_policy("encoder").compute_dtype, jnp.float16)
        self.assertIsNone(mh.precision.get_policy(mh.nn.Linear))
        self.assertIsNotNone(_run_hooks())
        mh.precision.set_policy(mh.nn.MLP, None)
        self.assertIsNone(mh.precision.get_policy(mh.nn.MLP))
        mh.precision.clear_policies()
        self.assertIsNone(_run_hooks())


def _run_hooks():
    """The interceptors an eager run starts with (None: the fast path)."""
    seen = []
    mh.transform(lambda: seen.append(frame_lib.frames()[-1].hooks)).init(None)
    return seen[0]


class MixedPrecisionMLPTest(PrecisionTestCase):

    def setUp(self):
        super().setUp()
        mh.precision.set_policy(mh.nn.MLP, BF16)
        self.f = mh.without_apply_rng(mh.transform(lambda x: mh.nn.MLP([8, 3])(x)))

    def test_params_float32_output_float32_matches_hand_written(self):
        params = self.f.init(KEY, X)
        self.assertEqual({v.dtype for v in params.values()}, {jnp.dtype(jnp.float32)})
        out = self.f.apply(params, X)
        self.assertEqual(out.dtype, jnp.float32)
        np.testing.assert_allclose(out, mlp_by_hand(params, X), rtol=1e-2, atol=1e-2)
        # And not what float32 compute gives (bf16 rounding is visible).
        plain = mh.transform(lambda x: mh.nn.MLP([8, 3])(x))
        mh.precision.clear_policies()
        self.assertGreater(float(jnp.abs(plain.apply(params, None, X) - out).max()), 1e-4)

    def test_jitted_hlo_has_bf16_dots(self):
        params = self.f.init(KEY, X)
        lowered = jax.jit(self.f.apply).lower(params, X)
        self.assertEqual(hlo_dots(lowered), ["bf16", "bf16"])
        compiled = lowered.compile().as_text()
        if jax.default_backend() == "cpu":
            # XLA:CPU upcasts bf16 dots to f32 but keeps the bf16 rounding.
            self.assertIn("bf16[", compiled)
        else:
            self.assertRegex(compiled, r"bf16\[[\d,]*\]\{[\d,]*\} dot\(")

    def test_trains_with_optax_and_params_stay_float32(self):
        x = jax.random.normal(jax.random.PRNGKey(1), (64, 6))
        y = jnp.sin(x[:, :3])
        params = self.f.init(KEY, x)
        opt = optax.adam(1e-2)
        opt_state = opt.init(params)

        def loss_fn(p):
            return jnp.mean((self.f.apply(p, x) - y) ** 2)

        @jax.jit
        def step(p, s):
            loss, grads = jax.value_and_grad(loss_fn)(p)
            updates, s = opt.update(grads, s, p)
            return optax.apply_updates(p, updates), s, loss

        losses = []
        for _ in range(30):
            params, opt_state, loss = step(params, opt_state)
            losses.append(float(loss))
        self.assertLess(losses[-1], 0.7 * losses[0])
        self.assertEqual({v.dtype for v in params.values()}, {jnp.dtype(jnp.float32)})
        self.assertEqual(self.f.apply(params, x).dtype, jnp.float32)

    def test_policy_holds_under_layer_stack(self):
        def f(x):
            return mh.lifted.layer_stack(3)(lambda h: jnp.tanh(mh.nn.MLP([6, 6])(h)))(x)

        init, apply = mh.without_apply_rng(mh.transform(f))
        params = init(KEY, X)
        self.assertEqual({v.dtype for v in params.values()}, {jnp.dtype(jnp.float32)})
        self.assertEqual(params["~/MLP_0/__call__/Linear_0/__call__/w"].shape, (3, 6, 6))
        self.assertEqual(apply(params, X).dtype, jnp.float32)
        self.assertEqual(set(hlo_dots(jax.jit(apply).lower(params, X))), {"bf16"})


class NormTest(PrecisionTestCase):

    def _block(self, seen):
        class RecordingNorm(mh.nn.LayerNorm):
            def __call__(self, x):
                seen.append(("norm input", x.dtype))
                return super().__call__(x)

        class Block(mh.Module):
            def __call__(self, x):
                h = mh.nn.Linear(6)(x)
                out = RecordingNorm()(h)
                seen.append(("norm output", out.dtype))
                return out

        return mh.without_apply_rng(mh.transform(lambda x: Block()(x))), Block

    def test_norms_stay_float32_inside_a_bf16_module(self):
        seen = []
        f, block = self._block(seen)
        mh.precision.set_policy(block, BF16)
        params = f.init(KEY, X)
        self.assertEqual({v.dtype for v in params.values()}, {jnp.dtype(jnp.float32)})
        seen.clear()
        out = f.apply(params, X)
        self.assertEqual(seen, [("norm input", jnp.float32), ("norm output", jnp.bfloat16)])
        self.assertEqual(out.dtype, jnp.float32)
        # By hand: bf16 linear, float32 norm, rounded to bf16, returned as f32.
        p = {k.rsplit("/", 1)[-1]: v for k, v in params.items()}
        h = (bf(X) @ bf(p["w"]) + bf(p["b"])).astype(jnp.float32)
        mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        ref = bf((h - mean) * jax.lax.rsqrt(var + 1e-5) * p["scale"] + p["offset"])
        np.testing.assert_allclose(out, ref.astype(jnp.float32), rtol=1e-2, atol=1e-2)

    def test_an_explicit_norm_policy_wins(self):
        seen = []
        f, block = self._block(seen)
        mh.precision.set_policy(block, BF16)
        mh.precision.set_policy(mh.nn.LayerNorm, "params=float32,compute=bfloat16,"
                                "output=bfloat16")
        params = f.init(KEY, X)
        seen.clear()
        f.apply(params, X)
        self.assertEqual(seen, [("norm input", jnp.bfloat16), ("norm output", jnp.bfloat16)])


class PathPolicyTest(PrecisionTestCase):

    def test_path_regex_selects_modules(self):
        mh.precision.set_policy(r"^~/MLP_1\b", "compute=bfloat16,output=bfloat16")

        def f(x):
            return mh.nn.MLP([3])(x), mh.nn.MLP([3])(x)

        init, apply = mh.without_apply_rng(mh.transform(f))
        params = init(KEY, X)
        a, b = apply(params, X)
        self.assertEqual((a.dtype, b.dtype), (jnp.float32, jnp.bfloat16))
        self.assertEqual(hlo_dots(jax.jit(apply).lower(params, X)), ["f32", "bf16"])


if __name__ == "__main__":
    absltest.main()
