"""No memory bomb: a config.json that asks for far more than its weights hold, or a GGUF file whose
header counts cannot fit in the file, is refused in one line naming the field before anything is
allocated (it used to be read until the machine killed the process)."""

import json
import struct

import pytest
import transformers
from cli_helpers import run_main
from tiny import COMMON, FAMILIES


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny Llama checkpoint directory with its own config and safetensors weights."""
    directory = tmp_path_factory.mktemp("ckpt")
    name, extra, _, _ = FAMILIES["llama"]
    config = getattr(transformers, name)(**COMMON, **extra)
    transformers.LlamaForCausalLM(config).save_pretrained(directory)
    return directory


@pytest.mark.parametrize(
    "field, value, said",
    [
        ("vocab_size", 10**12, "vocab_size 1,000,000,000,000"),
        ("hidden_size", 10**7, "hidden_size 10,000,000"),
        ("intermediate_size", 10**9, "intermediate_size 1,000,000,000"),
        ("num_hidden_layers", 10**6, "num_hidden_layers is 1,000,000"),
    ],
)
def test_a_config_asking_for_more_than_its_weights_is_refused_before_any_allocation(
    checkpoint, tmp_path, capsys, field, value, said
):
    crafted = tmp_path / "ckpt"
    crafted.mkdir()
    for path in checkpoint.iterdir():
        (crafted / path.name).symlink_to(path)
    (crafted / "config.json").unlink()
    config = json.loads((checkpoint / "config.json").read_text())
    (crafted / "config.json").write_text(json.dumps({**config, field: value}))
    code, err = run_main(["profile", str(crafted), "--out", str(tmp_path / "out")], capsys)
    assert code == 1 and "Traceback" not in err, err
    line = [line for line in err.splitlines() if line.startswith("error:")][0]
    assert said in line and "config.json" in line, line


def _gguf(path, tensor_count=0, kv=()):
    """A GGUF v3 header: ``kv`` is a list of (key, type, payload bytes)."""
    blob = b"GGUF" + struct.pack("<IQQ", 3, tensor_count, len(kv))
    for key, kind, payload in kv:
        blob += struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", kind) + payload
    path.write_bytes(blob + b"\0" * 64)
    return path


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda p: _gguf(p, tensor_count=10**12), "tensor_count is 1,000,000,000,000"),
        (lambda p: _gguf(p, kv=[("tokens", 9, struct.pack("<IQ", 8, 10**15))]), "array length of metadata 'tokens'"),
        (lambda p: _gguf(p, kv=[("name", 8, struct.pack("<Q", 10**14))]), "length of metadata 'name'"),
    ],
)
def test_a_gguf_header_with_impossible_counts_is_refused(tmp_path, capsys, make, said):
    path = make(tmp_path / "crafted.gguf")
    code, err = run_main(["profile", str(path), "--out", str(tmp_path / "out")], capsys)
    assert code == 1 and "Traceback" not in err, err
    line = [line for line in err.splitlines() if line.startswith("error:")][0]
    assert said in line and "crafted.gguf" in line, line
