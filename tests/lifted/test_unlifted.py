"""Raw JAX transforms around params, state or keys: refused, pointing to mh.lifted."""


import jax
import jax.numpy as jnp
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L, X, assert_close


def _touch_param(x):
    return x * mh.get_param("w", x.shape[-1:], init=jax.nn.initializers.ones)


def _touch_state(x):
    mh.set_state("s", jnp.sum(x))
    return x


def _touch_rng(x):
    return x + jax.random.normal(mh.next_rng_key(), x.shape)


# raw JAX transform -> (wrapper, words the error must contain to point to the fix).
RAW = {
    "jit": (lambda g: lambda x: jax.jit(g)(x), ["jax.jit(apply)"]),
    "vmap": (lambda g: lambda x: jax.vmap(g)(x), ["mh.lifted", "vmap"]),
    "scan": (lambda g: lambda x: jax.lax.scan(lambda c, x: (c, g(x)), 0.0, x)[1],
             ["mh.lifted.scan"]),
    "checkpoint": (lambda g: lambda x: jax.checkpoint(g)(x), ["mh.lifted", "remat"]),
    "grad": (lambda g: lambda x: jax.grad(lambda x: jnp.sum(g(x)))(x),
             ["jax.grad", "mh.lifted.grad"]),
    "cond": (lambda g: lambda x: jax.lax.cond(True, g, lambda x: x, x),
             ["mh.lifted", "cond"]),
}


class UnliftedTransformTest(parameterized.TestCase):

    @parameterized.product(raw=list(RAW), touch=["param", "state", "rng"],
                           phase=["init", "apply"])
    def test_raw_transform_is_refused(self, raw, touch, phase):
        if touch == "param" and phase == "apply":
            return self._check_param_read_allowed(raw)
        wrap, hint = RAW[raw]
        inner = {"param": _touch_param, "state": _touch_state, "rng": _touch_rng}[touch]
        init, apply = mh.transform_with_state(wrap(inner))
        params = {"~/w": jnp.ones(3)}
        state = {"~/s": jnp.zeros(())}
        with self.assertRaises(mh.UnliftedTransformError) as cm:
            if phase == "init":
                init(0, X)
            else:
                apply(params, state, 0, X)
        for word in hint:
            self.assertIn(word, str(cm.exception))
        # The failed call left no frame behind.
        self.assertFalse(mh.inside_transform())

    def _check_param_read_allowed(self, raw):
        # Reading an existing param in apply is harmless under a raw transform
        # (the value is only closed over), so the core allows it.
        wrap, _ = RAW[raw]
        apply = mh.transform(wrap(_touch_param)).apply
        params = {"~/w": jnp.full((3,), 2.0)}
        assert_close(apply(params, None, X), wrap(lambda x: 2.0 * x)(X))

    def test_lifted_function_inside_raw_transform_is_refused(self):
        def f(x):
            return jax.jit(lambda x: L.remat(_touch_param)(x))(x)

        with self.assertRaises(mh.UnliftedTransformError):
            mh.transform(f).init(0, X)

    @parameterized.parameters(list(RAW))
    def test_raw_transform_around_pure_code_is_allowed(self, raw):
        wrap, _ = RAW[raw]

        def f(x):
            y = _touch_param(x)
            return wrap(jnp.sin)(y)

        init, apply = mh.transform(f)
        params = init(0, X)
        assert_close(apply(params, None, X), wrap(jnp.sin)(X))

    @parameterized.parameters(list(RAW))
    def test_raw_transform_around_other_apply_is_allowed(self, raw):
        wrap, _ = RAW[raw]
        inner = mh.transform(_touch_param)
        inner_params = {"~/w": jnp.full((3,), 2.0)}

        def f(x):
            return wrap(lambda x: inner.apply(inner_params, None, x))(x) + _touch_param(x)

        init, apply = mh.transform(f)
        params = init(0, X)
        want = wrap(lambda x: 2.0 * x)(X) + X
        assert_close(apply(params, None, X), want)


if __name__ == "__main__":
    absltest.main()
