"""p-RoPE reads what the model really does: its output multiplier and soft-cap (perplexity equals
the model's own loss), every dtype (bfloat16 and float16 included), and every layer it claims."""

from __future__ import annotations

import math

import pytest
import torch

import ropescope
from ropescope.errors import UnsupportedModelError
from ropescope.model.anatomy import inspect_model
from ropescope.prope.perplexity import perplexity, prope_table, token_windows
from ropescope.survey import TEXTS, CharTokenizer, tiny_model

TEXT = " ".join(TEXTS) * 3


def _own_nll(model, windows) -> float:
    """Mean next-token loss (nats) as the model computes it itself, over every predicted token."""
    total, count = 0.0, 0
    with torch.no_grad():
        for window in windows:
            ids = torch.tensor([window])
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1].double()
            total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += len(window) - 1
    return total / count


def _sharpened(family: str, dtype=torch.float32):
    """A tiny model whose LM head is 40x sharper, so that its output multiplier changes the loss a lot."""
    model = tiny_model(family).to(dtype)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(40.0)
    return model


@pytest.mark.parametrize("family", ["granite", "cohere", "falcon_h1", "gemma2", "llama"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_perplexity_is_the_models_own_loss(family, dtype):
    model = _sharpened(family, dtype)
    windows = token_windows(CharTokenizer(), TEXT, 64)
    ours = perplexity(model, CharTokenizer(), TEXT, context=64, batch_size=2)
    own = _own_nll(model, windows)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    assert abs(ours["nll"] - own) <= tolerance * max(1.0, own), (ours["nll"], own)
    assert math.isclose(ours["perplexity"], math.exp(ours["nll"]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("family", ["llama", "gemma3_text", "glm", "gpt_neox"])
def test_p_rope_works_in_half_precision(family, dtype):
    model = tiny_model(family).to(dtype)
    ids = torch.tensor([CharTokenizer()(TEXTS[1] * 4)["input_ids"]])
    n_layers = inspect_model(model).n_layers
    with torch.no_grad():
        base = model(input_ids=ids, use_cache=False).logits
        with ropescope.p_rope(model, 1.0):
            same = model(input_ids=ids, use_cache=False).logits
        with ropescope.p_rope(model, 0.25) as reached:
            changed = model(input_ids=ids, use_cache=False).logits
        assert sorted(reached) == list(range(n_layers))
    assert torch.equal(base, same)
    assert not torch.equal(base, changed)


def test_a_rotation_p_rope_does_not_reach_is_refused(monkeypatch):
    model = tiny_model("llama")
    anatomy = inspect_model(model)
    anatomy.__dict__["sites"] = anatomy.sites[:1]  # as if layer 1 rotated q and k some other way
    with pytest.raises(UnsupportedModelError, match=r"p-RoPE did not reach layer\(s\) 1 of model type 'llama'"):
        prope_table(anatomy, CharTokenizer(), TEXT, [0.5], ["p"], context=64)


def test_p_rope_and_ablation_refuse_a_geometry_the_model_does_not_rotate_by():
    from ropescope.errors import GeometryMismatchError

    model = tiny_model("llama")
    wrong = inspect_model(model, inspect_model(model).geometry.with_layout("interleaved"))
    with pytest.raises(GeometryMismatchError, match="layer 0: rotating the captured query and key"):
        with ropescope.p_rope(wrong, 0.5):
            pass
    with pytest.raises(GeometryMismatchError):
        with ropescope.ablate_chunks(wrong, {(0, 0): [0]}):
            pass
    with ropescope.p_rope(model, 0.5):  # the model's own geometry passes, and is checked once:
        pass
    with ropescope.capture(model), ropescope.p_rope(model, 0.5):  # no second probe under the capture
        pass
