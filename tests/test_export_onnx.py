"""mh.export_onnx: onnxruntime runs the converted MLP, ConvNet and ViT to apply's outputs.

Needs the ``export`` extra (jax2onnx, onnxruntime); without it the conversion
tests skip and only the argument and missing-dependency errors are checked. CI runs this
file in a venv with the extra (see .ci/run). jax2onnx imports all its plugins
on the first conversion (~10 s, once per process).
"""

import os
import pathlib
import re
import sys
import tempfile
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import minihaiku as mh
from test_docs import run_block

try:
    import jax2onnx  # noqa: F401  (only whether it is there)
    import onnxruntime
except ImportError as e:
    onnxruntime, _MISSING = None, str(e)
else:
    _MISSING = ""

KEY = jax.random.PRNGKey(0)
_GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guides" / "export.md"


def _mlp(x):
    return mh.nn.MLP([32, 16, 4])(x)


def _convnet(x):
    for _ in range(2):
        x = jax.nn.relu(mh.nn.Conv2D(8, 3)(x))
    # avg_pool, not max_pool: jax2onnx 0.17 turns an NHWC max_pool into a
    # 4-D ONNX MaxPool, which onnxruntime's CPU kernel refuses.
    x = mh.nn.avg_pool(x, 2, 2, "VALID")
    return mh.nn.Linear(10)(x.reshape(x.shape[0], -1))


def _vit(x, scan_layers=False):
    config = mh.nets.VisionTransformerConfig(patch_size=4, hidden_size=16, num_layers=2,
                                             num_heads=2, mlp_size=32, num_classes=10,
                                             scan_layers=scan_layers)
    return mh.nets.VisionTransformer(config)(x)


class ExportOnnxTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        if onnxruntime is None:
            self.skipTest(f"needs minihaiku[export]: {_MISSING}")

    def test_mlp_matches_at_another_batch_size(self):
        self.check_matches(_mlp, (3, 8))

    def test_convnet_matches_at_another_batch_size(self):
        self.check_matches(_convnet, (2, 10, 10, 3))

    def test_vit_matches_at_another_batch_size(self):
        self.check_matches(_vit, (2, 8, 8, 3))

    def test_vit_with_layer_stack_matches(self):
        # jax2onnx makes jnp.shape return an array: layer_stack's checks use np.shape.
        self.check_matches(lambda x: _vit(x, scan_layers=True), (2, 8, 8, 3))

    def check_matches(self, fn, shape):
        init, apply = mh.transform(fn)
        rng = np.random.default_rng(0)
        x = rng.normal(size=shape).astype(np.float32)
        # Random params of init's shapes: running init would compile its
        # initializers (~4 s for the ViT), and any values test the conversion.
        params = jax.tree.map(lambda s: (0.3 * rng.normal(size=s.shape)).astype(s.dtype),
                              jax.eval_shape(init, KEY, x))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "model.onnx")
            mh.export_onnx(apply, params, None, x, path=path)   # rng None: fixed
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.assertEqual(session.get_inputs()[0].shape, ["batch", *shape[1:]])
        x5 = rng.normal(size=(5,) + shape[1:]).astype(np.float32)
        (out,) = session.run(None, {"in_0": x5})
        np.testing.assert_allclose(out, jax.jit(apply)(params, None, x5), atol=1e-4, rtol=0)

    def test_the_guides_onnx_block_runs_after_the_others(self):
        # The docs test runs only the ```python blocks; the ONNX one is ```py.
        blocks = re.findall(r"```(python|py)\n(.*?)```", _GUIDE.read_text(), re.S)
        namespace, checked = {"__name__": "__docs__"}, {}
        for i, (fence, block) in enumerate(blocks):
            n = run_block(self, block, f"{_GUIDE.name} block {i}", namespace)
            checked[fence] = checked.get(fence, 0) + n
        self.assertEqual(checked.get("py"), 2)


class WithoutTheExtraTest(absltest.TestCase):

    # Both fail before apply runs: any function and params do.

    def test_without_jax2onnx_the_error_says_what_to_install(self):
        apply, params, x = (lambda params, x: x), {}, jnp.ones((3, 8))
        with mock.patch.dict(sys.modules, {"jax2onnx": None}):   # import fails
            with self.assertRaisesRegex(mh.InvalidArgumentError,
                                        r"pip install 'minihaiku\[export\]'"):
                mh.export_onnx(apply, params, x)

    def test_bad_arguments_are_named_before_the_import(self):
        apply, params, x = (lambda params, x: x), {}, jnp.ones((3, 8))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "batch_axis=2"):
            mh.export_onnx(apply, params, x, batch_axis=2)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "apply function"):
            mh.export_onnx(params, apply, x)


if __name__ == "__main__":
    absltest.main()
