"""Bundled models read their tokenizer straight from tokenizer.json (fast path): the same token ids,
special tokens and decoding as the family's own tokenizer class."""

import pytest
from transformers import AutoTokenizer

import ropescope
from ropescope.model import checkpoint_dir
from ropescope.model.loading import _converted_tokenizer

TEXTS = [
    *(p for s in ("shakespeare", "italian", "chinese", "python", "addition") for p in ropescope.load_prompts(s)),
    ropescope.load_text("heldout"),
    " ",
    "\n\n  x",
    "<bos>hi",
    "émoji 🎉 \t tab",
    "<|im_start|>user",
]


@pytest.mark.parametrize("name", ["gemma-3-270m", "smollm2-135m"])
def test_fast_path_tokenizer_equals_the_family_class(name):
    directory = checkpoint_dir(name)
    fast, family = _converted_tokenizer(directory), AutoTokenizer.from_pretrained(directory)
    assert fast is not None and fast.name_or_path == str(directory)
    for special in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        assert getattr(fast, special) == getattr(family, special), special
    for text in TEXTS:
        for add in (True, False):
            assert fast(text, add_special_tokens=add)["input_ids"] == family(text, add_special_tokens=add)["input_ids"]
        ids = family(text)["input_ids"]
        assert fast.decode(ids) == family.decode(ids)
        assert fast.convert_ids_to_tokens(ids) == family.convert_ids_to_tokens(ids)


def test_other_checkpoints_keep_their_own_class(tmp_path):
    assert _converted_tokenizer(tmp_path) is None
