"""Files from other people are untrusted: text from a run directory (profile header, CSV cells and
column names, JSON values, tokens) reaches the report as text, never as markup or script, and a
damaged or crafted file is refused in one line naming the file and the field."""

import json
import re
import shutil

import pandas as pd
import pytest
from browser import open_page
from cli_helpers import run_main
from tiny import TEXTS, DecodingCharTokenizer, tiny_model

from ropescope.heads.causal import causal_test
from ropescope.heads.scan import scan_heads
from ropescope.heads.views import prompt_attention
from ropescope.profiling.result import Profile, load_profile
from ropescope.report import read_run, write_report

# each payload sets window.__ran (or breaks the page) if it ever becomes markup or script
PAYLOADS = [
    '<img src=x onerror="window.__ran=1">',
    "</script><script>window.__ran=2</script>",
    "<!--",
    "<script>",
    '"><svg onload=window.__ran=3>',
    "${title}",
]
HOSTILE = " ".join(PAYLOADS)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A complete head-scan run directory of a tiny Gemma 3, as `ropescope heads` writes it."""
    folder = tmp_path_factory.mktemp("run")
    model, tokenizer = tiny_model("gemma3"), DecodingCharTokenizer()
    report = scan_heads(model, tokenizer, TEXTS[:3], threshold=0.3)
    report.profile.save(folder / "profile.safetensors")
    report.table.to_csv(folder / "heads.csv", index=False)
    (folder / "agreement.json").write_text(json.dumps({**report.agreement(), "threshold": 0.3}))
    chosen = [(0, 0, 1)]
    causal_test(model, tokenizer, TEXTS[:2], chosen, n_chunks=2, draws=1).to_csv(folder / "causal.csv", index=False)
    (folder / "attention.json").write_text(json.dumps(prompt_attention(model, tokenizer, TEXTS[0], max_tokens=10)))
    return folder


def _copy(run_dir, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


def _poison(folder):
    """Every text a file may carry replaced by the payloads."""
    profile = load_profile(folder)
    meta = {**profile.meta, "model_id": HOSTILE, "prompt_set": HOSTILE, "dtype": HOSTILE}
    meta["versions"] = {**meta.get("versions", {}), HOSTILE: HOSTILE}
    Profile(meta, profile.stats, profile.by_position).save(folder / "profile.safetensors")
    heads = pd.read_csv(folder / "heads.csv")
    heads["target"] = HOSTILE
    heads["attr_top_chunks"] = HOSTILE
    heads[HOSTILE] = HOSTILE  # a column the schema does not know is shown as text
    heads.to_csv(folder / "heads.csv", index=False)
    causal = pd.read_csv(folder / "causal.csv")
    causal["condition"] = HOSTILE
    causal.to_csv(folder / "causal.csv", index=False)
    attention = json.loads((folder / "attention.json").read_text())
    attention["tokens"] = [HOSTILE] + [p for p in PAYLOADS * 3][: len(attention["tokens"]) - 1]
    (folder / "attention.json").write_text(json.dumps(attention))


def test_a_report_from_hostile_files_runs_nothing_and_still_works(run_dir, tmp_path):
    folder = _copy(run_dir, tmp_path)
    _poison(folder)
    page_path = write_report(read_run(folder), tmp_path / "report.html")
    text = page_path.read_text(encoding="utf-8")
    policy = re.search(r'Content-Security-Policy"\s+content="([^"]+)"', text).group(1)
    assert "unsafe-inline" not in policy and "script-src 'sha256-" in policy and "default-src 'none'" in policy
    assert text.count("<script") == 2  # the data block and the one hashed script
    with open_page(page_path) as (page, log):
        assert page.evaluate("window.__ran") is None
        assert page.locator("img, svg[onload], iframe").count() == 0
        assert HOSTILE in page.inner_text("header h1")  # shown as the text it is
        assert HOSTILE in page.inner_text("header .meta")
        assert page.locator("#head-table tbody tr").count() == 3 * 4
        assert HOSTILE in page.eval_on_selector_all("#head-table th", "ths => ths.map(t => t.textContent)")
        page.click("#head-table tbody tr")
        page.hover("#attention-map", position={"x": 109, "y": 40})  # key column 0: the hostile token
        assert "</script><script>window.__ran=2</script>" in page.inner_text("#tooltip")  # tokens shown JSON-quoted
        page.hover("#usage-map", position={"x": 100, "y": 60})
        assert "mean chunk norm" in page.inner_text("#tooltip")
        page.fill("#head-filter", "<img")
        assert page.locator("#head-table tbody tr").count() == 3 * 4  # every row holds the payload as text
        assert page.evaluate("window.__ran") is None
        assert not log.page_errors, log.page_errors
        assert [e for e in log.console_errors if "Content Security Policy" in e] == []
        assert all(url.startswith("file://") for url in log.requests), log.requests


CORRUPTIONS = [
    ("heads.csv", lambda f: f.assign(layer="x"), "'layer'"),
    ("heads.csv", lambda f: f.assign(layer=99), "'layer'"),
    ("heads.csv", lambda f: f.assign(offset_1="<b>"), "'offset_1'"),
    ("heads.csv", lambda f: f.assign(sink=2.5), "'sink'"),
    ("heads.csv", lambda f: f.assign(**{"class": "evil"}), "'class'"),
    ("heads.csv", lambda f: f.drop(columns=["class"]), "'class'"),
    ("heads.csv", lambda f: f.drop(columns=["offset_0"]), "offset_0"),
    ("heads.csv", lambda f: pd.concat([f, f.head(1)]), "twice"),
    ("causal.csv", lambda f: f.assign(score="x"), "'score'"),
    ("causal.csv", lambda f: f.drop(columns=["condition"]), "'condition'"),
    ("causal.csv", lambda f: f.assign(head=-1), "'head'"),
]
JSON_CORRUPTIONS = [
    ("agreement.json", lambda o: [], "not an object"),
    ("agreement.json", lambda o: {**o, "spearman": "x"}, "'spearman'"),
    ("agreement.json", lambda o: {k: v for k, v in o.items() if k != "n_positional"}, "'n_positional'"),
    ("agreement.json", lambda o: {**o, "threshold": [[1]]}, "'threshold'"),
    ("attention.json", lambda o: {**o, "tokens": 3}, "'tokens'"),
    ("attention.json", lambda o: {**o, "heads": {"0,0": [["a"]]}}, "heads.0,0"),
    ("attention.json", lambda o: {**o, "heads": {"7,0": o["heads"]["0,0"]}}, "heads.7,0"),
]


@pytest.mark.parametrize("name, corrupt, field", CORRUPTIONS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CORRUPTIONS)])
def test_a_damaged_table_is_refused_naming_file_and_field(run_dir, tmp_path, capsys, name, corrupt, field):
    folder = _copy(run_dir, tmp_path)
    corrupt(pd.read_csv(folder / name)).to_csv(folder / name, index=False)
    code, err = run_main(["report", str(folder), "--out", str(tmp_path / "r.html")], capsys)
    assert code != 0 and "Traceback" not in err and "unexpected" not in err
    assert err.strip().startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert name in err and field in err, err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    "name, corrupt, field", JSON_CORRUPTIONS, ids=[f"{c[0]}-{i}" for i, c in enumerate(JSON_CORRUPTIONS)]
)
def test_a_damaged_json_file_is_refused_naming_file_and_field(run_dir, tmp_path, capsys, name, corrupt, field):
    folder = _copy(run_dir, tmp_path)
    (folder / name).write_text(json.dumps(corrupt(json.loads((folder / name).read_text()))))
    code, err = run_main(["report", str(folder), "--out", str(tmp_path / "r.html")], capsys)
    assert code != 0 and "Traceback" not in err and "unexpected" not in err
    assert err.strip().startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert name in err and field in err, err
