"""Measures what issue 3 asks of mh.lifted, in one process.

1. remat: bytes of the residuals ``jax.vjp`` saves for a 16-layer tanh MLP
   (width 256, batch 1024) with ``mh.lifted.remat`` around each block of 4
   layers, over the same without remat.
2. layer_stack: compile time of ``jax.jit(apply)`` at 256 layers over 1 layer.

Run from the repo root: ``python -m benchmarks.lifted_bench``.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

import minihaiku as mh

WIDTH, BATCH, DEPTH, BLOCK = 256, 1024, 16, 4


class _Linear(mh.Module):
    def __init__(self, size, name=None):
        super().__init__(name)
        self.size = size

    def __call__(self, x):
        init = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal")
        w = mh.get_param("w", (x.shape[-1], self.size), init=init)
        b = mh.get_param("b", (self.size,), init=jax.nn.initializers.zeros)
        return x @ w + b


def _block(x):
    for _ in range(BLOCK):
        x = jnp.tanh(_Linear(WIDTH)(x))
    return x


def _mlp(use_remat):
    def f(x):
        block = mh.lifted.remat(_block) if use_remat else _block
        for _ in range(DEPTH // BLOCK):
            x = block(x)
        return jnp.sum(x)
    return mh.transform(f)


def residual_bytes(use_remat, params, x):
    """Bytes the vjp closure keeps: all of them, and those that are not the params."""
    apply = _mlp(use_remat).apply
    _, vjp_fn = jax.vjp(lambda p: apply(p, None, x), params)
    leaves = jax.tree_util.tree_leaves(vjp_fn)
    inputs = {id(v) for v in params.values()}
    total = sum(leaf.nbytes for leaf in leaves)
    return total, total - sum(leaf.nbytes for leaf in leaves if id(leaf) in inputs)


def remat_ratio():
    x = jnp.ones((BATCH, WIDTH))
    params = _mlp(True).init(0, x)
    return residual_bytes(False, params, x), residual_bytes(True, params, x)


def compile_seconds(num_layers, repeats=3, stacked=True):
    """Median seconds to trace, lower and compile ``jax.jit(apply)``, uncached."""
    times = []
    for _ in range(repeats):
        # A fresh function each time, so no JAX cache can answer.
        def f(x):
            layer = lambda x: jnp.tanh(_Linear(64)(x))  # noqa: E731
            if stacked:
                return mh.lifted.layer_stack(num_layers)(layer)(x)
            for _ in range(num_layers):
                x = layer(x)
            return x

        init, apply = mh.transform(f)
        x = jnp.ones((8, 64))
        params = jax.eval_shape(init, 0, x)
        start = time.perf_counter()
        jax.jit(apply).trace(params, None, x).lower().compile()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    (plain, plain_acts), (remat, remat_acts) = remat_ratio()
    mib = 2.0 ** 20
    print(f"remat residuals: {plain / mib:.1f} MiB without, {remat / mib:.1f} MiB with "
          f"-> ratio {remat / plain:.3f}; not counting the params themselves: "
          f"{plain_acts / mib:.1f} vs {remat_acts / mib:.1f} MiB -> {remat_acts / plain_acts:.3f}")
    one, two, many = compile_seconds(1), compile_seconds(2), compile_seconds(256)
    print(f"layer_stack compile: 1 layer {one * 1e3:.0f} ms, 2 layers {two * 1e3:.0f} ms, "
          f"256 layers {many * 1e3:.0f} ms -> ratio 256/1 {many / one:.2f}, "
          f"256/2 {many / two:.2f}")
    unrolled = compile_seconds(256, repeats=1, stacked=False)
    print(f"for contrast, 256 unrolled layers (Python loop): {unrolled * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
