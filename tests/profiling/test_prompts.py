"""Built-in prompt sets and user prompt files."""

import pytest

from ropescope import load_prompts
from ropescope.errors import PromptError


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
