"""Tiny randomly initialised models of several RoPE families, and a character tokenizer."""

from __future__ import annotations

import torch
import transformers

from ropescope.survey import CharTokenizer, perturb_norms  # noqa: F401 - tests import CharTokenizer from here

COMMON = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    bos_token_id=1,
    pad_token_id=0,
    eos_token_id=2,
)

# family -> (config class, extra config, expected pair layout, rotary dims per head)
FAMILIES = {
    "gemma": ("GemmaConfig", dict(head_dim=16), "halves", 16),
    "gemma2": ("Gemma2Config", dict(head_dim=16, sliding_window=6, query_pre_attn_scalar=16), "halves", 16),
    "gemma3": (
        "Gemma3TextConfig",
        dict(
            head_dim=16,
            sliding_window=6,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
            },
            query_pre_attn_scalar=16,
        ),
        "halves",
        16,
    ),
    "llama": (
        "LlamaConfig",
        dict(head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 500_000.0}),
        "halves",
        16,
    ),
    "mistral": ("MistralConfig", dict(head_dim=16, sliding_window=5), "halves", 16),
    "qwen2": ("Qwen2Config", dict(), "halves", 16),
    "qwen3": ("Qwen3Config", dict(head_dim=16), "halves", 16),
    "phi": (
        "PhiConfig",
        dict(rope_parameters={"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.5}),
        "halves",
        8,
    ),
    "cohere": ("CohereConfig", dict(), "interleaved", 16),
}


def tiny_model(family: str, seed: int = 0, dtype=torch.float32):
    """A tiny random model of ``family`` in eval mode with eager attention."""
    name, extra, _, _ = FAMILIES[family]
    config = getattr(transformers, name)(**{**COMMON, **extra})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return perturb_norms(transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)).eval()


TEXTS = [
    "To be, or not to be",
    "that is the question: whether 'tis nobler in the mind",
    "to suffer",
    "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles",
    "x",
]


class DecodingCharTokenizer(CharTokenizer):
    """CharTokenizer that decodes: lower-case letters, digits, space and punctuation back to themselves."""

    _chars = {3 + (ord(c) % 93): c for c in "!\"#$%&'()*+,-./:;<=>?@[]^_` 0123456789abcdefghijklmnopqrstuvwxyz"}

    def decode(self, ids):
        return "".join("<bos>" if i == 1 else self._chars.get(i, "?") for i in ids)
