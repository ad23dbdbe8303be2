"""Benchmark: would ``torch.compile`` make the chunk-norm statistics cheaper? (issue 22, item 3)

Times the statistics update ``profile()`` runs at every layer, the eager
:class:`~ropescope.hooks.stats.JointUpdate` that ropescope uses, against the same arithmetic written
as one function and compiled with ``torch.compile`` (one fused kernel where the backend can fuse:
the chunk norms, the keep-mask, the token sums in float64, the sums of squares and the maximum).
Random q, k and v of one model's shapes (default Gemma 3 270M: 18 layers, 4 query heads and 1
key/value head of 256 rotary dims; ``--shape gemma-7b``: 28 layers of 16, 16 and 16), one prompt of
N tokens per forward, the first token left out as ``profile()`` leaves BOS out.

Prints, per length: the compile time (the first call; inductor's on-disk cache makes a second
process much faster than the first), the steady time per forward of each (median of ``--reps``),
their ratio, and the largest relative difference between the two's token sums, sums of squares and
maxima (the compiled reductions add in another order: float64 rounding, about 1e-15).

Measured on the 2-core CPU this project develops on (torch 2.13, Gemma 3 270M shapes, three runs):
compiling took 13.0 s with a fresh inductor cache (4.5 s more for a second prompt length) and
0.5-1.9 s from a warm one; per forward the compiled function took 0.90x, 1.08x and 0.92x the eager
update's time at 512 tokens (about 55 ms), and 0.88x, 1.51x and 1.13x at 2,048 (about 210-310 ms),
with identical sums. No gain that survives this machine's noise, for seconds of compiling: ropescope
does not compile on a CPU. On a GPU, where the statistics' element-wise passes are memory-bound
(about 18% of the forward's kernel time on an H200 at 2,048 tokens) and each is a kernel launch,
one fused kernel should pay: run this there before making ``profile()`` compile on CUDA.

Run: ``.venv/bin/python bench/compile_stats.py [--tokens 512 2048] [--device cuda] [--dtype bfloat16]``
(``--backend eager`` checks the compiled function's code path without a compiler).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from targets import record

from ropescope.hooks.stats import ChunkNormStats, JointUpdate
from ropescope.model.geometry import chunk_norms

SHAPES = {"gemma-3-270m": (18, 4, 1, 256), "gemma-7b": (28, 16, 16, 256)}  # layers, q heads, kv heads, rotary dims


def block_sums(xs: list[torch.Tensor], mask: torch.Tensor, layout: str) -> torch.Tensor:
    """The joint update's arithmetic as one function: ``xs`` each ``[B, H, S, r]``, ``mask[B, S]``.
    Returns ``[3, columns]`` float64: token sums, sums of squares and maxima of every tensor's chunk
    norms followed by its token count (the joint update's column layout)."""
    columns = []
    for x in xs:
        norms = chunk_norms(x, layout).transpose(1, 2).flatten(2).double()  # [B, S, H * C], float32 norms
        keep = mask & torch.isfinite(norms.sum(dim=2))  # [B, S]
        norms = torch.where(keep[..., None], norms, 0.0)
        columns += [norms, keep[..., None].double()]
    flat = torch.cat(columns, dim=2).flatten(0, 1)
    return torch.stack([flat.sum(dim=0), (flat * flat).sum(dim=0), flat.amax(dim=0)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="gemma-3-270m")
    parser.add_argument("--layers", type=int, help="fewer layers than the shape's (a quick check)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (eager: no compiler)")
    args = parser.parse_args(argv)
    layers, q_heads, kv_heads, rotary = SHAPES[args.shape]
    layers = args.layers or layers
    dtype, device = getattr(torch, args.dtype), torch.device(args.device)
    compiled = torch.compile(block_sums, backend=args.backend, dynamic=False)
    ratios = {}
    print(f"{'tokens':>7} {'compile s':>10} {'eager ms':>9} {'compiled ms':>12} {'ratio':>6} {'max rel diff':>13}")
    for n in args.tokens:
        generator = torch.Generator().manual_seed(n)
        xs = [
            torch.randn(1, h, n, rotary, generator=generator).to(device=device, dtype=dtype)
            for h in (q_heads, kv_heads, kv_heads)
        ]
        mask = torch.ones(1, n, dtype=torch.bool, device=device)
        mask[:, 0] = False  # BOS, as profile() leaves it out

        def eager(xs=xs, mask=mask):
            heads = {"q": q_heads, "k": kv_heads, "v": kv_heads}
            stats = {t: ChunkNormStats(layers, h, rotary // 2) for t, h in heads.items()}
            joint = JointUpdate(stats)
            with torch.inference_mode():
                for layer in range(layers):
                    joint.update(layer, list(zip("qkv", xs, strict=True)), mask, "halves")
            _sync(device)
            return joint

        def fused(xs=xs, mask=mask):
            with torch.inference_mode():
                out = [compiled(xs, mask, "halves") for _ in range(layers)]
            _sync(device)
            return out

        start = time.perf_counter()
        fused()
        compile_s = time.perf_counter() - start
        eager(), fused()  # warm-up
        times = {"eager": [], "compiled": []}
        for _ in range(args.reps):
            for name, fn in (("eager", eager), ("compiled", fused)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
        theirs = fused()[0].cpu()
        total, squares, peak, _ = (b.cpu() for b in eager()._buffers)
        ours = torch.stack([total[0], squares[0], peak[0]])
        diff = float(((theirs - ours).abs() / ours.abs().clamp(min=1e-300)).max())
        ratios[f"compiled statistics / eager joint update, {n:,} tokens ({args.shape}, {args.device})"] = c / e
        print(f"{n:>7} {compile_s:>10.1f} {1000 * e:>9.1f} {1000 * c:>12.1f} {c / e:>6.3f} {diff:>13.1e}", flush=True)
    if args.backend == "inductor":
        record("compile_stats", ratios)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
