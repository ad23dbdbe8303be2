"""Fuzz the other commands (hypothesis, bounded): random files and option values never give a
traceback, a partial output or a changed input."""

import pytest
from cli_helpers import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

blobs = st.one_of(st.binary(max_size=300), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
numbers = st.one_of(st.integers(min_value=-3, max_value=40), st.sampled_from(["0", "-1", "nan", "inf", "1e9", "x", ""]))
fractions = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["nan", "-0", "2", "0.5,", "a"]))
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def run(argv, capsys) -> tuple[int, str]:
    code, err = run_main(argv, capsys)
    assert "Traceback" not in err
    if code:
        assert [line for line in err.splitlines() if line.startswith("error:")], err
    return code, err


def assert_clean(tmp, keep):
    leftovers = sorted(p.name for p in tmp.iterdir() if p.name not in keep)
    assert not leftovers, leftovers


@settings(max_examples=25, **SETTINGS)
@given(first=blobs, second=blobs, head_layer=numbers)
def test_plot_and_merge_of_random_files(tmp_path_factory, capsys, first, second, head_layer):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "a.safetensors").write_bytes(first)
    (tmp / "b.safetensors").write_bytes(second)
    code, _ = run(
        ["plot", str(tmp / "a.safetensors"), "--out", str(tmp / "figs"), "--head-layer", str(head_layer)], capsys
    )
    assert code != 0 and not (tmp / "figs").exists()
    code, _ = run(
        ["merge", str(tmp / "a.safetensors"), str(tmp / "b.safetensors"), "--out", str(tmp / "m.safetensors")], capsys
    )
    assert code != 0
    assert_clean(tmp, {"a.safetensors", "b.safetensors"})
    assert (tmp / "a.safetensors").read_bytes() == first


@settings(max_examples=10, **SETTINGS)
@given(content=blobs, max_offset=numbers, threshold=fractions)
def test_heads_with_random_prompt_files_and_options(tmp_path_factory, capsys, content, max_offset, threshold):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "p.txt").write_bytes(content)
    argv = ["heads", "--prompts", str(tmp / "p.txt"), "--out", str(tmp / "run"), "--max-tokens", "12"]
    argv += ["--max-offset", str(max_offset), "--threshold", str(threshold), "--draws", "0", "--ablate", "1"]
    code, _ = run(argv, capsys)
    if code == 0:
        assert (tmp / "run" / "heads.csv").is_file()
    else:
        assert not (tmp / "run").exists()
    assert_clean(tmp, {"p.txt", "run"})


@settings(max_examples=10, **SETTINGS)
@given(content=blobs, p=fractions, context=numbers)
def test_prope_with_random_text_and_options(tmp_path_factory, capsys, content, p, context):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "t.txt").write_bytes(content)
    argv = ["prope", "--text", str(tmp / "t.txt"), "--p", str(p), "--context", str(context), "--variants", "p"]
    argv += ["--out", str(tmp / "run")]
    code, _ = run(argv, capsys)
    if code == 0:
        assert (tmp / "run" / "prope.csv").is_file()
        assert sorted(p.suffix for p in (tmp / "run").iterdir()) == [".csv", ".pdf", ".png"]
    else:
        assert not (tmp / "run").exists()
    assert_clean(tmp, {"t.txt", "run"})


# "" selects every entry, and the model-free F2 is written before the model fails to load
@pytest.mark.parametrize(
    "only, succeeds", [("", False), (",", False), ("F2,,F2", True), ("f2;F8", False), ("\u00e9", False)]
)
def test_figures_with_odd_id_lists(tmp_path, capsys, only, succeeds):
    code, err = run(["figures", "--only", only, "--out", str(tmp_path / "figs"), "--model", "no-such-model"], capsys)
    manifest = tmp_path / "figs" / "figures_manifest.json"
    if succeeds:
        assert code == 0 and manifest.is_file(), err
    else:
        assert code != 0 and not manifest.exists(), err
