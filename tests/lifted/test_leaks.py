"""The mh.lifted tests once more, under ``jax_check_tracer_leaks``.

A lifted transform that let a tracer escape (a param created inside a JAX
transform and stored in the outer frame, say) would fail here even when the
values happen to come out right. The full rerun of tests/lifted/ is marked
slow (``pytest -m slow``); the default run checks every lifted transform at
once in ``AllTransformsLeakTest``.
"""

import jax
import pytest
from absl.testing import absltest

import minihaiku as mh
from lifted import (
    test_cond,
    test_everything,
    test_layer_stack,
    test_loops,
    test_nesting,
    test_remat,
    test_scan,
    test_unlifted,
    test_vmap,
)
from lifted.common import LeakChecked, X, assert_close


class AllTransformsLeakTest(LeakChecked, absltest.TestCase):

    def test_checker_is_on(self):
        leaked = []
        with self.assertRaisesRegex(Exception, "[Ll]eak"):
            jax.jit(lambda x: leaked.append(x) or x)(1.0)

    def test_every_transform_init_apply_jit(self):
        init, apply = mh.transform_with_state(test_everything.everything)
        params, state = init(0, X)
        out, new_state = apply(params, state, 1, X)
        self.assertEqual(int(new_state["~/n"]), 2)
        jit_out, _ = jax.jit(apply)(params, state, 1, X)
        assert_close(jit_out, out)


@pytest.mark.slow
class RematLeakTest(LeakChecked, test_remat.RematTest):
    pass


@pytest.mark.slow
class ScanLeakTest(LeakChecked, test_scan.ScanTest):
    pass


@pytest.mark.slow
class LayerStackLeakTest(LeakChecked, test_layer_stack.LayerStackTest):
    pass


@pytest.mark.slow
class VmapLeakTest(LeakChecked, test_vmap.VmapTest):
    pass


@pytest.mark.slow
class CondSwitchLeakTest(LeakChecked, test_cond.CondSwitchTest):
    pass


@pytest.mark.slow
class LoopsLeakTest(LeakChecked, test_loops.LoopsTest):
    pass


@pytest.mark.slow
class NestingLeakTest(LeakChecked, test_nesting.NestedTransformsTest):
    pass


@pytest.mark.slow
class UnliftedLeakTest(LeakChecked, test_unlifted.UnliftedTransformTest):
    pass


if __name__ == "__main__":
    absltest.main()
