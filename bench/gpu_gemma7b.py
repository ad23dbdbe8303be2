"""Benchmark on a GPU: a Gemma-7B-architecture model (random weights, bfloat16) at 8,192 tokens.

The config (``bench/configs/gemma-7b-architecture.json``: 28 layers, 16 heads, head dim 256,
hidden 3072, theta 10k) is instantiated with random weights on the device; random weights are fine
for timing. One process, every case after a warm-up, ``--reps`` timed repetitions (CUDA-synchronised
wall time, median and spread) and the peak of ``torch.cuda.max_memory_allocated`` per case. Cases:

- ``forward``: the base model (no LM head), sdpa attention: the baseline.
- ``profile``: the same forward inside ``ropescope.capture`` (q/k/v chunk statistics).
- ``tl_cache``: ``TransformerBridge.run_with_cache`` filtered to q/k/v hooks (the bridge's forward
  includes the LM head), statistics from the cache. Skipped when transformer_lens is missing.
- ``heads``: forward with ropescope's head offset scores (``on_qk``), each row's softmax normaliser
  taken from the model's own flash attention kernel where it runs one (``hooks.model_lse``).
- ``heads_recompute``: the same with the normaliser recomputed block-wise in float32; after timing,
  the largest difference between the two scans' offset and first-token scores is printed.
- ``eager_attn``: eager attention with ``output_attentions=True`` (S x S weights of every layer).

Run on a GPU machine: ``python bench/gpu_gemma7b.py`` (CSV in ``bench/results/gpu_gemma7b.csv``, the
GPU targets' ratios in ``bench/results/ratios.json``; a CSV brought back from a GPU machine is
recorded with ``python bench/gpu_gemma7b.py --record CSV --device-name NAME``; ``--kernels FILE``
also writes the profiler's top operators of forward, profile and heads at the first length).
``--small --device cpu`` runs the same code on a shrunken config (the test suite does, as a smoke
test; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import ropescope  # noqa: E402
from ropescope.heads.scores import HeadScoreReducer  # noqa: E402
from ropescope.hooks.reducers import fan_out  # noqa: E402
from ropescope.hooks.stats import ChunkNormStats  # noqa: E402
from ropescope.model.anatomy import inspect_model  # noqa: E402
from ropescope.model.geometry import chunk_norms, read_geometry  # noqa: E402

SMALL = dict(
    vocab_size=512,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    head_dim=32,
)


def build_model(device: str, small: bool):
    config = json.loads((HERE / "configs" / "gemma-7b-architecture.json").read_text())
    if small:
        config.update(SMALL)
    cfg = transformers.GemmaConfig(**{k: v for k, v in config.items() if k not in ("model_type", "torch_dtype")})
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    return model.eval(), cfg


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_gb(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")


def timed(fn, device: str, reps: int) -> dict:
    """Warm-up, then ``reps`` timed calls: median and spread of seconds, peak device memory."""
    try:
        fn()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(reps):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
        return {
            "seconds": statistics.median(times),
            "spread_s": max(times) - min(times),
            "peak_gb": peak_gb(device),
        }
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        return {"seconds": float("nan"), "spread_s": float("nan"), "peak_gb": float("nan"), "error": str(exc)[:80]}
    finally:
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def cases(model, cfg, ids, device: str) -> dict:
    """name -> a callable running that case once."""
    base = model.model
    geometry = read_geometry(model)

    def forward():
        with torch.inference_mode():
            base(input_ids=ids, use_cache=False)

    # the geometry self-check runs once per run, as in a real one
    first = {"profile": True, "heads": True, "heads_recompute": True}

    def profile():
        check = first.pop("profile", False)
        with torch.inference_mode(), ropescope.capture(model, geometry, verify_geometry=check):
            base(input_ids=ids, use_cache=False)

    last = {}  # the last scan's head scores of each heads case, compared after timing

    def heads(model_lse: bool = True):
        name = "heads" if model_lse else "heads_recompute"
        check = first.pop(name, False)
        anatomy = inspect_model(model, geometry)
        reducer = HeadScoreReducer(geometry, anatomy.logit_rules, cfg.num_attention_heads)
        on_qk = fan_out(anatomy, [reducer])  # as scan_heads hands it over (the normaliser's row blocks)
        with (
            torch.inference_mode(),
            ropescope.capture(
                model, geometry, on_qk=on_qk, tensors=("q", "k"), verify_geometry=check, model_lse=model_lse
            ) as cap,
        ):
            base(input_ids=ids, use_cache=False)
        last[name] = reducer
        if cap._model_lse is not None:
            last["lse_counts"] = (cap._model_lse.used, cap._model_lse.recomputed)

    def eager_attn():
        model.set_attn_implementation("eager")
        try:
            with torch.inference_mode():
                atts = base(input_ids=ids, use_cache=False, output_attentions=True).attentions
                rows = torch.arange(1, ids.shape[1], device=ids.device)
                [float(a[0][:, rows, rows - 1].mean()) for a in atts]
        finally:
            model.set_attn_implementation("sdpa")

    chosen = {
        "forward": forward,
        "profile": profile,
        "heads": heads,
        "heads_recompute": lambda: heads(model_lse=False),
        "eager_attn": eager_attn,
    }
    chosen["last"] = last
    try:
        from transformer_lens.model_bridge import TransformerBridge  # noqa: F401

        chosen["tl_cache"] = lambda: tl_cache(model, cfg, ids, geometry)
    except ImportError:
        print("transformer_lens not installed: tl_cache skipped", file=sys.stderr)
    return chosen


def tl_cache(model, cfg, ids, geometry):
    """The TransformerLens way; boots the bridge on first use (the bridge wraps ``model`` in place,
    so it runs last)."""
    from transformer_lens.model_bridge import TransformerBridge

    if not hasattr(tl_cache, "bridge"):
        directory = tempfile.mkdtemp()
        model.config.save_pretrained(directory)
        tl_cache.bridge = TransformerBridge.boot_transformers(directory, hf_model=model, device=str(ids.device))
    bridge = tl_cache.bridge
    wanted = ("hook_q", "hook_k", "attn.hook_v")
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(ids, names_filter=lambda name: name.endswith(wanted))
        mask = torch.ones(ids.shape, dtype=torch.bool, device=ids.device)
        heads = {"q": cfg.num_attention_heads, "k": cfg.num_key_value_heads, "v": cfg.num_key_value_heads}
        stats = {t: ChunkNormStats(cfg.num_hidden_layers, heads[t], geometry.n_chunks) for t in "qkv"}
        for layer in range(cfg.num_hidden_layers):
            for name in "qkv":
                x = cache[f"blocks.{layer}.attn.hook_{name}"].transpose(1, 2)  # [batch, tokens, heads, d]
                stats[name].update(layer, chunk_norms(x.float(), geometry.layout), mask)
        del cache


def kernel_tables(runs: dict, device: str, tokens: int, out: Path) -> None:
    """Where the time of one forward, profile and heads call goes: ``torch.profiler`` tables of the top
    operators by device time (CPU time on a CPU), written to ``out``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    key = "cuda_time_total" if device.startswith("cuda") else "cpu_time_total"
    tables = []
    for case in ("forward", "profile", "heads"):
        runs[case]()  # warm
        sync(device)
        with profile(activities=activities) as prof:
            runs[case]()
            sync(device)
        table = prof.key_averages().table(sort_by=key, row_limit=22, max_name_column_width=60)
        tables.append(f"==== {case}, {tokens} tokens\n{table}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(tables))
    print(f"operator tables: {out}", flush=True)


def gpu_ratios(rows: list[dict]) -> dict[str, float]:
    """The issue-22 GPU targets' ratios (bench/targets.py) from this benchmark's rows."""
    seconds = {(r["tokens"], r["case"]): r["seconds"] for r in rows}
    wanted = {
        "GPU profile time / forward, 2,048 tokens": (2048, "profile"),
        "GPU profile time / forward, 8,192 tokens": (8192, "profile"),
        "GPU heads time / forward, 8,192 tokens": (8192, "heads"),
    }
    return {
        name: seconds[key] / seconds[(key[0], "forward")]
        for name, key in wanted.items()
        if key in seconds and (key[0], "forward") in seconds
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tokens", type=int, nargs="+", default=[8192])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="shrunken config (smoke test)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gpu_gemma7b.csv")
    parser.add_argument(
        "--kernels", type=Path, help="also write where the time goes: top operators of forward/profile/heads (profiler)"
    )
    parser.add_argument("--record", type=Path, help="only record the GPU ratios of this CSV (from a GPU machine)")
    parser.add_argument("--device-name", help="with --record: the machine the CSV was measured on")
    args = parser.parse_args(argv)
    if args.record:
        import pandas as pd
        from targets import record

        rows = pd.read_csv(args.record).to_dict("records")
        name = args.device_name or f"{rows[0]['device']}"
        record("gpu_gemma7b", gpu_ratios(rows), name)
        return
    model, cfg = build_model(args.device, args.small)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device: {name}; model: Gemma-7B architecture{' (small)' if args.small else ''}, bfloat16, random")
    rows = []
    order = ["forward", "profile", "heads", "heads_recompute", "eager_attn", "tl_cache"]
    for tokens in args.tokens:
        ids = torch.randint(3, cfg.vocab_size, (1, tokens), device=args.device)
        ids[0, 0] = cfg.bos_token_id
        runs = cases(model, cfg, ids, args.device)
        if args.kernels and tokens == args.tokens[0]:  # before the TL case, which wraps the model
            kernel_tables(runs, args.device, tokens, args.kernels)
        for case in [c for c in order if c in runs]:
            row = {"device": name, "tokens": tokens, "case": case, **timed(runs[case], args.device, args.reps)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        last = runs["last"]
        if "heads" in last and "heads_recompute" in last:
            fast, slow = last["heads"].arrays, last["heads_recompute"].arrays
            gap = max(
                float(np.nanmax(np.abs(fast.offset_scores() - slow.offset_scores()))),
                float(np.nanmax(np.abs(fast.sink_scores() - slow.sink_scores()))),
            )
            used, recomputed = last.get("lse_counts", (0, 0))
            print(
                f"{tokens} tokens: normaliser from the kernel in {used} layers, recomputed in {recomputed};"
                f" largest |score difference| to the recomputed normaliser {gap:.2e}",
                flush=True,
            )
    import pandas as pd

    frame = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    if args.device.startswith("cuda") and not args.small:
        from targets import record

        record("gpu_gemma7b", gpu_ratios(rows))  # on this machine
    print(
        f"\n{'tokens':>7} {'case':>15} {'median s':>9} {'spread s':>9} {'peak GB':>8} {'time/base':>10} {'mem/base':>9}"
    )
    for row in rows:
        base = next(r for r in rows if r["tokens"] == row["tokens"] and r["case"] == "forward")
        note = f"  ({row['error']})" if "error" in row else ""
        print(
            f"{row['tokens']:>7} {row['case']:>15} {row['seconds']:>9.3f} {row['spread_s']:>9.3f}"
            f" {row['peak_gb']:>8.2f}"
            f" {row['seconds'] / base['seconds']:>10.3f} {row['peak_gb'] / base['peak_gb']:>9.3f}{note}"
        )


if __name__ == "__main__":
    main()
