"""nnsight models: ``profile``, ``capture``, ``scan_heads`` and ``p_rope`` take an nnsight
``LanguageModel`` as they take the Hugging Face model it wraps, with equal numbers, the wrapper's
own traces still working afterwards, and a wrapper made without weights (meta device) loaded first."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from nnsight import LanguageModel

import ropescope
from ropescope.model.anatomy import inspect_model, is_nnsight

TEXTS = ["To be, or not to be, that is the question.", "Whether 'tis nobler in the mind to suffer"]


def _wrap(*args, **kwargs) -> LanguageModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nnsight 0.8 calls LanguageModel deprecated in favour of TransformersModel
        return LanguageModel(*args, **kwargs)


@pytest.mark.real
def test_an_nnsight_model_profiles_and_scans_as_the_model_it_wraps(gemma):
    model, tokenizer = gemma
    wrapped = _wrap(model, tokenizer=tokenizer)
    assert is_nnsight(wrapped) and not is_nnsight(model)
    assert inspect_model(wrapped).hf is model
    ours = ropescope.profile(wrapped, tokenizer, TEXTS)
    plain = ropescope.profile(model, tokenizer, TEXTS)
    for tensor in ("q", "k", "v"):
        assert torch.equal(ours.stats[tensor].mean, plain.stats[tensor].mean)
        assert torch.equal(ours.stats[tensor].count, plain.stats[tensor].count)
    heads = ropescope.scan_heads(wrapped, tokenizer, TEXTS[:1])
    again = ropescope.scan_heads(model, tokenizer, TEXTS[:1])
    np.testing.assert_array_equal(heads.table["offset_1"], again.table["offset_1"])
    with ropescope.capture(wrapped) as cap:
        model(**tokenizer(TEXTS[0], return_tensors="pt"))
    assert cap.stats["q"].count[0] > 0
    ids = tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = model(input_ids=ids).logits
        with ropescope.p_rope(wrapped, 0.75):
            changed = model(input_ids=ids).logits
        assert not torch.equal(changed, before)
        with ropescope.rope_scaling(wrapped, "yarn:2"):
            scaled = model(input_ids=ids).logits
        with ropescope.rope_scaling(model, "yarn:2"):
            assert torch.equal(model(input_ids=ids).logits, scaled)
        assert torch.equal(model(input_ids=ids).logits, before)  # restored
        text = ropescope.load_text("heldout")[:1200]
        ours = ropescope.perplexity(wrapped, tokenizer, text, context=128)["perplexity"]
        assert ours == ropescope.perplexity(model, tokenizer, text, context=128)["perplexity"]
        with wrapped.trace(ids):  # the wrapper's own tracing is untouched
            logits = wrapped.output.logits.save()
    assert torch.equal(logits, before)


@pytest.mark.real
def test_an_nnsight_model_made_without_weights_is_loaded_first(gemma_dir, gemma):
    _, tokenizer = gemma
    wrapped = _wrap(str(gemma_dir), tokenizer=tokenizer)
    assert not wrapped.dispatched
    prof = ropescope.profile(wrapped, tokenizer, TEXTS[:1], tensors=("q", "k"))
    assert wrapped.dispatched and prof.n_layers == 18
    expected = ropescope.profile(ropescope.load_model("gemma-3-270m"), tokenizer, TEXTS[:1], tensors=("q", "k"))
    np.testing.assert_allclose(prof.stats["q"].mean, expected.stats["q"].mean, rtol=1e-5, atol=1e-6)
