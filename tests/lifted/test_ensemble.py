"""vmap(params_axis=0): an ensemble equals each member run alone with its slice."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import minihaiku as mh
from lifted.common import L, Linear, X, assert_close, jgrad, shapes


def _member(x):
    n = mh.get_state("calls", (), jnp.int32, init=jnp.zeros)
    mh.set_state("calls", n + 1)
    hidden, out = Linear(4), Linear(2)
    return out(jnp.tanh(hidden(x)))


class EnsembleTest(absltest.TestCase):

    def test_each_member_equals_running_it_alone_with_its_slice(self):
        def ensemble(x):  # the same x for all 3 members
            return L.vmap(_member, in_axes=None, axis_size=3, split_rng=False,
                          params_axis=0)(x)

        init, apply = mh.transform_with_state(ensemble)
        params, state = init(0, X)
        self.assertEqual(shapes(params), {
            "~/Linear_0/__call__/w": (3, 3, 4), "~/Linear_0/__call__/b": (3, 4),
            "~/Linear_1/__call__/w": (3, 4, 2), "~/Linear_1/__call__/b": (3, 2)})
        self.assertEqual(shapes(state), {"~/calls": (3,)})
        w = np.asarray(params["~/Linear_0/__call__/w"])
        self.assertLen({w[i].tobytes() for i in range(3)}, 3)  # own key per member

        out, new_state = apply(params, state, None, X)
        self.assertEqual(out.shape, (3, 4, 2))
        np.testing.assert_array_equal(new_state["~/calls"], np.ones(3))
        alone = mh.transform_with_state(_member)

        def member_out(p, i):
            sliced = jax.tree_util.tree_map(lambda v: v[i], (p, state))
            return alone.apply(*sliced, None, X)[0]

        for i in range(3):
            assert_close(out[i], member_out(params, i))
        assert_close(jax.jit(apply)(params, state, None, X)[0], out)
        assert_close(jgrad(lambda p: jnp.sum(apply(p, state, None, X)[0] ** 2))(params),
                     jgrad(lambda p: sum(jnp.sum(member_out(p, i) ** 2) for i in range(3)))(
                         params))

    def test_mapped_inputs_and_module_called_twice(self):
        class Ensemble(mh.Module):
            def __call__(self, xs):
                return L.vmap(lambda x: jnp.tanh(Linear(3)(x)), split_rng=False,
                              params_axis=0)(xs)

        def f(xs):
            e = Ensemble()
            return e(e(xs))  # second call reuses the stacked params

        xs = jnp.stack([X, X + 1.0])
        init, apply = mh.transform(f)
        params = init(0, xs)
        self.assertEqual(shapes(params), {"~/Ensemble_0/__call__/Linear_0/__call__/w": (2, 3, 3),
                                          "~/Ensemble_0/__call__/Linear_0/__call__/b": (2, 3)})
        p = "~/Ensemble_0/__call__/Linear_0/__call__"

        def ref(i):
            layer = lambda x: jnp.tanh(x @ params[f"{p}/w"][i] + params[f"{p}/b"][i])  # noqa
            return layer(layer(xs[i]))

        assert_close(apply(params, None, xs), jnp.stack([ref(0), ref(1)]))

    def test_params_of_another_ensemble_size_are_a_mismatch(self):
        f = lambda n: mh.transform(lambda x: L.vmap(  # noqa: E731
            lambda x: Linear(3)(x), in_axes=None, axis_size=n, split_rng=False, params_axis=0)(x))
        params = f(3).init(0, X)
        with self.assertRaisesRegex(mh.MismatchError, r"2 members.*\(3, 3, 3\)"):
            f(2).apply(params, None, X)

    def test_bad_params_axis_is_refused(self):
        with self.assertRaises(mh.InvalidArgumentError):
            L.vmap(jnp.sin, split_rng=False, params_axis=1)


if __name__ == "__main__":
    absltest.main()
