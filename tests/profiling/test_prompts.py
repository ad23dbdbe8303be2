"""Built-in prompt sets and user prompt files."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ropescope import load_prompts
from ropescope.errors import PromptError
from ropescope.prompts import split_prompts


@pytest.mark.parametrize("name", ["shakespeare", "italian", "chinese", "python", "addition"])
def test_builtin_domain_sets_have_at_least_ten_prompts(name):
    prompts = load_prompts(name)
    assert len(prompts) >= 10 and all(len(p) >= 20 for p in prompts)


def test_builtin_shakespeare_has_at_least_ten_passages():
    prompts = load_prompts("shakespeare")
    assert len(prompts) >= 10
    assert any(p.startswith("To be, or not to be") for p in prompts)
    assert all(len(p) > 100 for p in prompts)


def test_one_prompt_per_line(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("first prompt\nsecond prompt\n\n", encoding="utf-8")
    assert load_prompts(str(path)) == ["first prompt", "second prompt"]


def test_blank_line_separated_blocks(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a first\nparagraph\n\nthe second\n", encoding="utf-8")
    assert load_prompts(str(path)) == ["a first\nparagraph", "the second"]


def test_jsonl_text_field(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "one"}\n\n{"text": "two", "id": 3}\n', encoding="utf-8")
    assert load_prompts(str(path)) == ["one", "two"]
    path.write_text('{"txt": "one"}\n', encoding="utf-8")
    with pytest.raises(PromptError, match="line 1 has no string field 'text'"):
        load_prompts(str(path))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "holds no prompts"),
        (b"\n \n", "holds no prompts"),
        (b"\xff\xfe\xfa", "not UTF-8"),
        (b"a\x00b", "binary"),
    ],
)
def test_bad_prompt_files(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(PromptError, match=message):
        load_prompts(str(path))


def test_unknown_set_or_missing_file(tmp_path):
    with pytest.raises(PromptError, match="neither a built-in set"):
        load_prompts(str(tmp_path / "nope.txt"))
    with pytest.raises(PromptError, match="is a directory"):
        load_prompts(str(tmp_path))


@pytest.mark.parametrize(
    "raw",
    [
        "\ufefffirst prompt\nsecond prompt\n".encode(),
        "\ufefffirst prompt\nsecond prompt\n".encode("utf-16"),
        "\ufefffirst prompt\nsecond prompt\n".encode("utf-16-be"),
    ],
    ids=["utf-8 with BOM", "utf-16 LE with BOM", "utf-16 BE with BOM"],
)
def test_prompt_files_in_the_encodings_users_have(tmp_path, raw):
    path = tmp_path / "p.txt"
    path.write_bytes(raw)
    assert load_prompts(str(path)) == ["first prompt", "second prompt"]


def test_undecodable_line_is_named_and_devices_and_uppercase_suffixes(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"fine\nalso fine\nbroken \xe9 here\n")
    with pytest.raises(PromptError, match=r"is not UTF-8 text \(line 3\)"):
        load_prompts(str(path))
    with pytest.raises(PromptError, match="is not a regular file"):
        load_prompts("/dev/zero")
    upper = tmp_path / "P.JSONL"
    upper.write_text('{"text": "one"}\n{"text": "two"}\n', encoding="utf-8")
    assert load_prompts(str(upper)) == ["one", "two"]


# -- fuzz: what users' prompt files hold ------------------------------------------------------------
_ENCODINGS = {  # name -> (bytes of a text, whether ropescope reads it as that text)
    "utf-8": (lambda t: t.encode("utf-8"), True),
    "utf-8 with BOM": (lambda t: t.encode("utf-8-sig"), True),
    "utf-16 with BOM": (lambda t: t.encode("utf-16"), True),
    "utf-16-be with BOM": (lambda t: b"\xfe\xff" + t.encode("utf-16-be"), True),
    "utf-32 with BOM": (lambda t: t.encode("utf-32"), True),
    "utf-16 without BOM": (lambda t: t.encode("utf-16-le"), False),
    "latin-1": (lambda t: t.encode("latin-1", "replace"), False),
}
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=400)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.one_of(
        st.tuples(st.sampled_from(sorted(_ENCODINGS)), _text),
        st.tuples(st.just("bytes"), st.binary(max_size=400)),
        st.tuples(st.just("repeated"), st.tuples(_text, st.integers(1, 3000))),
    ),
    suffix=st.sampled_from([".txt", ".TXT", ".jsonl", ".md", ""]),
)
def test_fuzzed_prompt_files_are_read_exactly_or_refused_in_one_line(tmp_path_factory, content, suffix):
    """Random text in every encoding users have, random bytes and large repeated files: the prompts
    come back exactly (for a readable encoding and a plain-text suffix), or a one-line PromptError
    names the file; never another exception."""
    kind, value = content
    if kind == "bytes":
        raw, text, readable = value, None, False
    elif kind == "repeated":
        text = value[0] * value[1]
        raw, readable = text.encode("utf-8"), True
    else:
        encode, readable = _ENCODINGS[kind]
        raw, text = encode(value), value
    path = tmp_path_factory.mktemp("prompts") / f"p{suffix}"
    path.write_bytes(raw)
    try:
        prompts = load_prompts(str(path))
    except PromptError as exc:
        assert "\n" not in str(exc) and path.name in str(exc)
        if readable and suffix.lower() != ".jsonl":
            assert not split_prompts(text), f"readable {kind} text was refused: {exc}"
        return
    assert prompts and all(isinstance(p, str) and p.strip() for p in prompts)
    if readable and suffix.lower() != ".jsonl":
        assert prompts == split_prompts(text.replace("\r\n", "\n"))
