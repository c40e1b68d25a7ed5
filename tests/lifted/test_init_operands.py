"""Init passes see operands as jax.lax gives them to traced bodies (arrays, weak types)."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L, assert_close


def _needs_array(x):
    """Fails on a Python number (no .shape): runs only on what jax.lax gives a body."""
    return x + jnp.zeros(x.shape, x.dtype)


_CASES = {
    "cond": (lambda: L.cond(True, _needs_array, lambda x: x, 0.0), 0.0),
    "switch": (lambda: L.switch(0, [_needs_array, lambda x: x], 2.0), 2.0),
    "scan_carry": (lambda: L.scan(lambda c, x: (_needs_array(c) + x, c), 1.0,
                                  np.arange(3.0))[0], 4.0),
    "scan_xs_numpy": (lambda: L.scan(lambda c, x: (c + _needs_array(x), None), 0.0,
                                     np.arange(3.0))[0], 3.0),
    "fori_loop": (lambda: L.fori_loop(0, 3, lambda i, v: _needs_array(v) + i, 0.0), 3.0),
    "while_loop": (lambda: L.while_loop(lambda v: _needs_array(v) < 3, lambda v: v + 1, 0), 3),
    "remat": (lambda: L.remat(lambda x: _needs_array(x) * 2)(1.5), 3.0),
}


class InitPassOperandsTest(parameterized.TestCase):

    @parameterized.named_parameters(*[(k, *v) for k, v in _CASES.items()])
    def test_python_operands_work_in_init_as_in_apply(self, fn, want):
        init, apply = mh.transform(fn)
        params = init(0)
        assert_close(apply(params, None), want)
        assert_close(jax.jit(apply)(params, None), want)

    def test_init_pass_sees_the_dtype_and_weak_type_apply_sees(self):
        seen = []

        def body(x):
            seen.append((x.dtype, jax.typeof(x).weak_type))
            return x

        init, apply = mh.transform(lambda: L.cond(True, body, body, 1.0))
        init(0)
        apply({}, None)
        self.assertLen(set(seen), 1, seen)
        self.assertEqual(seen[0][0], jnp.float32)


if __name__ == "__main__":
    absltest.main()
