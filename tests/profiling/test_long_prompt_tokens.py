"""A long prompt is tokenised by bounded prefixes, never whole: the kept tokens are exactly the
whole text's first ``max_tokens`` (real tokenizers, random texts in several scripts), and a 20 MB
one-line prompt cut to 16 tokens peaks within 1.5x of a short prompt's memory."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from ropescope.profiling.run import first_tokens, tokenize_prompts

PIECES = ["the ", "quick ", "brown ", "fox", "Ümlaut ", "日本語の", "文章", "def f(x):\n", "    return x\n", "123",
          ".", " ", "\n\n", "  ", "ab", "cd", "é", "🙂", "\t", "zzzz"]  # fmt: skip


def _texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 3000))) for _ in range(count)]


@pytest.fixture(scope="module")
def tokenizer(gemma_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gemma_dir)


@pytest.mark.real
@pytest.mark.parametrize("max_tokens", [1, 16, 100, 700])
def test_prefix_tokens_equal_the_whole_texts(tokenizer, max_tokens):
    for text in _texts(max_tokens, 25):
        whole = tokenizer(text, add_special_tokens=True)["input_ids"]
        tokens, longer = first_tokens(tokenizer, text, max_tokens)
        assert tokens == whole[:max_tokens] and longer == (len(whole) > max_tokens)
    ids, cut = tokenize_prompts(tokenizer, _texts(1, 5), max_tokens)
    assert len(ids) == 5 and all(len(row) <= max_tokens for row in ids)


PEAK = """
import json, resource, sys
from transformers import AutoTokenizer
from ropescope.profiling.run import tokenize_prompts
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
tokenize_prompts(tokenizer, ["warm up"], 16)
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
text = ("the quick brown fox jumps over the lazy dog " * (int(sys.argv[2]) // 44 + 1))[: int(sys.argv[2])]
ids, cut = tokenize_prompts(tokenizer, [text], 16)
print(json.dumps({"grew_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start, "len": len(ids[0])}))
"""


@pytest.mark.real
def test_a_20_mb_one_line_prompt_costs_no_more_memory_than_a_short_one(gemma_dir):
    def peak(chars: int) -> dict:
        out = subprocess.run([sys.executable, "-c", PEAK, str(gemma_dir), str(chars)], capture_output=True, text=True,
                             timeout=300, check=True)  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    short, huge = peak(200), peak(20_000_000)
    assert short["len"] == huge["len"] == 16
    # the 20 MB string itself (about 20 MB) is the input; tokenising it whole took gigabytes
    assert huge["grew_kb"] <= 1.5 * short["grew_kb"] + 3 * 20_000, (short, huge)
