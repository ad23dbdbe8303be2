"""Benchmark: ropescope's chunk statistics vs the TransformerLens way of getting them.

Real Gemma 3 270M, float32, one prompt of N tokens; each case in a fresh process (peak resident
memory is the process's), repeated ``--inner`` times after a warm-up, median kept. Cases:

- ``forward``: the base model (no LM head), no hooks: the baseline.
- ``ropescope``: the same forward inside ``ropescope.capture``: q, k and v chunk statistics of every
  layer, head and chunk, reduced inside the hooks.
- ``tl_cache``: the TransformerLens way: ``TransformerBridge.run_with_cache`` filtered to
  ``hook_q_normed`` / ``hook_k_normed`` / ``hook_v`` of every block, then the same statistics
  computed from the cached activations. This is the call a TL user writes; the bridge's forward
  also computes the LM head (the logits, 262k words per token), which a cache-based workflow
  cannot skip.
- ``tl_cache_no_head``: as ``tl_cache`` but with the bridge's LM head replaced by an identity, to
  separate the cost of caching activations from the cost of the logits.

Target (issue 6): ropescope faster, and memory that does not grow with the cached activations.
Run: ``.venv/bin/python bench/tl_vs_ropescope.py [--tokens 512 2048 8192] [--reps 3]``.
"""

from __future__ import annotations

import argparse

from common import report, run_interleaved

CHILD = r"""
import warnings
warnings.filterwarnings("ignore")
inner = int(extra)
if case.startswith("tl_"):
    from transformer_lens.model_bridge import TransformerBridge
    from ropescope.model import checkpoint_dir
    from ropescope.model.geometry import chunk_norms, read_geometry
    from ropescope.hooks.stats import ChunkNormStats
    geometry = read_geometry(model)
    config = model.config
    heads = {"q": config.num_attention_heads, "k": config.num_key_value_heads, "v": config.num_key_value_heads}
    directory = checkpoint_dir("gemma-3-270m")
    bridge = TransformerBridge.boot_transformers(directory, hf_model=model, tokenizer=tok, device="cpu")
    if case == "tl_cache_no_head":
        model.lm_head = torch.nn.Identity()
    wanted = ("hook_q_normed", "hook_k_normed", "attn.hook_v")
    def once():
        with torch.inference_mode():
            _, cache = bridge.run_with_cache(ids, names_filter=lambda name: name.endswith(wanted))
            stats = {t: ChunkNormStats(geometry.n_layers, heads[t], geometry.n_chunks) for t in "qkv"}
            mask = torch.ones(ids.shape, dtype=torch.bool)
            for layer in range(geometry.n_layers):
                q = cache[f"blocks.{layer}.attn.hook_q_normed"]            # [batch, heads, tokens, d]
                k = cache[f"blocks.{layer}.attn.hook_k_normed"]
                v = cache[f"blocks.{layer}.attn.hook_v"].transpose(1, 2)  # [batch, tokens, heads, d]
                for name, x in (("q", q), ("k", k), ("v", v)):
                    stats[name].update(layer, chunk_norms(x, geometry.layout), mask)
            del cache
else:
    cap = ropescope.capture(model).__enter__() if case == "ropescope" else None
    def once():
        with torch.inference_mode():
            base(input_ids=ids, use_cache=False)
once()  # warm-up
times = []
for _ in range(inner):
    start = time.perf_counter(); once(); times.append(time.perf_counter() - start)
times.sort()
result["seconds"] = times[len(times) // 2]
result["peak_rss_gb"] = peak_gb()
print("RESULT " + json.dumps(result))
"""

CASES = ["forward", "ropescope", "tl_cache", "tl_cache_no_head"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--reps", type=int, default=3, help="fresh processes per case")
    parser.add_argument("--inner", type=int, default=3, help="timed repetitions inside each process")
    args = parser.parse_args()

    def inner(tokens: int) -> str:  # one timed forward at 8k: each takes about 40 s here
        return str(args.inner if tokens < 8192 else 1)

    rows = run_interleaved(CHILD, CASES, args.tokens, args.reps, inner)
    report(rows, "tl_vs_ropescope", CASES, "forward")


if __name__ == "__main__":
    main()
