"""Saved profiles whose checksum passes but whose content is impossible are refused on load; what is
written can always be read back (millions of prompts); a foreign file is judged by its header alone."""

from __future__ import annotations

import copy
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope import files
from ropescope.errors import ProfileFileError
from ropescope.plots.usage import layer_usage_figure
from ropescope.profiling import result as profile_module
from ropescope.profiling.summary import summary_text


@pytest.fixture(scope="module")
def prof():
    return ropescope.profile(tiny_model("gemma3"), CharTokenizer(), TEXTS, batch_size=2)


def save_crafted(meta, arrays: dict[str, np.ndarray], path) -> None:
    """Write ``meta`` and ``arrays`` like Profile.save does, with a valid checksum (a crafted file)."""
    files.write_checked(path, arrays, profile_module.FORMAT, profile_module.FORMAT_VERSION, json.dumps(meta))


def parts(prof):
    arrays = {}
    for tensor in profile_module.TENSORS:
        arrays.update(prof.stats[tensor].to_arrays(tensor))
    meta = copy.deepcopy(prof.meta)
    arrays["prompt_hashes"] = np.array([int(h, 16) for h in meta.pop("prompt_hashes")], dtype=np.uint64)
    return meta, arrays


def set_field(key, value):
    def edit(meta, arrays):
        meta[key] = value

    return edit


def set_array(name, change):
    def edit(meta, arrays):
        arrays[name] = change(arrays[name].copy())

    return edit


def _put(value, index=0):
    def change(array):
        array.flat[index] = value
        return array

    return change


CRAFTED = {
    "metadata is a list": (lambda meta, arrays: meta.clear() or meta.update(_list=True), "metadata field"),
    "zero layers": (set_field("n_layers", 0), "n_layers must be a positive integer"),
    "layer count as text": (set_field("n_layers", "3"), "n_layers must be a positive integer"),
    "negative token count": (set_field("n_tokens", -1), "n_tokens must be a non-negative integer"),
    "boolean head count": (set_field("n_heads", True), "n_heads must be a positive integer"),
    "include_bos as text": (set_field("include_bos", "no"), "include_bos must be true or false"),
    "model name not a string": (set_field("model_id", {"a": 1}), "model_id must be a string"),
    "geometry missing": (set_field("geometry", None), "geometry is malformed"),
    "geometry with no layers": (
        lambda meta, arrays: meta["geometry"].update(layers=[]),
        "geometry has 0 layers",
    ),
    "infinite frequency": (
        lambda meta, arrays: meta["geometry"]["layers"][1]["inv_freq"].__setitem__(0, float("inf")),
        "non-finite or negative frequencies",
    ),
    "NaN mean": (set_array("q.mean", _put(np.nan, 5)), "NaN or infinite"),
    "negative mean": (set_array("k.mean", _put(-1.0, 3)), "negative mean norm"),
    "negative variance": (set_array("v.m2", _put(-5.0, 2)), "negative mean norm or variance"),
    "maximum below mean": (set_array("q.max", _put(0.0, 0)), "maximum norm below the mean"),
    "fractional count": (set_array("q.count", _put(2.5, 1)), "not integers in 0..2^53"),
    "huge count": (set_array("v.count", _put(1e300, 1)), "not integers in 0..2^53"),
    "count disagrees with n_tokens": (set_array("q.count", lambda a: a + 1), "is not n_tokens"),
    "wrong shape": (set_array("k.mean", lambda a: a[:, :1]), "shape"),
    "hash array of floats": (set_array("prompt_hashes", lambda a: a.astype(np.float64)), "prompt_hashes"),
    "one hash short": (set_array("prompt_hashes", lambda a: a[:-1]), "prompt hashes for 5 prompts"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_checksum_valid_but_impossible_profiles_are_refused(prof, tmp_path, case):
    edit, fragment = CRAFTED[case]
    meta, arrays = parts(prof)
    edit(meta, arrays)
    if case == "metadata is a list":
        meta = [1, 2, 3]
    path = tmp_path / "crafted.safetensors"
    save_crafted(meta, arrays, path)
    with pytest.raises(ProfileFileError) as info:
        ropescope.load_profile(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert fragment in message or (case == "metadata is a list" and "not an object" in message), message


def test_the_unmodified_parts_load(prof, tmp_path):
    meta, arrays = parts(prof)
    save_crafted(meta, arrays, tmp_path / "same.safetensors")
    again = ropescope.load_profile(tmp_path / "same.safetensors")
    assert again.meta == json.loads(json.dumps(prof.meta))


def test_millions_of_prompts_save_and_load(prof, tmp_path):
    """The prompt hashes live in an array, so the header stays small however many prompts there are
    (a JSON list of 6 million hashes would pass the safetensors reader's 100 MB header limit)."""
    big = profile_module.Profile(copy.deepcopy(prof.meta), prof.stats)
    n = 2_000_000
    big.meta["prompt_hashes"] = [f"{i * 2654435761 % 2**64:016x}" for i in range(n)]
    big.meta["n_prompts"] = n
    path = big.save(tmp_path / "big.safetensors")
    with open(path, "rb") as handle:
        header_bytes = int.from_bytes(handle.read(8), "little")
    assert header_bytes < 100_000  # the metadata, not the hashes
    loaded = ropescope.load_profile(path)
    assert loaded.meta["n_prompts"] == n and loaded.meta["prompt_hashes"][12345] == big.meta["prompt_hashes"][12345]


def test_a_header_the_reader_would_refuse_is_never_written(prof, tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_HEADER_BYTES", 1000)
    with pytest.raises(ProfileFileError, match="more than the 0 MB a safetensors header may hold"):
        prof.save(tmp_path / "p.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_merged_names_stay_short(prof):
    other = profile_module.Profile(copy.deepcopy(prof.meta), prof.stats)
    merged = prof
    for i in range(60):
        other.meta.update(prompt_hashes=[f"{i:04x}{j:012x}" for j in range(5)], prompt_set=f"shard-{i:03d}")
        merged = merged.merge(other)
    name = merged.meta["prompt_set"]
    assert len(name) <= profile_module.MAX_PROMPT_SET_NAME and name.startswith("5")  # "5x merged prompt sets+..."
    head, *rest = name.split("+")
    assert int(head.split()[0]) + len(rest) == 61
    assert merged.meta["n_prompts"] == 5 * 61


def test_a_large_foreign_file_is_judged_by_its_header(tmp_path, monkeypatch):
    big = tmp_path / "weights.safetensors"
    save_file({"w": np.zeros((4096, 1024), dtype=np.float32)}, str(big), metadata={"format": "pt"})
    loaded = []
    monkeypatch.setattr(files, "load_file", lambda *a, **k: loaded.append(a) or {})
    with pytest.raises(ProfileFileError, match="is not a ropescope profile"):
        ropescope.load_profile(big)
    assert loaded == []  # the 16 MB of tensor data were never read
    huge_header = tmp_path / "video.safetensors"
    huge_header.write_bytes((2**62).to_bytes(8, "little") + b"\0" * 64)
    with pytest.raises(ProfileFileError, match="not a readable ropescope profile"):
        ropescope.load_profile(huge_header)


# -- fuzz: random mutations that keep a valid checksum ------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
META_FIELDS = [
    "n_layers", "n_heads", "n_kv_heads", "n_chunks", "n_tokens", "n_prompts", "max_seq_len", "include_bos",
    "model_id", "prompt_set", "geometry", "model_fingerprint", "config", "nonfinite_tokens",
]  # fmt: skip
mutations = st.one_of(
    st.tuples(st.just("field"), st.text(min_size=1, max_size=8), json_values),  # an unknown extra field
    st.tuples(st.just("field"), st.sampled_from(META_FIELDS), json_values),
    st.tuples(
        st.just("array"),
        st.sampled_from([f"{t}.{n}" for t in "qkv" for n in ("count", "mean", "m2", "max", "nonfinite")]),
        st.tuples(st.integers(0, 10_000), st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 0.5, 1e300, 7.0])),
    ),
    st.tuples(st.just("drop"), st.sampled_from(["q.mean", "k.count", "prompt_hashes", "v.max"]), st.none()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(mutations, min_size=1, max_size=3))
def test_fuzzed_checksum_valid_profiles_load_only_when_usable(prof, tmp_path_factory, changes):
    """Every mutated file either is refused with one ProfileFileError line, or loads into a profile
    whose summary, frame and merge work without a traceback and whose statistics are finite where
    tokens were counted."""
    meta, arrays = parts(prof)
    for kind, name, value in changes:
        if kind == "field":
            meta[name] = value
        elif kind == "array" and name in arrays:  # (an earlier change may have dropped it)
            index, number = value
            array = arrays[name].copy()
            array.flat[index % array.size] = number
            arrays[name] = array
        elif kind == "drop":
            arrays.pop(name, None)
    path = tmp_path_factory.mktemp("fuzz") / "p.safetensors"
    save_crafted(meta, arrays, path)
    try:
        loaded = ropescope.load_profile(path)
    except ProfileFileError as exc:
        assert "\n" not in str(exc)
        return
    summary_text(loaded)
    loaded.frame()
    plt.close(layer_usage_figure(loaded))  # what `ropescope plot` draws first
    for tensor in profile_module.TENSORS:
        seen = loaded.stats[tensor].count.numpy() > 0
        assert np.isfinite(loaded.stats[tensor].mean.numpy()[seen]).all()
    assert loaded.meta["n_layers"] == len(loaded.geometry.layers) > 0
