"""What ropescope launches, counted: operators, host synchronisations and device-to-host copies.

On a GPU every non-view aten operator is (at least) one kernel launch, and a scalar read on the
host (``.item()``, ``bool(t)``, ``float(t)``) stalls the stream until the device catches up. Both
are deterministic, so they can be counted on a CPU, where they predict the GPU overheads that
wall time on a CPU hides. A ``TorchDispatchMode`` sees every operator the call dispatches.

Model: the Gemma-7B architecture (``bench/configs/gemma-7b-architecture.json``: 16 heads of 256
dims, hidden 3,072) cut to 2 layers, a 1,024-word vocabulary and a 3,072-wide MLP (neither changes any count),
random weights, bfloat16, sdpa attention, 512-token prompts. Cases, each the second call (the
first one warms caches: the NoPE probe, the geometry self-check's buffers):

- ``forward``: :func:`ropescope.profiling.run.run_forward`, the very call ``profile()`` makes (base
  model, ``attention_mask`` and ``position_ids``): the baseline.
- ``profile``: the whole ``ropescope.profile()`` call (q, k, v chunk statistics).
- ``heads``: the whole ``ropescope.scan_heads()`` call (chunk statistics of q and k, offset and
  first-token scores, per-chunk attribution), with the attribution's row blocks as large as on a
  GPU (on a CPU they are cache-sized, more and smaller); the joint statistics update's token blocks
  and the normaliser pass's row blocks likewise.

Columns: operators of the call with one prompt, operators it adds to the forward, that ratio to the
forward's; ``per_call_*``: the call's fixed part (what the one-prompt call adds beyond one
prompt's share: set-up, the geometry self-check, the eager gate, folding the statistics);
``per_prompt_*``: what one more prompt adds (the call with two prompts minus the call
with one: the steady cost per forward pass of a long run, without the call's fixed set-up such as
the geometry self-check); host synchronisations (``aten._local_scalar_dense``) and device-to-host copies (``_to_copy`` /
``copy_`` from a non-CPU tensor to the CPU: always 0 on a CPU machine, counted where a GPU runs it).

``python bench/kernel_counts.py`` (CSV in ``bench/results/kernel_counts.csv``).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import torch
import transformers
from targets import record
from torch.utils._python_dispatch import TorchDispatchMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import ropescope  # noqa: E402
from ropescope.heads import scores  # noqa: E402
from ropescope.hooks import attention, stats  # noqa: E402
from ropescope.model.anatomy import inspect_model  # noqa: E402
from ropescope.profiling.run import pad_batch, run_forward  # noqa: E402
from ropescope.survey import CharTokenizer  # noqa: E402

LAYERS, TOKENS = 2, 512
# the MLP's width changes no count (each projection is one operator whatever its size), and the
# full 24,576 makes a bfloat16 CPU forward take minutes where the CPU has no bfloat16 units
MLP = 3072
# a scalar read on the host: ``.item()``, ``float(t)``, ``bool(t)`` (``is_nonzero``), ``torch.equal``
SYNC = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.item.default,
    torch.ops.aten.is_nonzero.default,
    torch.ops.aten.equal.default,
}
COPIES = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}


class Count(TorchDispatchMode):
    """Counts non-view operators (kernels), host synchronisations and device-to-host copies."""

    def __init__(self):
        super().__init__()
        self.ops, self.syncs, self.copies = Counter(), 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in SYNC:
            self.syncs += 1
        elif not func._schema.is_mutable and getattr(func, "is_view", False):
            return out  # a view launches nothing
        self.ops[str(func.overloadpacket)] += 1
        if func in COPIES and _to_host(func, args, kwargs, out):
            self.copies += 1
        return out


def _to_host(func, args, kwargs, out) -> bool:
    source = args[1] if func is torch.ops.aten.copy_.default else args[0]
    target = args[0] if func is torch.ops.aten.copy_.default else out
    devices = (getattr(source, "device", None), getattr(target, "device", None))
    return devices[0] is not None and devices[0].type != "cpu" and devices[1] is not None and devices[1].type == "cpu"


def build_model():
    config = json.loads((HERE / "configs" / "gemma-7b-architecture.json").read_text())
    config.update(num_hidden_layers=LAYERS, vocab_size=1024, intermediate_size=MLP)
    cfg = transformers.GemmaConfig(**{k: v for k, v in config.items() if k not in ("model_type", "torch_dtype")})
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).eval()


def counted(fn) -> Count:
    fn()  # first call: warm-up
    with Count() as count:
        fn()
    return count


def main() -> pd.DataFrame:
    torch.set_num_threads(1)
    # the head scores' attribution takes rows in cache-sized blocks on a CPU; count what a GPU runs
    scores._BLOCK_ELEMENTS = {"cpu": scores._BLOCK_ELEMENTS_ELSEWHERE}
    stats.JOINT_BLOCK_ELEMENTS = {"cpu": stats.JOINT_BLOCK_ELEMENTS_ELSEWHERE}  # the statistics' blocks too
    attention.LSE_BLOCK_ELEMENTS = {"cpu": attention.LSE_BLOCK_ELEMENTS_ELSEWHERE}  # and the normaliser pass's rows
    model = build_model()
    tokenizer = CharTokenizer()
    text = "".join(chr(97 + (7 * i) % 26) for i in range(TOKENS - 1))  # 511 characters + BOS
    ids, mask = pad_batch([tokenizer(text)["input_ids"]], tokenizer.pad_token_id)
    anatomy = inspect_model(model)

    def forward():
        with torch.inference_mode():
            run_forward(anatomy, ids, mask)

    other = text[::-1]  # a second prompt of the same length
    cases = {
        "forward": (forward, forward),
        "profile": (
            lambda: ropescope.profile(model, tokenizer, [text]),
            lambda: ropescope.profile(model, tokenizer, [text, other], batch_size=1),
        ),
        "heads": (
            lambda: ropescope.scan_heads(model, tokenizer, [text]),
            lambda: ropescope.scan_heads(model, tokenizer, [text, other]),
        ),
    }
    counts = {name: (counted(one), counted(two)) for name, (one, two) in cases.items()}
    base = sum(counts["forward"][0].ops.values())
    fsyncs = counts["forward"][0].syncs  # the model's own (its mask code reads a scalar)
    rows = []
    for name, (one, two) in counts.items():
        total = sum(one.ops.values())
        added = total - base if name != "forward" else 0
        per_prompt = sum(two.ops.values()) - total if name != "forward" else base
        fixed = added - (per_prompt - base) if name != "forward" else 0
        rows.append(
            {
                "case": name,
                "layers": LAYERS,
                "tokens": TOKENS,
                "operators": total,
                "added_operators": added,
                "added_per_forward": round(added / base, 2),
                "per_prompt_added": per_prompt - base if name != "forward" else 0,
                "per_prompt_added_per_forward": round((per_prompt - base) / base, 2) if name != "forward" else 0.0,
                # the call's fixed part: what the one-prompt call adds beyond one prompt's share
                "per_call_added": fixed,
                "per_call_added_per_forward": round(fixed / base, 2),
                "host_syncs": one.syncs,
                "per_prompt_host_syncs": two.syncs - one.syncs - fsyncs if name != "forward" else 0,
                "device_to_host_copies": one.copies,
            }
        )
    table = pd.DataFrame(rows).set_index("case")
    record(
        "kernel_counts",
        {
            "operators one more profile() prompt adds / the forward's": table.per_prompt_added_per_forward["profile"],
            "operators one more scan_heads() prompt adds / the forward's": table.per_prompt_added_per_forward["heads"],
            "host syncs one more profile() prompt adds": int(table.per_prompt_host_syncs["profile"]),
            "host syncs one more scan_heads() prompt adds": int(table.per_prompt_host_syncs["heads"]),
            "operators of a profile() call's fixed part / the forward's": table.per_call_added_per_forward["profile"],
            "operators of a scan_heads() call's fixed part / the forward's": table.per_call_added_per_forward["heads"],
            "host syncs of a one-prompt profile() call (the forward's own 1 included)": int(
                table.host_syncs["profile"]
            ),
            "host syncs of a one-prompt scan_heads() call (the forward's own 1 included)": int(
                table.host_syncs["heads"]
            ),
        },
    )
    table = table.reset_index()
    out = HERE / "results" / "kernel_counts.csv"
    out.parent.mkdir(exist_ok=True)
    table.to_csv(out, index=False)
    print(table.to_string(index=False))
    for name in ("profile", "heads"):
        extra = counts[name][0].ops - counts["forward"][0].ops
        print(f"\nmost frequent operators {name} adds:", ", ".join(f"{op} {n}" for op, n in extra.most_common(8)))
    return table


if __name__ == "__main__":
    main()
