"""The "Build your own Haiku" tutorial's cells, run with minihaiku."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import minihaiku as mh


# The tutorial's classes, pasted in with `mh.` prefixes.
class Linear(mh.Module):

    def __init__(self, width):
        super().__init__()
        self._width = width

    @mh.module_method
    def __call__(self, x):
        w = mh.get_param('w', shape=(x.shape[-1], self._width))
        b = mh.get_param('b', shape=(self._width,))
        return x @ w + b


class MLP(mh.Module):

    def __init__(self, widths):
        super().__init__()
        self._widths = widths

    @mh.module_method
    def __call__(self, x):
        for w in self._widths:
            out = Linear(w)(x)
            x = jax.nn.sigmoid(out)
        return out


class ParameterReuseTest(mh.Module):

    @mh.module_method
    def __call__(self, x):
        f = Linear(x.shape[-1])
        x = f(x)
        x = jax.nn.relu(x)
        return f(x)


def parameter_shapes(params):
    return jax.tree_util.tree_map(lambda p: p.shape, params)


class TutorialTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.data = jnp.ones((2, 3))

    def test_linear_paths_and_apply(self):
        init, apply = mh.transform(lambda x: Linear(4)(x))
        params = init(jax.random.PRNGKey(0), self.data)
        self.assertEqual(parameter_shapes(params),
                         {'~/Linear_0/__call__/b': (4,), '~/Linear_0/__call__/w': (3, 4)})
        out = apply(params, None, self.data)
        w, b = params['~/Linear_0/__call__/w'], params['~/Linear_0/__call__/b']
        np.testing.assert_allclose(out, self.data @ w + b, rtol=1e-6)

    def test_mlp_paths(self):
        init, apply = mh.transform(lambda x: MLP([3, 5])(x))
        params = init(0, self.data)
        self.assertEqual(parameter_shapes(params), {
            '~/MLP_0/__call__/Linear_0/__call__/b': (3,),
            '~/MLP_0/__call__/Linear_0/__call__/w': (3, 3),
            '~/MLP_0/__call__/Linear_1/__call__/b': (5,),
            '~/MLP_0/__call__/Linear_1/__call__/w': (3, 5)})
        p = lambda i, n: params[f'~/MLP_0/__call__/Linear_{i}/__call__/{n}']  # noqa: E731
        expected = jax.nn.sigmoid(self.data @ p(0, 'w') + p(0, 'b')) @ p(1, 'w') + p(1, 'b')
        np.testing.assert_allclose(apply(params, None, self.data), expected, rtol=1e-6)

    def test_parameter_reuse(self):
        init, forward = mh.transform(lambda x: ParameterReuseTest()(x))
        params = init(0, self.data)
        self.assertEqual(parameter_shapes(params), {
            '~/ParameterReuseTest_0/__call__/Linear_0/__call__/b': (3,),
            '~/ParameterReuseTest_0/__call__/Linear_0/__call__/w': (3, 3)})
        w = params['~/ParameterReuseTest_0/__call__/Linear_0/__call__/w']
        b = params['~/ParameterReuseTest_0/__call__/Linear_0/__call__/b']
        expected = jax.nn.relu(self.data @ w + b) @ w + b
        np.testing.assert_allclose(forward(params, None, self.data), expected, rtol=1e-6)

    def test_training_loop_reaches_low_loss(self):
        xs = np.linspace(-2., 2., num=128)[:, None]
        ys = xs ** 2
        init, forward = mh.transform(lambda x: MLP([128, 128, 1])(x))
        params = init(jax.random.PRNGKey(42), xs)
        self.assertEqual(parameter_shapes(params), {
            '~/MLP_0/__call__/Linear_0/__call__/b': (128,),
            '~/MLP_0/__call__/Linear_0/__call__/w': (1, 128),
            '~/MLP_0/__call__/Linear_1/__call__/b': (128,),
            '~/MLP_0/__call__/Linear_1/__call__/w': (128, 128),
            '~/MLP_0/__call__/Linear_2/__call__/b': (1,),
            '~/MLP_0/__call__/Linear_2/__call__/w': (128, 1)})

        def loss_fn(params, x, y):
            return jnp.mean((forward(params, None, x) - y) ** 2)

        @jax.jit
        def update(params, x, y):
            grads = jax.grad(loss_fn)(params, x, y)
            return jax.tree_util.tree_map(lambda p, g: p - 0.003 * g, params, grads)

        first = float(loss_fn(params, xs, ys))
        # The tutorial runs 5000 steps; 3000 already clearly shows the fit.
        params = jax.lax.fori_loop(0, 3000, lambda _, p: update(p, xs, ys), params)
        final = float(loss_fn(params, xs, ys))
        self.assertLess(final, 0.05)
        self.assertLess(final, first / 10)


if __name__ == '__main__':
    absltest.main()
