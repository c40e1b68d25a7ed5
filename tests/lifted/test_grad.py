"""mh.lifted.grad / value_and_grad against jax.grad with explicit params."""

import jax
import jax.numpy as jnp
from absl.testing import absltest

import minihaiku as mh
from lifted.common import L, Linear, X, assert_close, jgrad, lin, shapes

A, B = "~/Linear_0/__call__", "~/Linear_1/__call__"


def _network(hidden):
    """A two-layer net built once (Linear_0 then Linear_1), called many times."""
    first, second = Linear(hidden), Linear(1)
    return lambda x: second(jnp.tanh(first(x)))


def _critic_ref(p, x):
    return jnp.sum(lin(p, B, jnp.tanh(lin(p, A, x))))


class GradientPenaltyTest(absltest.TestCase):

    def _loss(self, x):
        net = _network(4)
        critic = lambda x: jnp.sum(net(x))  # noqa: E731
        dx = L.grad(critic)(x)
        return critic(x) + 10.0 * jnp.mean((jnp.linalg.norm(dx, axis=-1) - 1.0) ** 2)

    def _ref(self, p, x):
        dx = jax.grad(lambda x: _critic_ref(p, x))(x)
        return _critic_ref(p, x) + 10.0 * jnp.mean((jnp.linalg.norm(dx, axis=-1) - 1.0) ** 2)

    def test_init_creates_params_and_apply_matches_jax(self):
        init, apply = mh.transform(self._loss)
        params = init(0, X)
        self.assertEqual(shapes(params), {f"{A}/w": (3, 4), f"{A}/b": (4,),
                                          f"{B}/w": (4, 1), f"{B}/b": (1,)})
        assert_close(apply(params, None, X), self._ref(params, X))
        assert_close(jax.jit(apply)(params, None, X), self._ref(params, X))
        assert_close(jax.jit(init)(0, X), params)

    def test_outer_grad_wrt_params_matches_jax(self):
        init, apply = mh.transform(self._loss)
        params = init(0, X)
        assert_close(jgrad(lambda p: apply(p, None, X))(params),
                     jgrad(lambda p: self._ref(p, X))(params))


class PhysicsInformedResidualTest(absltest.TestCase):

    def test_residual_of_du_dx_and_its_param_gradient(self):
        xs = jnp.linspace(0.0, 1.0, 5)[:, None]

        def loss(x):
            net = _network(8)
            u = lambda x: net(x)[..., 0]  # noqa: E731
            du = L.grad(lambda x: jnp.sum(u(x)))(x)
            return jnp.mean((du[:, 0] - jnp.cos(x[:, 0])) ** 2) + jnp.mean(u(x) ** 2)

        def u_ref(p, x):
            return lin(p, B, jnp.tanh(lin(p, A, x)))[..., 0]

        def ref(p, x):
            du = jax.grad(lambda x: jnp.sum(u_ref(p, x)))(x)
            return jnp.mean((du[:, 0] - jnp.cos(x[:, 0])) ** 2) + jnp.mean(u_ref(p, x) ** 2)

        init, apply = mh.transform(loss)
        params = init(0, xs)
        assert_close(apply(params, None, xs), ref(params, xs))
        assert_close(jgrad(lambda p: apply(p, None, xs))(params),
                     jgrad(lambda p: ref(p, xs))(params))


class GradFormsTest(absltest.TestCase):

    def test_value_and_grad_with_aux_argnums_and_state(self):
        def f(x, y):
            n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
            mh.set_state("n", n + 1)
            out = jnp.sum(Linear(3)(x) * y)
            return out, out * 2

        def g(x, y):
            (value, aux), (dx, dy) = L.value_and_grad(f, argnums=(0, 1), has_aux=True)(x, y)
            return value, aux, dx, dy

        init, apply = mh.transform_with_state(g)
        params, state = init(0, X, X)
        self.assertEqual(int(state["~/n"]), 0)
        (value, aux, dx, dy), new_state = apply(params, state, None, X, X)
        self.assertEqual(int(new_state["~/n"]), 1)

        def ref(x, y):
            return jnp.sum(lin(params, "~/Linear_0/__call__", x) * y)

        assert_close(value, ref(X, X))
        assert_close(aux, 2 * ref(X, X))
        assert_close((dx, dy), jax.grad(ref, argnums=(0, 1))(X, X))

    def test_keys_drawn_inside_are_the_same_in_init_and_apply(self):
        def f(x):
            return L.grad(lambda x: jnp.sum(x * jax.random.normal(mh.next_rng_key(), x.shape)))(x)

        init, apply = mh.transform(lambda x: f(x))
        out_init = mh.transform_with_state(lambda x: f(x)).apply({}, {}, 3, X)[0]
        assert_close(apply(init(3, X), 3, X), out_init)

    def test_bad_argnums_is_an_invalid_argument(self):
        f = mh.transform(lambda x: L.grad(jnp.sum, argnums=2)(x))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "argnums"):
            f.init(0, X)


if __name__ == "__main__":
    absltest.main()
