"""The weights fingerprint reads samples of every parameter, never the whole model, and reading a
model (its geometry, NoPE layers, the attention gate, a scan) never computes the vocabulary's logits."""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import pytest
import torch

import ropescope
from ropescope.errors import ProfileFileError
from ropescope.heads.gate import check_attention_rule
from ropescope.hooks import verify_geometry
from ropescope.model.anatomy import FINGERPRINT_KIND, FINGERPRINT_SAMPLES, inspect_model
from ropescope.survey import TEXTS, CharTokenizer, tiny_model


def _reference_fingerprint(model) -> str:
    """The documented definition, spelled out in numpy: config, then per parameter (sorted by name)
    its name, shape, dtype and the float32 values at flat indices 0, step, 2 step, ..."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, param in sorted(model.named_parameters()):
        values = param.detach().float().numpy().reshape(-1)
        step = max(1, values.size // FINGERPRINT_SAMPLES)
        digest.update(f"{name}:{tuple(param.shape)}:{param.dtype}".encode())
        digest.update(np.ascontiguousarray(values[np.arange(0, values.size, step)]).tobytes())
    return digest.hexdigest()[:16]


def test_fingerprint_is_its_definition_and_sees_a_changed_weight():
    """Equal to the numpy recomputation on a model whose embedding (8,192 x 64) is sampled, not read
    whole; the same for a copy; another for one changed value of a small parameter and for a
    fine-tune-like change of a whole matrix."""
    model = tiny_model("gemma3_text", {"vocab_size": 8192})
    assert model.get_input_embeddings().weight.numel() > 100 * FINGERPRINT_SAMPLES
    own = inspect_model(model).weights_fingerprint
    assert own == _reference_fingerprint(model)
    assert inspect_model(copy.deepcopy(model)).weights_fingerprint == own
    one = copy.deepcopy(model)
    with torch.no_grad():
        one.model.layers[0].self_attn.q_norm.weight[3] += 1e-3
    tuned = copy.deepcopy(model)
    with torch.no_grad():
        tuned.model.layers[1].mlp.down_proj.weight.mul_(1.01)
    assert len({own, inspect_model(one).weights_fingerprint, inspect_model(tuned).weights_fingerprint}) == 3


def test_reading_and_scanning_a_model_never_computes_its_logits():
    """Geometry and NoPE probe, the geometry self-check, the attention gate, a profile and a head scan
    run the decoder without its language-model head."""
    model = tiny_model("gemma3")
    calls = []
    handle = model.get_output_embeddings().register_forward_hook(lambda *a: calls.append(1))
    try:
        anatomy = inspect_model(model)
        verify_geometry(model)
        check_attention_rule(anatomy, torch.tensor([CharTokenizer()(TEXTS[0])["input_ids"]]))
        ropescope.scan_heads(model, CharTokenizer(), [TEXTS[0]], max_offset=2)
    finally:
        handle.remove()
    assert calls == []


def test_merging_with_a_profile_fingerprinted_the_old_way_is_refused():
    """A profile saved before fingerprints were sampled has no fingerprint kind: its fingerprint of the
    same weights differs, so merging is refused in one line that says why, not as other weights."""
    model = tiny_model("gemma3")
    new = ropescope.profile(model, CharTokenizer(), [TEXTS[0]])
    assert new.meta["weights_fingerprint_kind"] == FINGERPRINT_KIND
    old = ropescope.profile(model, CharTokenizer(), [TEXTS[1]])
    del old.meta["weights_fingerprint_kind"]
    old.meta["weights_fingerprint"] = "0123456789abcdef"
    with pytest.raises(ProfileFileError, match="older ropescope") as info:
        new.merge(old)
    assert "\n" not in str(info.value)
    assert new.merge(ropescope.profile(model, CharTokenizer(), [TEXTS[1]])).n_tokens > new.n_tokens


def test_an_unchanged_model_is_read_once_and_a_changed_one_again():
    """A notebook calling profile() on the same model again: what was read off it (geometry, sites,
    logit rules, weights fingerprint) is reused while no parameter, buffer or config changed, and
    read again as soon as one did (in place, by a version counter; or swapped, by its address)."""
    model = tiny_model("llama")
    first = inspect_model(model)
    fingerprint = first.weights_fingerprint
    again = inspect_model(model)
    assert again.memo is first.memo and again.geometry is first.geometry
    assert again.weights_fingerprint == fingerprint == _reference_fingerprint(model)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight.mul_(2.0)  # in place: the version counter moves
    changed = inspect_model(model)
    assert changed.memo is not first.memo
    assert changed.weights_fingerprint == _reference_fingerprint(model) != fingerprint
    assert first.weights_fingerprint == changed.weights_fingerprint  # a kept anatomy re-checks too
    model.model.layers[0].self_attn.q_proj.weight = torch.nn.Parameter(
        model.model.layers[0].self_attn.q_proj.weight * 3
    )
    assert inspect_model(model).weights_fingerprint == _reference_fingerprint(model)
    model.config.rope_parameters["rope_theta"] = 20_000.0  # the config alone
    assert inspect_model(model).memo is not changed.memo


def test_what_was_read_does_not_keep_a_model_alive():
    import gc
    import weakref

    model = tiny_model("llama")
    ropescope.profile(model, CharTokenizer(), list(TEXTS))
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("value", [-5, 0])
def test_a_context_length_that_is_no_length_is_named_as_such(value):
    from ropescope.errors import RopescopeError

    model = tiny_model("llama")
    model.config.max_position_embeddings = value
    with pytest.raises(RopescopeError, match="max_position_embeddings .* which is no context length"):
        ropescope.profile(model, CharTokenizer(), list(TEXTS))
