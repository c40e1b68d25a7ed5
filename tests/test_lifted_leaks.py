"""The mh.lifted tests once more, under ``jax_check_tracer_leaks``.

A lifted transform that let a tracer escape (a param created inside a JAX
transform and stored in the outer frame, say) would fail here even when the
values happen to come out right. The full rerun of test_lifted.py is marked
slow (``pytest -m slow``); the default run checks every lifted transform at
once in ``AllTransformsLeakTest``.
"""

import jax
import pytest
from absl.testing import absltest

import minihaiku as mh
import test_lifted as base


class _LeakChecked:

    def setUp(self):
        super().setUp()
        self._was = jax.config.jax_check_tracer_leaks
        jax.config.update("jax_check_tracer_leaks", True)

    def tearDown(self):
        jax.config.update("jax_check_tracer_leaks", self._was)
        super().tearDown()


class AllTransformsLeakTest(_LeakChecked, absltest.TestCase):

    def test_checker_is_on(self):
        leaked = []
        with self.assertRaisesRegex(Exception, "[Ll]eak"):
            jax.jit(lambda x: leaked.append(x) or x)(1.0)

    def test_every_transform_init_apply_jit(self):
        init, apply = mh.transform_with_state(base.everything)
        params, state = init(0, base.X)
        out, new_state = apply(params, state, 1, base.X)
        self.assertEqual(int(new_state["~/n"]), 2)
        jit_out, _ = jax.jit(apply)(params, state, 1, base.X)
        base.assert_close(jit_out, out)


@pytest.mark.slow
class RematLeakTest(_LeakChecked, base.RematTest):
    pass


@pytest.mark.slow
class ScanLeakTest(_LeakChecked, base.ScanTest):
    pass


@pytest.mark.slow
class LayerStackLeakTest(_LeakChecked, base.LayerStackTest):
    pass


@pytest.mark.slow
class VmapLeakTest(_LeakChecked, base.VmapTest):
    pass


@pytest.mark.slow
class CondSwitchLeakTest(_LeakChecked, base.CondSwitchTest):
    pass


@pytest.mark.slow
class LoopsLeakTest(_LeakChecked, base.LoopsTest):
    pass


@pytest.mark.slow
class NestingLeakTest(_LeakChecked, base.NestingTest):
    pass


@pytest.mark.slow
class UnliftedLeakTest(_LeakChecked, base.UnliftedTransformTest):
    pass


if __name__ == "__main__":
    absltest.main()
