"""A content fingerprint of a tokenizer: what turns text into the token ids a run measures.

A resumed run must tokenise its prompts as the interrupted one did; the checkpoint's tokenizer files
(or ``--tokenizer``) may change between the two while the weights do not. The fingerprint is read
from the tokenizer object itself, not from file names: a fast tokenizer's whole serialised state
(vocabulary, merges, normaliser, pre-tokeniser, post-processor: ``backend_tokenizer.to_str()``), or
for another tokenizer its vocabulary; and the special tokens and the settings that add them.
"""

from __future__ import annotations

import hashlib
import json


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 (16 hex digits) of what decides ``tokenizer``'s token ids (module docstring)."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        digest.update(backend.to_str().encode())
    elif hasattr(tokenizer, "get_vocab"):
        digest.update(json.dumps(tokenizer.get_vocab(), sort_keys=True, default=str).encode())
    settings = {
        name: getattr(tokenizer, name, None)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id", "add_bos_token", "add_eos_token", "padding_side")
    }
    settings["special"] = getattr(tokenizer, "special_tokens_map", None)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
