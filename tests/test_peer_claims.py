"""What README.md and docs/api.md say about dm-haiku, checked by running it.

dm-haiku is in the ``test`` extra, so these run in CI; without it installed
the dm-haiku tests are skipped (there is nothing to check against). The flax
claims are checked by ``python -m benchmarks.peer_claims`` (flax is in the
``bench`` extra only). The measured numbers in the README's table are checked
against ``benchmarks/RESULTS.md`` here, peers or not.
"""

import importlib.util
import pathlib
import re

import jax
import jax.numpy as jnp
from absl.testing import absltest

_ROOT = pathlib.Path(__file__).resolve().parents[1]
_HAVE_HAIKU = importlib.util.find_spec("haiku") is not None
if _HAVE_HAIKU:
    import haiku as hk

_KEY = jax.random.PRNGKey(0)


def _readme_row(label: str) -> str:
    rows = [line for line in (_ROOT / "README.md").read_text().splitlines()
            if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"README.md has {len(rows)} table rows starting {label!r}"
    return rows[0]


@absltest.skipIf(not _HAVE_HAIKU, "dm-haiku is not installed (pip install -e '.[test]')")
class HaikuClaimsTest(absltest.TestCase):

    def test_params_are_nested_by_module_then_name(self):
        # README: nested `{'mlp/~/linear_0': {'w', 'b'}}`.
        params = hk.transform(lambda x: hk.nets.MLP([4, 2])(x)).init(_KEY, jnp.ones((1, 3)))
        self.assertEqual(set(params), {"mlp/~/linear_0", "mlp/~/linear_1"})
        self.assertEqual(set(params["mlp/~/linear_0"]), {"w", "b"})
        self.assertIn("`{'mlp/~/linear_0': {'w', 'b'}}`", _readme_row("params"))

    def test_layer_stack_carries_state_stacked_per_layer(self):
        # README: `hk.layer_stack` has per-layer params and state, stacked.
        def f(x):
            def layer(x):
                n = hk.get_state("n", (), jnp.int32, init=jnp.zeros)
                hk.set_state("n", n + 1)
                return hk.Linear(3)(x)
            return hk.layer_stack(4)(layer)(x)

        t = hk.transform_with_state(f)
        params, state = t.init(_KEY, jnp.ones((2, 3)))
        (w,) = [v["w"] for v in params.values()]
        self.assertEqual(w.shape, (4, 3, 3))
        (n,) = [v["n"] for v in state.values()]
        self.assertEqual(n.shape, (4,))
        _, state = t.apply(params, state, None, jnp.ones((2, 3)))
        (n2,) = [v["n"] for v in state.values()]
        self.assertEqual((n2 - n).tolist(), [1, 1, 1, 1])  # each layer updated its own slice
        self.assertIn("state", _readme_row("layer stacking").split("|")[3])
        self.assertNotIn("refuses state", _readme_row("layer stacking"))

    def test_layer_stack_refuses_keyword_arguments(self):
        # README: `hk.layer_stack` refuses keyword arguments; ours takes them.
        def f(x):
            return hk.layer_stack(2)(lambda x, scale=1.0: hk.Linear(3)(x) * scale)(x, scale=2.0)

        with self.assertRaisesRegex(TypeError, "unexpected keyword argument 'scale'"):
            hk.transform(f).init(_KEY, jnp.ones((2, 3)))
        self.assertIn("refuses keyword arguments", _readme_row("layer stacking"))

    def test_while_loop_body_cannot_create_params(self):
        # README: `hk.while_loop` can't create params.
        def f(x):
            return hk.while_loop(lambda v: v.sum() < 100.0, lambda v: hk.Linear(3)(v) + 1.0, x)

        with self.assertRaisesRegex(ValueError, "does not support initialization"):
            hk.transform(f).init(_KEY, jnp.ones((2, 3)))
        self.assertIn("`hk.while_loop` can't create params",
                      _readme_row("params inside control flow"))

    def test_misuse_raises_assorted_exception_types(self):
        # README: dm-haiku raises assorted exception types (no common base).
        raised = []
        for misuse in [
                lambda: hk.get_parameter("w", (3,), init=jnp.zeros),  # outside transform
                lambda: hk.transform(lambda x: hk.layer_stack(2)(
                    lambda x, s=1: x)(x, s=2)).init(_KEY, jnp.ones(3)),
                lambda: hk.transform(lambda: hk.get_parameter("w", (3,), init=jnp.zeros))
                .apply({}, None)]:
            with self.assertRaises(Exception) as cm:  # noqa: B017 — the type is the question
                misuse()
            raised.append(type(cm.exception))
        self.assertGreater(len(set(raised)), 1, raised)
        self.assertFalse(any(t.__module__.startswith("haiku") for t in raised), raised)

    def test_multi_transform_creates_only_what_the_template_touches(self):
        # docs/api.md: dm-haiku's multi_transform creates only the template's params.
        def f():
            encode, decode = hk.Linear(2, name="encode"), hk.Linear(3, name="decode")
            return (lambda x: encode(x)), (encode, decode)

        params = hk.multi_transform(f).init(_KEY, jnp.ones((1, 3)))
        self.assertEqual(set(params), {"encode"})

    def test_children_built_in_init_are_nested_under_the_parent(self):
        # docs/api.md: dm-haiku nests children built in __init__ as `parent/~/linear`.
        class Parent(hk.Module):
            def __init__(self):
                super().__init__(name="parent")
                self.proj = hk.Linear(4)

            def __call__(self, x):
                return self.proj(x)

        params = hk.transform(lambda x: Parent()(x)).init(_KEY, jnp.ones((1, 3)))
        self.assertEqual(set(params), {"parent/~/linear"})


class ReadmeNumbersTest(absltest.TestCase):

    def test_eager_apply_ratios_are_those_of_results_md(self):
        results = (_ROOT / "benchmarks" / "RESULTS.md").read_text()
        ours = float(re.search(
            r"\| eager apply, 128x tanh\(Linear\(16\)\).*?\| minihaiku / raw JAX \| ([0-9.]+) \|",
            results).group(1))
        haiku = float(re.search(r"dm-haiku [0-9.]+ ms = ([0-9.]+)x raw JAX", results).group(1))
        flax = float(re.search(r"flax.linen [0-9.]+ ms = ([0-9.]+)x raw JAX", results).group(1))
        row = _readme_row("eager apply, 128 × `tanh(Linear(16))` (`benchmarks/RESULTS.md`)")
        claimed = [float(x) for x in re.findall(r"\| ([0-9.]+)x raw JAX", row)]
        self.assertEqual(claimed, [float(f"{v:.2g}") for v in (ours, haiku, flax)], row)


if __name__ == "__main__":
    absltest.main()
