"""Demonstration (random weights, not a finding): NoPE layers beside RoPE layers.

Builds a SmolLM3-shaped model with random weights (12 layers, RoPE skipped on every fourth layer
as SmolLM3 does, 8 heads of 64 dims, theta 2M), profiles the built-in Shakespeare prompts through
a character tokenizer and draws F3 with the NoPE layers labelled. On random weights the chunk
norms carry no learned structure: the figure shows what the tool draws, not how SmolLM3 uses its
frequencies (profile the real HuggingFaceTB/SmolLM3-3B for that).

    python analyses/demo_nope_layers.py            # -> docs/nope_layers_smollm3-shape.png
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

import ropescope
from ropescope.families import CharTokenizer
from ropescope.plots.style import save_figure
from ropescope.plots.usage import layer_usage_figure
from ropescope.prompts import load_prompts

REPO = Path(__file__).resolve().parents[1]

shape = dict(
    vocab_size=128,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    num_hidden_layers=12,
    hidden_size=512,
    intermediate_size=1024,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=64,
    max_position_embeddings=4096,
    no_rope_layers=[int((i + 1) % 4 != 0) for i in range(12)],
)
torch.manual_seed(0)
model = transformers.AutoModelForCausalLM.from_config(transformers.SmolLM3Config(**shape)).eval()
print(ropescope.inspect_model(model).geometry)
texts = load_prompts("shakespeare")
prof = ropescope.profile(
    model,
    CharTokenizer(),
    texts,
    max_tokens=256,
    model_id="SmolLM3-shaped (random weights)",
    prompt_set="shakespeare",
)
for path in save_figure(layer_usage_figure(prof), REPO / "docs" / "nope_layers_smollm3-shape", formats=("png",)):
    print(path)
