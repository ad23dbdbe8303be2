"""Data parallel: two gloo processes give the single-process profile (to float summation order)."""

import numpy as np
import torch
import torch.multiprocessing as mp
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope

PROMPTS = TEXTS * 3


def _worker(rank, world, init_file, out_dir):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        prof = ropescope.profile(tiny_model("qwen3"), CharTokenizer(), PROMPTS, batch_size=2)
        prof.save(f"{out_dir}/rank{rank}.safetensors")
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_processes_equal_one(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = ropescope.profile(tiny_model("qwen3"), CharTokenizer(), PROMPTS, batch_size=2)
    for rank in range(2):
        merged = ropescope.load_profile(tmp_path / f"rank{rank}.safetensors")
        assert merged.n_tokens == single.n_tokens and merged.meta["max_seq_len"] == single.meta["max_seq_len"]
        for tensor in "qkv":
            # shards batch prompts differently, so float32 forward kernels round differently (~1e-9)
            np.testing.assert_array_equal(merged.stats[tensor].count, single.stats[tensor].count)
            for name in ("mean", "max"):
                np.testing.assert_allclose(
                    getattr(merged.stats[tensor], name), getattr(single.stats[tensor], name), rtol=1e-6, atol=1e-7
                )
            np.testing.assert_allclose(merged.stats[tensor].std, single.stats[tensor].std, rtol=1e-5)
