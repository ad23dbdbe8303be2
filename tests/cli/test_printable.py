"""Text from files, names and the environment is printed as text: no terminal escape sequence, carriage
return or bidirectional override reaches the terminal, and no credential is printed."""

import logging

import pytest
from cli_helpers import run_main
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.cli.common import printable

HOSTILE = "model\x1b[2K\r\u202eerror: none; success: wrote everything\x07"


def test_printable_escapes_control_characters_and_hides_credentials():
    assert printable("a\x1b[31mb\rc\u202ed\ttab\nline") == "a\\x1b[31mb\\rc\\u202ed\ttab\nline"
    assert (
        printable("see https://bob:pw@mirror.example/x and hf_" + "A" * 30)
        == "see https://***@mirror.example/x and hf_***"
    )
    assert printable("gemma-3-270m · 日本語 é") == "gemma-3-270m · 日本語 é"  # ordinary text is untouched
    # a mirror's endpoint with its secret in the query string (HF_ENDPOINT=https://m.example/?token=...)
    assert (
        printable("cannot reach https://m.example/hub?token=SECRET&a=1 now")
        == "cannot reach https://m.example/hub?*** now"
    )
    assert printable("what? a question mark in prose stays?") == "what? a question mark in prose stays?"


def test_a_hostile_model_name_cannot_rewrite_the_terminal(capsys, tmp_path):
    code, err = run_main(["profile", f"/{tmp_path}/{HOSTILE}", "--out", str(tmp_path / "o")], capsys)
    assert code == 1
    assert "\x1b" not in err and "\r" not in err and "\u202e" not in err and "\x07" not in err
    assert "\\x1b[2K\\r\\u202eerror: none" in err


def test_names_read_from_a_profile_are_printed_escaped(tmp_path, capfd):
    from ropescope.cli import main

    model = tiny_model("gemma3")
    for name, texts in (("a", TEXTS[:2]), ("b", TEXTS[2:4])):
        ropescope.profile(model, CharTokenizer(), texts, model_id=HOSTILE).save(tmp_path / f"{name}.safetensors")
    main(["compare", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "--out", str(tmp_path / "c")])
    out = capfd.readouterr()
    printed = out.out + out.err
    assert "\x1b" not in printed and "\r" not in printed and "\\x1b[2K" in printed
    assert "Glyph" not in printed  # the figure titles hold the escaped name too


def test_library_log_lines_are_printable(capsys):
    from ropescope.cli.app import _redact_library_logs

    _redact_library_logs()
    logging.getLogger("huggingface_hub.file_download").warning("GET https://u:secret@h/x \x1b[2K")
    err = capsys.readouterr().err
    assert "secret" not in err and "\x1b" not in err
    pytest.importorskip("huggingface_hub")


def test_a_250_character_checkpoint_path_names_its_files_within_limits(tmp_path):
    """Figure and output names use the path's last component, cut and cleaned (was: the whole path
    in a file name, refused by the file system only after profiling)."""
    from ropescope.files import name_part

    long_path = "/".join(["d" * 40] * 6) + "/" + "c" * 120
    assert name_part(long_path) == "c" * 80
    assert name_part("org/model\x1b[2K:v1.gguf") == "model__2K_v1"
    assert name_part("...") == "model"
