"""``mh.export_onnx``: a trained network as an ONNX model, through ``jax2onnx``.

The optional twin of ``mh.export`` for runtimes without JAX (onnxruntime,
browsers, TensorRT): the params become ONNX initializers and the batch axis a
symbolic ``"batch"`` dimension. ``jax2onnx`` (and ``onnxruntime`` to run the
result) come with the ``export`` extra, ``pip install 'minihaiku[export]'``;
they are imported only here, so minihaiku itself never needs them.
"""

import importlib
from collections.abc import Callable
from typing import Any

from minihaiku import _atomic_file, errors
from minihaiku._export import with_params_fixed

_BATCH = "batch"


def export_onnx(apply: Callable, params: Any, *example_args: Any, batch_axis: int | None = 0,
                path: Any = None, opset: int | None = None) -> Any:
    """Converts ``apply(params, *example_args)`` with ``params`` fixed to ONNX with jax2onnx.

    Needs the ``export`` extra (``pip install 'minihaiku[export]'``: jax2onnx
    and onnxruntime). As in ``mh.export``, the model's inputs are the
    ``example_args`` that are arrays (other values, e.g. ``None`` for the rng,
    are fixed as given), and their ``batch_axis`` is one symbolic dimension
    named ``"batch"``, so any batch size runs.

    Args:
      apply: the apply function (``transformed.apply``, or any function of
        ``(params, *args)``).
      params: the params (and state, as a tuple, for functions that take it).
      *example_args: example inputs: arrays or ``jax.ShapeDtypeStruct``s.
      batch_axis: the axis of every array input that may change size
        (``None``: exact shapes only).
      path: optional ``.onnx`` file to write the model to (atomically).
      opset: the ONNX opset to target (default: jax2onnx's).

    Returns:
      The ``onnx.ModelProto``, its inputs named ``in_0``, ``in_1``, ... (the
      array ``example_args`` in order); ``.SerializeToString()`` is what
      ``onnxruntime.InferenceSession`` takes.

    Example (with the ``export`` extra installed):

    ```py
    init, apply = mh.without_apply_rng(mh.transform(lambda x: mh.nn.Linear(2)(x)))
    params = init(0, jnp.ones((1, 3)))
    mh.export_onnx(apply, params, jnp.ones((1, 3)), path="linear.onnx")
    session = onnxruntime.InferenceSession("linear.onnx")
    (y,) = session.run(None, {"in_0": np.ones((5, 3), np.float32)})   # any batch size
    ```
    """
    # The example above is fenced, not ``Example::``: tests/test_docs.py runs
    # those where the extra is not installed.
    fn, specs = with_params_fixed("mh.export_onnx", apply, params, example_args, batch_axis,
                                  _BATCH)   # jax2onnx: a str dimension is symbolic
    try:
        # By name, so that mypy and minihaiku's import never need the extra.
        jax2onnx = importlib.import_module("jax2onnx")
    except ImportError:
        raise errors.InvalidArgumentError(
            "mh.export_onnx needs jax2onnx, which is not installed. Fix: pip install "
            "'minihaiku[export]' (jax2onnx and onnxruntime), or use mh.export for a "
            "jax.export artefact.") from None

    options = {} if opset is None else {"opset": opset}
    names = [f"in_{i}" for i in range(len(specs))]
    model = jax2onnx.to_onnx(fn, specs, model_name="minihaiku", input_names=names, **options)
    if path is not None:
        blob = model.SerializeToString()

        def write(f):
            f.write(blob)

        _atomic_file.write(_atomic_file.as_str(path, "mh.export_onnx"), write)
    return model
