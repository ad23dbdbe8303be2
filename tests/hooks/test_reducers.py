"""Reducers: your own quantity from the same forward passes as the profile and the head scores.

A reducer sees exactly the post-RoPE q the model multiplies (checked against the profile's own
chunk norms: a rotation keeps every chunk's norm), the counted-token mask of the run, and (when it
asks) each attention row's softmax normaliser (checked against a dense softmax); a head scan with
extra reducers and v profiled alongside gives the same table and the same profile as separate runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.hooks.reducers import Reducer, fan_out
from ropescope.model.anatomy import inspect_model


class SquaredQueryNorm:
    """Sum over counted tokens of every query head's squared post-RoPE norm, per layer and head."""

    def __init__(self, n_layers, n_heads):
        self.total = torch.zeros(n_layers, n_heads, dtype=torch.float64)
        self.tokens = torch.zeros(n_layers, dtype=torch.float64)
        self.calls = []

    def __call__(self, layer, q_rot, k_rot, mask):
        self.calls.append((layer, tuple(q_rot.shape)))
        squared = q_rot.double().square().sum(dim=-1)  # [batch, heads, tokens]
        counted = mask[:, None, :].to(squared.device)
        self.total[layer] += (squared * counted).sum(dim=(0, 2)).cpu()
        self.tokens[layer] += counted.sum().double().cpu()


def test_a_reducer_sees_the_rotated_queries_of_the_counted_tokens():
    model = tiny_model("llama")
    reducer = SquaredQueryNorm(3, 4)
    assert isinstance(reducer, Reducer)
    prof = ropescope.profile(model, CharTokenizer(), TEXTS, batch_size=2, reducers=[reducer])
    # E||q||^2 = sum over chunks of E[chunk norm^2] = sum_c (m2 / n + mean^2), from the pre-RoPE statistics
    stats = prof.stats["q"]
    expected = (stats.m2.numpy() / stats.count.numpy()[:, None, None] + stats.mean.numpy() ** 2).sum(-1)
    got = (reducer.total / reducer.tokens[:, None]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert reducer.tokens[0] == stats.count[0]  # the same tokens: BOS and padding left out
    assert max(shape[0] for _, shape in reducer.calls) == 2  # batched: it did not ask for whole prompts


def test_a_reducer_that_asks_gets_each_rows_softmax_normaliser():
    model = tiny_model("llama")
    anatomy = inspect_model(model)
    seen = {}

    class Normalisers:
        uses_lse = True

        def __call__(self, layer, q_rot, k_rot, mask, lse):
            seen.setdefault(layer, []).append((q_rot[0].double(), k_rot[0].double(), lse))

    ropescope.profile(model, CharTokenizer(), TEXTS[:2], reducers=[Normalisers()], tensors=())
    assert sorted(seen) == [0, 1, 2] and all(len(v) == 2 for v in seen.values())
    for layer, calls in seen.items():
        rule = anatomy.logit_rules[layer]
        for q, k, lse in calls:  # one whole prompt per call
            heads, seq = q.shape[0], q.shape[1]
            keys = k.repeat_interleave(heads // k.shape[0], dim=0)
            logits = q @ keys.transpose(-1, -2) * rule.scaling
            logits = logits.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), -torch.inf)
            np.testing.assert_allclose(lse.numpy(), torch.logsumexp(logits, dim=-1).numpy(), rtol=1e-5, atol=1e-5)


def test_heads_with_extra_reducers_and_values_equal_separate_runs():
    model, tokenizer = tiny_model("qwen3"), CharTokenizer()
    alone = ropescope.scan_heads(model, tokenizer, TEXTS)
    extra = SquaredQueryNorm(3, 4)
    together = ropescope.scan_heads(model, tokenizer, TEXTS, reducers=[extra], tensors=("q", "k", "v"))
    cols = ["layer", "head", "class", "score"]
    assert together.table[cols].equals(alone.table[cols])
    separate = ropescope.profile(model, tokenizer, TEXTS, batch_size=1)
    for name in ("q", "k", "v"):
        for field in ("count", "mean", "m2", "max"):
            np.testing.assert_allclose(
                getattr(together.profile.stats[name], field).numpy(),
                getattr(separate.stats[name], field).numpy(),
                rtol=1e-10,
            )
    assert {shape[0] for _, shape in extra.calls} == {1}  # the head scan runs whole prompts: so did it


def test_a_reducer_of_some_layers_is_called_for_those_only():
    model = tiny_model("llama")

    class Some:
        layers = {1}

        def __init__(self):
            self.layers_seen = set()

        def __call__(self, layer, q_rot, k_rot, mask):
            self.layers_seen.add(layer)

    some = Some()
    ropescope.profile(model, CharTokenizer(), TEXTS[:1], reducers=[some], tensors=())
    assert some.layers_seen == {1}


def test_what_is_not_a_reducer_is_refused():
    model = tiny_model("llama")
    with pytest.raises(TypeError, match="reducer must be callable"):
        fan_out(inspect_model(model), [42])
    with pytest.raises(TypeError, match="either on_qk or reducers"):
        with ropescope.capture(model, on_qk=lambda *a: None, reducers=[lambda *a: None]):
            pass


@pytest.mark.real
def test_the_python_page_reducer_example_runs_on_the_bundled_model():
    page = (Path(__file__).resolve().parents[2] / "docs" / "how-to" / "python.md").read_text(encoding="utf-8")
    section = page.split("## Your own reducer", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/how-to/python.md", "exec"), namespace)
    mean, prof = namespace["mean_query_norm"], namespace["heads"].profile
    assert mean.shape == (18, 4) and torch.isfinite(mean).all() and (mean > 0).all()
    assert set(prof.meta["tensors"]) == {"q", "k", "v"}
    # Jensen: the mean norm is at most the root of the mean squared norm, which the q statistics give
    stats = prof.stats["q"]
    rms = np.sqrt((stats.m2.numpy() / stats.count.numpy()[:, None, None] + stats.mean.numpy() ** 2).sum(-1))
    assert (mean.numpy() <= rms * (1 + 1e-6)).all() and (mean.numpy() >= 0.5 * rms).all()
