"""Models whose rotary module recomputes its frequencies from a pass's length (LongRoPE's short and
long factors, dynamic NTK scaling) run with the frequencies ropescope read at load only up to a
length the module itself holds: within it, profiles and p-RoPE are exact; past it, a profile or a
p-RoPE run is refused in one line (they would label or remove frequencies of the other set), and
so is a perplexity run (the hooks' self-check rotates with one set)."""

from __future__ import annotations

import pytest
import torch

import ropescope
from ropescope.errors import RopescopeError
from ropescope.model.anatomy import inspect_model
from ropescope.prope.perplexity import perplexity, prope_table
from ropescope.survey import CharTokenizer, tiny_model

SWITCH = 24  # LongRoPE's original_max_position_embeddings here: short factors up to 24 tokens, long past


def _longrope():
    half = 8
    return tiny_model(
        "phi3",
        {
            "max_position_embeddings": 256,
            "original_max_position_embeddings": SWITCH,
            "rope_parameters": {
                "rope_type": "longrope",
                "rope_theta": 10_000.0,
                "short_factor": [1.0 + 0.1 * i for i in range(half)],
                "long_factor": [2.0 + 0.5 * i for i in range(half)],
            },
        },
    )


def _dynamic():
    return tiny_model(
        "llama",
        {
            "max_position_embeddings": 32,
            "rope_parameters": {"rope_type": "dynamic", "rope_theta": 10_000.0, "factor": 2.0},
        },
    )


def _text(n: int) -> str:
    return ("abcdefghij" * 40)[: n - 1]  # CharTokenizer: BOS + one token per character


def test_the_switch_is_read_off_the_rotary_module():
    assert inspect_model(_longrope()).frequencies_fixed_up_to == (SWITCH, "longrope")
    assert inspect_model(_dynamic()).frequencies_fixed_up_to == (32, "dynamic")
    assert inspect_model(tiny_model("llama")).frequencies_fixed_up_to is None


def test_the_frequencies_really_switch_past_it():
    """The premise, from the model's own rotary module: cos at position 1 differs past the switch."""
    model = _longrope()
    rotary = model.model.rotary_emb
    x = torch.zeros(1, 1, 16)

    def cos_at_1(length):
        positions = torch.arange(length)[None]
        return rotary(x, positions)[0][0, 1]

    assert torch.equal(cos_at_1(SWITCH), cos_at_1(8))
    assert not torch.allclose(cos_at_1(SWITCH + 1), cos_at_1(SWITCH))


def test_a_profile_within_the_switch_runs_and_past_it_is_refused():
    model, tok = _longrope(), CharTokenizer()
    prof = ropescope.profile(model, tok, [_text(SWITCH), _text(10)])
    assert prof.meta["max_seq_len"] == SWITCH
    with pytest.raises(RopescopeError, match=f"LongRoPE.*past {SWITCH} tokens") as caught:
        ropescope.profile(model, tok, [_text(10), _text(SWITCH + 1)])
    assert "\n" not in str(caught.value)
    # cut to the switch, the same prompts run
    ropescope.profile(model, tok, [_text(10), _text(SWITCH + 1)], max_tokens=SWITCH)


@pytest.mark.parametrize("make, extrapolate", [(_longrope, False), (_dynamic, True)], ids=["longrope", "dynamic"])
def test_p_rope_past_the_switch_is_refused(make, extrapolate):
    model, tok = make(), CharTokenizer()
    limit = inspect_model(model).frequencies_fixed_up_to[0]
    text = _text(400)
    with pytest.raises(RopescopeError, match=f"past {limit} tokens"):
        prope_table(model, tok, text, [0.75], context=limit + 8, extrapolate=extrapolate, windows=2)
    with pytest.raises(RopescopeError, match=f"past {limit} tokens"):  # its hooks' self-check reads one set too
        perplexity(model, tok, text, context=limit + 8, extrapolate=extrapolate, windows=2)
    table = prope_table(model, tok, text, [0.75, 1.0], context=limit, windows=2)
    assert set(table.p) == {0.75, 1.0}
