"""Demonstrations (random weights, not findings) of what the per-layer geometry reads.

1. NoPE layers beside RoPE layers: a SmolLM3-shaped model (12 layers, RoPE skipped on every fourth
   layer as SmolLM3 does, 8 heads of 64 dims, theta 2M) -> docs/nope_layers_smollm3-shape.png
2. Gemma 4's proportional RoPE: a Gemma-4-31B-shaped model (12 layers, five sliding layers with
   256-dim heads and 2 KV heads at theta 10k to one global layer with 512-dim heads and 1 KV head
   whose keys are its values (K = V) and whose RoPE rotates only the first quarter of its pairs, at
   1e6^(-2i/512); the last two layers reuse earlier layers' keys and values)
   -> docs/proportional_rope_gemma4-shape.png.

Both profile the built-in Shakespeare prompts through a character tokenizer. On random weights the
chunk norms carry no learned structure: the figures show what the tool draws, not how those models
use their frequencies.

    python analyses/demo_new_geometries.py
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

import ropescope
from ropescope.plots.style import save_figure
from ropescope.plots.usage import layer_usage_figure
from ropescope.prompts import load_prompts
from ropescope.survey import CharTokenizer

REPO = Path(__file__).resolve().parents[1]
SMALL_VOCAB = dict(vocab_size=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def demo(config, name: str, stem: str) -> None:
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    print(ropescope.inspect_model(model).geometry)
    prof = ropescope.profile(
        model, CharTokenizer(), load_prompts("shakespeare"), max_tokens=256, model_id=name, prompt_set="shakespeare"
    )
    for path in save_figure(layer_usage_figure(prof), REPO / "docs" / stem, formats=("png",)):
        print(path)


demo(
    transformers.SmolLM3Config(
        **SMALL_VOCAB,
        num_hidden_layers=12,
        hidden_size=512,
        intermediate_size=1024,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=64,
        max_position_embeddings=4096,
        no_rope_layers=[int((i + 1) % 4 != 0) for i in range(12)],
    ),
    "SmolLM3-shaped (random weights)",
    "nope_layers_smollm3-shape",
)
demo(
    transformers.Gemma4TextConfig(
        **SMALL_VOCAB,
        vocab_size_per_layer_input=128,
        hidden_size_per_layer_input=8,
        num_hidden_layers=12,
        hidden_size=512,
        intermediate_size=1024,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=256,
        global_head_dim=512,
        num_global_key_value_heads=1,
        attention_k_eq_v=True,
        num_kv_shared_layers=2,
        sliding_window=512,
        max_position_embeddings=32768,
        layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 2,
    ),
    "Gemma-4-shaped (random weights)",
    "proportional_rope_gemma4-shape",
)
