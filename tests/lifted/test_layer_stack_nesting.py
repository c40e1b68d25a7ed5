"""layer_stack inside other lifted ops and in a module called twice: params reused."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L, Linear, X, assert_close, jgrad, lin, shapes

P = "~/Linear_0/__call__"


def _body(x):
    return jnp.tanh(Linear(3)(x))


def _stack(x):
    return L.layer_stack(2)(_body)(x)


def _ref_stack(params, x, prefix=P):
    for i in range(2):
        x = jnp.tanh(lin({k: v[i] for k, v in params.items()}, prefix, x))
    return x


class _Core(mh.nn.RNNCore):
    hidden_size = 3

    def __call__(self, x, prev_state):
        h = _stack(x + prev_state)
        return h, h


def _twice_ref(p, x):
    return _ref_stack(p, _ref_stack(p, x))


# name -> (model, reference(params, x)): the stack runs inside each lifted op.
_NESTINGS = {
    "scan": (lambda x: L.scan(lambda c, _: (_stack(c), None), x, None, length=2)[0],
             _twice_ref),
    "cond": (lambda x: L.cond(True, _stack, lambda x: -x, x), _ref_stack),
    "switch": (lambda x: L.switch(1, [lambda x: -x, _stack], x), _ref_stack),
    "fori_loop": (lambda x: L.fori_loop(0, 2, lambda i, x: _stack(x), x), _twice_ref),
    "while_loop": (lambda x: L.while_loop(lambda c: c[0] < 2,
                                          lambda c: (c[0] + 1, _stack(c[1])), (0, x))[1],
                   _twice_ref),
    "vmap_split_rng": (lambda x: L.vmap(_stack, split_rng=True)(x), _ref_stack),
    "vmap": (lambda x: L.vmap(_stack, split_rng=False)(x), _ref_stack),
    "remat": (lambda x: L.remat(_stack)(x), _ref_stack),
    "dynamic_unroll": (
        lambda x: mh.nn.dynamic_unroll(_Core(), jnp.stack([x, x]), jnp.zeros_like(x))[0][-1],
        lambda p, x: _ref_stack(p, x + _ref_stack(p, x))),
}


class LayerStackReusesExistingParamsTest(parameterized.TestCase):

    @parameterized.named_parameters(*[(name, *case) for name, case in _NESTINGS.items()])
    def test_inside_lifted_op(self, model, ref):
        prefix = "~/_Core_0/__call__/Linear_0/__call__" if model is _NESTINGS[
            "dynamic_unroll"][0] else P
        init, apply = mh.transform(model)
        params = init(0, X)
        self.assertEqual(shapes(params), {f"{prefix}/w": (2, 3, 3), f"{prefix}/b": (2, 3)})
        want = ref({k.replace(prefix, P): v for k, v in params.items()}, X)
        assert_close(apply(params, None, X), want)
        assert_close(jax.jit(apply)(params, None, X), want)
        assert_close(jax.jit(init)(0, X), params)

    def test_module_called_twice_reuses_its_stack(self):
        class Block(mh.Module):
            def __call__(self, x):
                return _stack(x)

        def f(x):
            b = Block()
            return b(b(x))

        init, apply = mh.transform(f)
        params = init(0, X)
        prefix = "~/Block_0/__call__/Linear_0/__call__"
        self.assertEqual(shapes(params), {f"{prefix}/w": (2, 3, 3), f"{prefix}/b": (2, 3)})
        def ref(p):
            return _ref_stack(p, _ref_stack(p, X, prefix), prefix)

        assert_close(apply(params, None, X), ref(params))
        assert_close(jgrad(lambda p: jnp.sum(apply(p, None, X)))(params),
                     jgrad(lambda p: jnp.sum(ref(p)))(params))

    def test_stacked_state_is_reused_and_carried_in_init(self):
        def layer(x):
            n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
            mh.set_state("n", n + 1)
            return x + n

        def f(x):
            stack = L.layer_stack(3)(layer)
            return stack(L.scan(lambda c, _: (stack(c), None), x, None, length=2)[0])

        init, apply = mh.transform_with_state(f)
        params, state = init(0, X)
        self.assertEqual(shapes(state), {"~/n": (3,)})
        np.testing.assert_array_equal(state["~/n"], np.zeros(3))
        out, new_state = apply(params, state, None, X)
        np.testing.assert_array_equal(new_state["~/n"], np.full(3, 3))
        # Layer calls see n = 0, 1, 2 in the scan's steps and the last call.
        assert_close(out, X + 3 * (0 + 1 + 2))


class LayerStackDepthMismatchTest(absltest.TestCase):

    def test_params_of_another_depth_name_path_and_shapes(self):
        params = mh.transform(lambda x: L.layer_stack(3)(_body)(x)).init(0, X)
        with self.assertRaisesRegex(mh.MismatchError,
                                    r"layer_stack\(2\).*'~/Linear_0/__call__/w'.*\(3, 3, 3\)"):
            mh.transform(_stack).apply(params, None, X)

    def test_param_made_outside_the_stack_is_a_mismatch_naming_it(self):
        def f(x):
            layer = Linear(3)
            x = layer(x)
            return L.layer_stack(2)(layer)(x)

        with self.assertRaisesRegex(mh.MismatchError, r"per-layer.*'~/Linear_0/__call__/w'|"
                                    r"'~/Linear_0/__call__/w'.*per-layer"):
            mh.transform(f).init(0, X)

    def test_outside_module_called_in_a_nested_op_is_a_mismatch_not_overwritten(self):
        def f(x):
            layer = Linear(3)
            x = layer(x)
            return L.layer_stack(2)(lambda x: L.scan(
                lambda c, _: (layer(c), None), x, None, length=1)[0])(x)

        with self.assertRaisesRegex(mh.MismatchError, "'~/Linear_0/__call__/w'"):
            mh.transform(f).init(0, X)


if __name__ == "__main__":
    absltest.main()
