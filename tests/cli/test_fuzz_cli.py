"""Fuzz the command line (hypothesis, bounded): random prompt files and option values never give a
traceback or a partial output directory."""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ropescope.cli import main

contents = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=300),
    st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40), max_size=6).map("\n".join),
)
numbers = st.one_of(st.integers(min_value=-5, max_value=80), st.sampled_from(["0", "-1", "nan", "1e9", "abc", ""]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=contents, max_tokens=numbers, batch_size=numbers, jsonl=st.booleans())
def test_profile_never_tracebacks_or_leaves_partial_output(
    tmp_path_factory, capsys, content, max_tokens, batch_size, jsonl
):
    tmp = tmp_path_factory.mktemp("fuzz")
    prompts = tmp / ("p.jsonl" if jsonl else "p.txt")
    prompts.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    out = tmp / "run"
    argv = [
        "profile",
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        "--max-tokens",
        str(max_tokens),
        "--batch-size",
        str(batch_size),
        "--checkpoint-every",
        "0",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
        raise SystemExit(0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    leftovers = [p.name for p in tmp.iterdir() if p.name not in {prompts.name, "run"}]
    assert not leftovers, leftovers
    if exit_info.value.code in (0, None):
        assert (out / "profile.safetensors").is_file() and (out / "summary.txt").is_file()
    else:
        assert not out.exists()
        assert [line for line in err.splitlines() if line.startswith("error:") or line.startswith("Usage")]
    os.environ.pop("RANK", None)
