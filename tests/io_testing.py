"""Shared helpers of the mh.io tests (test_io.py, test_io_files.py, test_io_orbax.py)."""

import os
import subprocess
import sys
import tempfile
import textwrap

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

import minihaiku as mh
from helpers.subprocess_env import subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tree():
    rng = np.random.default_rng(0)
    return {
        "~/Linear_0/__call__/w": rng.normal(size=(3, 4)).astype(np.float32),
        "~/Linear_0/__call__/b": np.arange(4, dtype=np.int32),
        "~/Emb_0/__call__/e": rng.normal(size=(5, 2)).astype(ml_dtypes.bfloat16),
        "~/f16": np.float16(1.5) * np.ones((2,), np.float16),
        "~/mask": np.array([True, False]),
        "~/scalar": np.float32(3.25),
        "~/bf_scalar": np.array(2.5, ml_dtypes.bfloat16),
        "~/f8": np.array([0.5, -2.0], ml_dtypes.float8_e4m3fn),
    }


def tempdir(test) -> str:
    # absltest's create_tempdir needs parsed flags, which pytest does not provide.
    tmp = tempfile.TemporaryDirectory()
    test.addCleanup(tmp.cleanup)
    return tmp.name


def linear(x):
    w = mh.get_param("w", (x.shape[-1], 3))
    b = mh.get_param("b", (3,), jnp.bfloat16, init=jax.nn.initializers.ones)
    return x @ w + b


def assert_trees_identical(test, got, want):
    test.assertEqual(jax.tree.structure(got), jax.tree.structure(want))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        w = np.asarray(w)
        test.assertEqual(g.dtype, w.dtype)
        test.assertEqual(g.shape, w.shape)
        test.assertEqual(np.asarray(g).tobytes(), w.tobytes())


def run_python(code: str, umask: int | None = None, devices: int = 0) -> str:
    """Runs ``code`` in a fresh interpreter (under ``umask``, set by the shell) with
    ``devices`` host CPU devices."""
    argv = [sys.executable, "-c", textwrap.dedent(code)]
    if umask is not None:  # Not preexec_fn: forking a multithreaded JAX process is unsafe.
        argv = ["/bin/sh", "-c", f'umask {umask:03o} && exec "$0" "$@"'] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                         env=subprocess_env(devices))
    if out.returncode:
        raise AssertionError(f"subprocess failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout
