"""while_loop's cond_fun: may use lifted ops that draw no key; drawing one is an error."""

import jax
import jax.numpy as jnp
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L, Linear, X, assert_close, lin

P = "~/Linear_0/__call__"


def _below(limit, wrap):
    """cond_fun of a carry ``(i, x)``: ``i + tanh(sum(Linear(x)))``, through ``wrap``.

    Ends within ``limit + 1`` steps whatever the params are.
    """
    def cond_fun(carry):
        i, x = carry
        return i + jnp.tanh(wrap(lambda x: jnp.sum(Linear(1)(x)))(x)) < limit
    return cond_fun


_WRAPS = {
    "remat": L.remat,
    "vmap_no_split": lambda g: lambda x: jnp.sum(L.vmap(g, split_rng=False)(x)),
    "vmap_split": lambda g: lambda x: jnp.sum(L.vmap(g, split_rng=True)(x)),
    "cond": lambda g: lambda x: L.cond(True, g, g, x),
    "scan": lambda g: lambda x: L.scan(lambda c, _: (g(x), None), 0.0, None, length=1)[0],
    "layer_free_fori": lambda g: lambda x: L.fori_loop(0, 1, lambda i, v: g(x), 0.0),
}


class CondFunWithLiftedOpsTest(parameterized.TestCase):

    @parameterized.named_parameters(*_WRAPS.items())
    def test_lifted_op_drawing_no_key_works_in_init_and_apply(self, wrap):
        def f(x):
            return L.while_loop(_below(3.0, wrap), lambda c: (c[0] + 1.0, c[1] + 0.25),
                                (0.0, x))

        init, apply = mh.transform(f)
        params = init(0, X)

        def ref(p):
            below = lambda c: c[0] + jnp.tanh(jnp.sum(lin(p, P, c[1]))) < 3.0  # noqa: E731
            return jax.lax.while_loop(below, lambda c: (c[0] + 1.0, c[1] + 0.25), (0.0, X))

        # With vmap the per-row sums add up to the same total.
        assert_close(apply(params, 1, X), ref(params))
        assert_close(jax.jit(apply)(params, 1, X), ref(params))

    @parameterized.named_parameters(("remat", L.remat),
                                    ("vmap", lambda g: L.vmap(g, split_rng=False)),
                                    ("plain", lambda g: g))
    def test_drawing_a_key_in_cond_fun_is_a_body_error(self, wrap):
        def cond_fun(x):
            return jnp.sum(wrap(lambda x: x + jax.random.uniform(mh.next_rng_key()))(x)) < 2

        f = mh.transform(lambda x: L.while_loop(cond_fun, lambda x: x + 1.0, x))
        with self.assertRaisesRegex(mh.LiftedBodyError, "cond_fun drew a random key"):
            f.apply({}, 0, jnp.zeros(2))

    def test_cond_fun_setting_state_is_a_body_error(self):
        def cond_fun(x):
            mh.set_state("s", x)
            return x < 2

        f = mh.transform_with_state(lambda x: L.while_loop(cond_fun, lambda x: x + 1.0, x))
        with self.assertRaisesRegex(mh.LiftedBodyError, "cond_fun set state"):
            f.init(0, 0.0)


if __name__ == "__main__":
    absltest.main()
