"""Init and apply of every lifted transform compute the same outputs."""


import jax
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L, X, assert_close


def _noisy(x):
    return x + jax.random.normal(mh.next_rng_key(), x.shape)


CONSISTENT = {
    "remat": lambda x: L.remat(_noisy)(x),
    "scan": lambda x: L.scan(lambda c, x: (_noisy(c), None), x, None, length=2)[0],
    "layer_stack": lambda x: L.layer_stack(2)(_noisy)(x),
    "vmap_split": lambda x: L.vmap(_noisy, split_rng=True)(x),
    "vmap": lambda x: L.vmap(_noisy, split_rng=False)(x),
    "cond": lambda x: L.cond(True, _noisy, lambda x: 2 * _noisy(x), x),
    "switch": lambda x: L.switch(1, [_noisy, lambda x: 2 * _noisy(x)], x),
    "fori_loop": lambda x: L.fori_loop(0, 2, lambda i, x: _noisy(x), x),
    "while_loop": lambda x: L.while_loop(lambda c: c[0] < 2,
                                         lambda c: (c[0] + 1, _noisy(c[1])), (0, x))[1],
}


class InitApplyConsistencyTest(parameterized.TestCase):

    @parameterized.parameters(list(CONSISTENT))
    def test_init_forward_equals_apply_with_same_rng(self, name):
        # Init and apply take keys alike, so a body drawing keys (and creating
        # no params, which would take keys in init only) computes the same.
        seen = []

        def f(x):
            out = CONSISTENT[name](x)
            seen.append(out)
            return out

        init, apply = mh.transform(f)
        params = init(3, X)
        assert_close(seen[0], apply(params, 3, X))
        self.assertFalse(np.allclose(seen[0], apply(params, 4, X)))


if __name__ == "__main__":
    absltest.main()
