"""Checks what README.md says about Flax (linen), by running Flax.

``pip install -e '.[bench]' && python -m benchmarks.peer_claims`` prints one
line per claim and exits non-zero if any claim is wrong. Flax is a benchmark
peer only (the ``bench`` extra), so this is not part of the test suite; the
dm-haiku claims are checked by ``tests/test_peer_claims.py``.
"""

import inspect
import sys

import jax
import jax.numpy as jnp

from benchmarks.peers import linen


def _params_are_nested_by_collection_then_module() -> bool:
    class Net(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(2)(x)

    variables = Net().init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
    return (set(variables) == {"params"} and set(variables["params"]) == {"Dense_0"}
            and set(variables["params"]["Dense_0"]) == {"kernel", "bias"})


def _state_needs_mutable_collections() -> bool:
    class Net(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.BatchNorm(use_running_average=False)(x)

    x = jnp.ones((2, 3))
    variables = Net().init(jax.random.PRNGKey(0), x)
    try:
        Net().apply(variables, x)
        return False
    except Exception:  # noqa: BLE001 — any refusal without mutable= will do
        _, updates = Net().apply(variables, x, mutable=["batch_stats"])
        return set(updates) == {"batch_stats"}


def _scan_stacks_with_variable_axes() -> bool:
    return "variable_axes" in inspect.signature(linen.scan).parameters


def _lifted_cond_and_while_loop_exist() -> bool:
    return callable(getattr(linen, "cond", None)) and callable(getattr(linen, "while_loop", None))


def _errors_link_to_docs() -> bool:
    from flax import errors

    class Net(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(2)(x)

    try:
        Net().apply({"params": {}}, jnp.ones((1, 3)))
        return False
    except errors.FlaxError as e:
        return "https://flax.readthedocs.io/" in str(e)


CLAIMS = {
    "params: nested {'params': {'Dense_0': {'kernel', 'bias'}}}":
        _params_are_nested_by_collection_then_module,
    "state: mutable= collections": _state_needs_mutable_collections,
    "layer stacking: nn.scan with variable_axes": _scan_stacks_with_variable_axes,
    "params inside control flow: lifted nn.cond / nn.while_loop":
        _lifted_cond_and_while_loop_exist,
    "errors: flax.errors with doc links": _errors_link_to_docs,
}


def main() -> int:
    if linen is None:
        print("flax is not installed: pip install -e '.[bench]'")
        return 2
    import flax
    print(f"flax {flax.__version__}")
    wrong = 0
    for claim, check in CLAIMS.items():
        ok = check()
        wrong += not ok
        print(f"{'ok   ' if ok else 'WRONG'} {claim}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
