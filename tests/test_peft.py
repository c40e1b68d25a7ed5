"""Tests for mh.peft (LoRA adapters, merge) and mh.data.labels."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized

import minihaiku as mh
from benchmarks.train_step import op_counts

_RULES = [r"q_proj", r"v_proj"]
_TOKENS = jnp.array([[3, 1, 4, 1, 5, 9, 2, 6], [5, 3, 5, 8, 9, 7, 9, 3]])


def _config(scan: bool) -> mh.nets.LlamaConfig:
    return mh.nets.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                               num_layers=2, num_heads=4, num_kv_heads=2, scan_layers=scan)


def _nets(scan: bool, rank: int = 4, alpha: float | None = 8.0):
    config = _config(scan)

    def lora_fn(tokens):
        with mh.peft.lora(_RULES, rank=rank, alpha=alpha):
            return mh.nets.Llama(config)(tokens)

    base = mh.without_apply_rng(mh.transform(lambda tokens: mh.nets.Llama(config)(tokens)))
    return base, mh.without_apply_rng(mh.transform(lora_fn))


def _perturbed(params):
    """Nonzero ``lora_b`` so the adapters change the outputs."""
    key = jax.random.PRNGKey(7)
    return {k: (0.1 * jax.random.normal(jax.random.fold_in(key, i), v.shape)
                if k.endswith("/lora_b") else v)
            for i, (k, v) in enumerate(params.items())}


class LoraTest(parameterized.TestCase):

    @parameterized.parameters(False, True)
    def test_adapters_sit_next_to_the_matched_weights(self, scan):
        base, lora = _nets(scan)
        params = lora.init(0, _TOKENS)
        base_params = base.init(0, _TOKENS)
        adapters = {k: v.shape for k, v in params.items() if "/lora_" in k}
        lead = (2,) if scan else ()
        expected = {}
        for w in base_params:
            if w.endswith("/w") and ("q_proj" in w or "v_proj" in w):
                n_in, n_out = base_params[w].shape[-2:]
                expected[f"{w}/lora_a"] = (*lead, n_in, 4)
                expected[f"{w}/lora_b"] = (*lead, 4, n_out)
        self.assertEqual(adapters, expected)
        self.assertLen(expected, 4 if scan else 8)
        # Shapes and keys of the rest are the base model's (values differ: the
        # adapters draw init keys too).
        rest = {k: v.shape for k, v in params.items() if "/lora_" not in k}
        self.assertEqual(rest, {k: v.shape for k, v in base_params.items()})

    @parameterized.parameters(False, True)
    def test_fresh_adapters_compute_the_base_model(self, scan):
        base, lora = _nets(scan)
        params = lora.init(0, _TOKENS)
        out = lora.apply(params, _TOKENS)
        ref = base.apply(mh.peft.merge(params, alpha=8.0), _TOKENS)
        np.testing.assert_array_equal(out, ref)

    @parameterized.parameters(False, True)
    def test_getter_adds_the_scaled_low_rank_product(self, scan):
        _, lora = _nets(scan, rank=4, alpha=2.0)
        params = _perturbed(lora.init(0, _TOKENS))
        # Reference: fold by hand (w + alpha / rank * a @ b) and run the base.
        by_hand = {}
        for k, v in params.items():
            if k.endswith("/lora_a") or k.endswith("/lora_b"):
                continue
            a, b = params.get(f"{k}/lora_a"), params.get(f"{k}/lora_b")
            by_hand[k] = v if a is None else v + 0.5 * np.einsum("...ir,...ro->...io", a, b)
        base, _ = _nets(scan)
        out = lora.apply(params, _TOKENS)
        ref = base.apply(by_hand, _TOKENS)
        np.testing.assert_allclose(out, ref, atol=1e-5)
        self.assertGreater(float(jnp.abs(out - base.apply(mh.peft.merge(
            {k: v for k, v in params.items() if "lora" not in k}), _TOKENS)).max()), 1e-3)

    @parameterized.parameters(False, True)
    def test_merged_params_match_lora_and_compile_to_the_base_hlo(self, scan):
        base, lora = _nets(scan)
        params = _perturbed(lora.init(0, _TOKENS))
        merged = mh.peft.merge(params, alpha=8.0)
        out_lora = jax.jit(lora.apply)(params, _TOKENS)
        out_merged = jax.jit(base.apply)(merged, _TOKENS)
        np.testing.assert_allclose(out_merged, out_lora, atol=1e-5)
        base_params = base.init(0, _TOKENS)
        hlo_merged = op_counts(jax.jit(base.apply).lower(merged, _TOKENS).compile().as_text())
        hlo_base = op_counts(jax.jit(base.apply).lower(base_params, _TOKENS).compile().as_text())
        hlo_lora = op_counts(jax.jit(lora.apply).lower(params, _TOKENS).compile().as_text())
        self.assertEqual(hlo_merged, hlo_base)
        self.assertNotEqual(hlo_lora, hlo_base)  # the adapters do cost ops until merged

    def test_only_two_dimensional_weights_get_adapters(self):
        def f(x):
            with mh.peft.lora(r"Linear|LayerNorm", rank=2):
                x = mh.nn.LayerNorm(-1, create_scale=True, create_offset=True)(x)
                return mh.nn.Linear(3)(x)

        params = mh.transform(f).init(0, jnp.ones((1, 4)))
        self.assertEqual(sorted(k for k in params if "lora" in k),
                         ["~/Linear_0/__call__/w/lora_a", "~/Linear_0/__call__/w/lora_b"])

    def test_training_changes_only_the_adapters_and_lowers_the_loss(self):
        _, lora = _nets(True)
        params = lora.init(0, _TOKENS)
        optimizer = optax.multi_transform(
            {"trainable": optax.adam(3e-2), "frozen": optax.set_to_zero()},
            mh.data.labels(params, r"/lora_[ab]$"))
        opt_state = optimizer.init(params)

        def loss_fn(p):
            logits = lora.apply(p, _TOKENS[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, _TOKENS[:, 1:]).mean()

        @jax.jit
        def step(p, s):
            loss, grads = jax.value_and_grad(loss_fn)(p)
            updates, s = optimizer.update(grads, s, p)
            return optax.apply_updates(p, updates), s, loss

        new, losses = params, []
        for _ in range(8):
            new, opt_state, loss = step(new, opt_state)
            losses.append(float(loss))
        self.assertLess(losses[-1], losses[0] - 0.05)
        for k in params:
            if "/lora_" in k:
                if k.endswith("lora_b"):
                    self.assertGreater(float(jnp.abs(new[k] - params[k]).max()), 0.0)
            else:
                np.testing.assert_array_equal(new[k], params[k], err_msg=k)

    @parameterized.parameters(
        dict(kwargs=dict(rules=[], rank=2), match="no rules"),
        dict(kwargs=dict(rules=["("], rank=2), match="not regexes"),
        dict(kwargs=dict(rules="x", rank=0), match="rank=0"),
        dict(kwargs=dict(rules="x", rank=2, alpha="big"), match="alpha='big'"),
    )
    def test_bad_arguments(self, kwargs, match):
        with self.assertRaisesRegex(mh.InvalidArgumentError, match):
            with mh.peft.lora(**kwargs):
                pass

    def test_merge_refuses_incomplete_adapters(self):
        params = {"~/L/w": jnp.ones((3, 2)), "~/L/w/lora_a": jnp.ones((3, 1))}
        with self.assertRaisesRegex(mh.MismatchError, r"'~/L/w/lora_a'.*lora_b"):
            mh.peft.merge(params)


class LabelsTest(absltest.TestCase):

    def test_labels_each_path(self):
        params = {"~/a/w": 1, "~/b/w": 2, "~/b/w/lora_a": 3}
        self.assertEqual(mh.data.labels(params, [r"lora_", r"^~/a/"]),
                         {"~/a/w": "trainable", "~/b/w": "frozen", "~/b/w/lora_a": "trainable"})
        self.assertEqual(mh.data.labels(params, lambda p, v: v > 2, "on", "off"),
                         {"~/a/w": "off", "~/b/w": "off", "~/b/w/lora_a": "on"})

    def test_labels_refuses_no_rules(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "no rules"):
            mh.data.labels({"~/a": 1}, [])


if __name__ == "__main__":
    absltest.main()
