"""A researcher's first command, end to end on a GPU: a Gemma-7B-architecture checkpoint (random
bfloat16 weights, ``configs/gemma-7b-architecture.json``) served by the hub stand-in on 127.0.0.1
(``tests/hub_stand_in.py``), downloaded by ``ropescope profile ID --device cuda --dtype bfloat16``,
profiled again from the cache with ``--offline``, then ``ropescope heads``, at 8,192 tokens.

Prints each command's wall time (model load included) and peak GPU memory; random weights are fine
for timing. Needs a GPU and about 40 GB of disk: ``python bench/hub_gemma7b.py`` (``--small`` runs
the same path on a shrunken config, on CPU if needed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from gpu_gemma7b import build_model  # noqa: E402
from hub_stand_in import HubStandIn, char_tokenizer  # noqa: E402

REPO_ID = "bench/gemma-7b-architecture"
LAUNCH = (
    "import sys, torch\nfrom ropescope.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
    "    gb = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float('nan')\n"
    "    print(f'peak GPU memory {gb:.2f} GB', file=sys.stderr)\n"
)


def run(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", LAUNCH, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{result.stderr[-3000:]}")
    peak = [line for line in result.stderr.splitlines() if line.startswith("peak GPU memory")]
    return seconds, (peak[-1] if peak else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        model, _ = build_model(args.device, args.small)
        model.save_pretrained(tmp / "repo", max_shard_size="5GB")
        char_tokenizer(tmp / "repo")
        del model
        size = sum(p.stat().st_size for p in (tmp / "repo").iterdir()) / 2**30
        print(f"checkpoint written: {size:.1f} GB in {time.perf_counter() - start:.0f} s", flush=True)
        text = "".join(
            c for c in (HERE.parent / "ropescope" / "data" / "shakespeare.txt").read_text() if 32 <= ord(c) < 123
        )
        (tmp / "long.txt").write_text((text * (args.tokens // len(text) + 1))[: args.tokens - 1] + "\n")
        with HubStandIn() as hub:
            hub.add_directory(REPO_ID, tmp / "repo")
            env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
            env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
            env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
            where = ["--device", args.device, "--dtype", "bfloat16"]
            common = ["--prompts", str(tmp / "long.txt"), "--max-tokens", str(args.tokens)]
            steps = [
                ("profile, first run (downloads)", ["profile", REPO_ID, *common, *where, "--out", str(tmp / "p1")]),
                (
                    "profile, from the cache (--offline)",
                    ["profile", REPO_ID, *common, *where, "--offline", "--out", str(tmp / "p2")],
                ),
                (
                    "heads (--offline, --draws 0)",
                    ["heads", REPO_ID, *common, *where, "--offline", "--draws", "0", "--out", str(tmp / "h")],
                ),
            ]
            for name, argv in steps:
                seconds, peak = run(argv, env)
                print(f"{name}: {seconds:.1f} s wall (load included); {peak}", flush=True)
            got = sum(1 for method, path in hub.requests if method == "GET" and path.endswith(".safetensors"))
            print(f"weight files fetched over HTTP: {got}", flush=True)


if __name__ == "__main__":
    main()
