"""Profile views, saving, loading, merging, and refusing damaged files."""

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_main
from safetensors.numpy import save_file
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.errors import ProfileFileError
from ropescope.profiling.result import Profile, load_profile


@pytest.fixture(scope="module")
def model():
    return tiny_model("gemma3")


@pytest.fixture(scope="module")
def prof(model):
    return ropescope.profile(model, CharTokenizer(), TEXTS, batch_size=2)


def test_frame_is_tidy_and_matches_the_arrays(prof):
    frame = prof.frame()
    assert list(frame.columns) == [
        "tensor",
        "layer",
        "head",
        "chunk",
        "frequency",
        "wavelength",
        "mean_norm",
        "std_norm",
        "max_norm",
        "n_tokens",
    ]
    assert len(frame) == 3 * 8 * (4 + 2 + 2)  # layers * chunks * (q heads + k heads + v heads)
    row = frame[(frame.tensor == "k") & (frame.layer == 1) & (frame["head"] == 1) & (frame.chunk == 5)].iloc[0]
    assert row.mean_norm == prof.stats["k"].mean[1, 1, 5].item()
    assert row.frequency == prof.geometry.frequencies(1)[5]
    assert row.wavelength == pytest.approx(2 * np.pi / row.frequency)
    assert row.n_tokens == prof.n_tokens
    # layer usage is the mean over heads of the per-head means (all heads see the same tokens)
    np.testing.assert_allclose(prof.layer_usage("q")[2], prof.head_usage(2, "q").mean(axis=0))


def test_metadata_records_model_geometry_and_prompts(prof):
    meta = prof.meta
    assert meta["n_prompts"] == len(TEXTS) and meta["include_bos"] is False
    assert [lr["theta"] for lr in meta["geometry"]["layers"]] == [10_000.0, 1_000_000.0, 10_000.0]
    assert meta["max_seq_len"] == max(len(t) for t in TEXTS) + 1
    assert set(meta["versions"]) == {"ropescope", "torch", "transformers", "python"}
    json.dumps(meta)  # JSON-safe


def test_save_and_load_round_trip(prof, tmp_path):
    path = prof.save(tmp_path / "p.safetensors")
    loaded = ropescope.load_profile(path)
    assert loaded.meta == prof.meta
    for tensor in "qkv":
        for name in ("count", "mean", "m2", "max"):
            np.testing.assert_array_equal(getattr(loaded.stats[tensor], name), getattr(prof.stats[tensor], name))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_saving_twice_gives_identical_bytes(prof, tmp_path):
    a = prof.save(tmp_path / "a.safetensors").read_bytes()
    b = prof.save(tmp_path / "b.safetensors").read_bytes()
    assert a == b


def test_merge_equals_profiling_the_union(model):
    first = ropescope.profile(model, CharTokenizer(), TEXTS[:2])
    second = ropescope.profile(model, CharTokenizer(), TEXTS[2:])
    union = ropescope.profile(model, CharTokenizer(), TEXTS)
    merged = first.merge(second)
    assert merged.n_tokens == union.n_tokens
    assert merged.meta["prompt_set_hash"] == union.meta["prompt_set_hash"]
    for tensor in "qkv":
        np.testing.assert_array_equal(merged.stats[tensor].count, union.stats[tensor].count)
        # batch sums are float32 (merged in float64): other batchings differ at float32 rounding
        np.testing.assert_allclose(merged.stats[tensor].max, union.stats[tensor].max, rtol=1e-6)
        np.testing.assert_allclose(merged.stats[tensor].mean, union.stats[tensor].mean, rtol=1e-6)
        np.testing.assert_allclose(merged.stats[tensor].std, union.stats[tensor].std, rtol=1e-5)


def test_merge_refuses_another_model(prof):
    other = ropescope.profile(tiny_model("llama"), CharTokenizer(), TEXTS)
    with pytest.raises(ProfileFileError, match="different models"):
        prof.merge(other)


def test_merge_of_two_precisions_names_the_dtypes():
    """The same model in float32 and in bfloat16: not 'different models m vs m', but the dtypes."""
    first = ropescope.profile(tiny_model("llama"), CharTokenizer(), TEXTS[:2])
    second = ropescope.profile(tiny_model("llama", dtype=torch.bfloat16), CharTokenizer(), TEXTS[2:])
    with pytest.raises(ProfileFileError, match="different dtypes: float32 vs bfloat16"):
        first.merge(second)


def test_load_refuses_missing_truncated_tampered_and_foreign_files(prof, tmp_path):
    with pytest.raises(ProfileFileError, match="no saved profile"):
        ropescope.load_profile(tmp_path / "missing.safetensors")
    path = prof.save(tmp_path / "p.safetensors")
    data = path.read_bytes()

    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ProfileFileError, match="not a readable"):
        ropescope.load_profile(tmp_path / "cut.safetensors")

    tampered = bytearray(data)
    tampered[-3] ^= 0xFF  # flip bits inside the last array
    (tmp_path / "tampered.safetensors").write_bytes(bytes(tampered))
    with pytest.raises(ProfileFileError, match="checksum"):
        ropescope.load_profile(tmp_path / "tampered.safetensors")

    save_file({"x": np.zeros(3)}, str(tmp_path / "foreign.safetensors"), metadata={"format": "other"})
    with pytest.raises(ProfileFileError, match="not a ropescope profile"):
        ropescope.load_profile(tmp_path / "foreign.safetensors")

    (tmp_path / "pickle.safetensors").write_bytes(b"\x80\x04\x95" + b"cos\nsystem\n" * 4)
    with pytest.raises(ProfileFileError):
        ropescope.load_profile(tmp_path / "pickle.safetensors")


def test_merging_a_profile_with_itself_is_refused(model):
    prof = ropescope.profile(model, CharTokenizer(), TEXTS[:2])
    with pytest.raises(ProfileFileError, match=r"2 prompt\(s\) are in both profiles"):
        prof.merge(prof)


def _with_meta(prof, edit):
    meta = json.loads(json.dumps(prof.meta))
    edit(meta)
    return Profile(meta, prof.stats, prof.by_position)


def _set_layer0(field, value):
    return lambda meta: meta["geometry"]["layers"][0].__setitem__(field, value)


WRONG_TYPES = [
    ("theta", _set_layer0("theta", "x")),
    ("window", _set_layer0("window", "x")),
    ("window", _set_layer0("window", 2.5)),
    ("rope", _set_layer0("rope", "yes")),
    ("inv_freq", _set_layer0("inv_freq", ["a"])),
    ("head_dim", lambda meta: meta["geometry"].__setitem__("head_dim", "16")),
    ("layout", lambda meta: meta["geometry"].__setitem__("layout", 3)),
    ("versions", lambda meta: meta.__setitem__("versions", "x")),
    ("dtype", lambda meta: meta.__setitem__("dtype", 3)),
    ("max_tokens", lambda meta: meta.__setitem__("max_tokens", "many")),
    ("config", lambda meta: meta.__setitem__("config", [])),
]


@pytest.mark.parametrize("field, edit", WRONG_TYPES, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG_TYPES)])
def test_a_checksum_valid_profile_with_a_field_of_the_wrong_type_is_refused(prof, tmp_path, capsys, field, edit):
    """The checksum proves only that some writer wrote the file: every field is checked for its type,
    and `compare`, `plot` and `report` refuse it in one line naming the field."""
    path = _with_meta(prof, edit).save(tmp_path / "bad.safetensors")
    with pytest.raises(ProfileFileError, match=field):
        load_profile(path)
    good = prof.save(tmp_path / "good.safetensors")
    for argv in (["compare", str(good), str(path), "--out", str(tmp_path / "c")], ["report", str(path)]):
        code, err = run_main(argv, capsys)
        assert code != 0 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert field in err and "unexpected" not in err


def test_merge_refuses_other_weights_of_the_same_architecture_and_other_tensors(model):
    """Same config, other weights: refused by the weight fingerprint. A q/k/v profile and a q/k-only
    one (a head scan's): refused, the merged file would claim values over tokens never counted."""
    first = ropescope.profile(model, CharTokenizer(), TEXTS[:2])
    other = tiny_model("gemma3")
    with torch.no_grad():
        other.model.layers[0].self_attn.q_proj.weight.mul_(1.5)
    second = ropescope.profile(other, CharTokenizer(), TEXTS[2:4])
    assert first.meta["model_fingerprint"] == second.meta["model_fingerprint"]
    with pytest.raises(ProfileFileError, match="different weights"):
        first.merge(second)
    keys_only = ropescope.profile(model, CharTokenizer(), TEXTS[2:4], tensors=("q", "k"))
    assert keys_only.tensors == ("q", "k")
    with pytest.raises(ProfileFileError, match="q/k/v with one of q/k"):
        first.merge(keys_only)


def test_compare_shows_what_was_not_measured_as_missing_not_zero(model):
    """A tensor one profile never measured is left out of the comparison; a layer that counted no
    token is NaN in the usage map, never a measured 0."""
    full = ropescope.profile(model, CharTokenizer(), TEXTS[:2])
    keys_only = ropescope.profile(model, CharTokenizer(), TEXTS[2:4], tensors=("q", "k"))
    assert np.isnan(keys_only.layer_usage("v")).all()
    result = full.compare(keys_only)
    assert sorted(result.maps) == ["k", "q"]
