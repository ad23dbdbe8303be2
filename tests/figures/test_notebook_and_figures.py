"""The notebook runs top to bottom; the figures command writes what it promises."""

from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli, run_here

REPO = Path(__file__).resolve().parents[2]


TUTORIAL = REPO / "notebooks" / "tutorial.ipynb"
# what the tutorial must teach (issue 13, point 6): the call that shows each step
COVERS = {
    "load a model": "ropescope.load_model(",
    "profile": "ropescope.profile(",
    "the tidy frame and its columns": "prof.frame()",
    "usage maps": "layer_usage_figure(prof",
    "heads": "ropescope.scan_heads(",
    "the causal test": "ropescope.causal_test(",
    "capture with a custom reducer": "ropescope.capture(lm, on_qk=",
    "chunk ablation": "ropescope.ablate_chunks(",
    "p-RoPE": "ropescope.p_rope(",
    "save": ".save(",
    "load a saved profile": "ropescope.load_profile(",
    "merge": ".merge(",
    "the TransformerLens bridge": "TransformerBridge.boot_transformers(",
    "the report": "write_report(",
}


def _code(notebook) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def test_tutorial_is_committed_with_small_outputs_and_covers_every_step():
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(TUTORIAL, as_version=4)
    source = _code(notebook)
    missing = [what for what, call in COVERS.items() if call not in source]
    assert not missing, missing
    assert "| `mean_norm`, `std_norm`, `max_norm` |" in "\n".join(c.source for c in notebook.cells)  # columns
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.outputs for c in code_cells[1:]), "commit the tutorial executed (its outputs are the lesson)"
    assert not any(o.output_type == "error" for c in code_cells for o in c.outputs)
    assert TUTORIAL.stat().st_size < 600_000


def test_tutorial_executes_top_to_bottom():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(TUTORIAL, as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "display_data" and "image/png" in o.data for o in outputs)
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "merged equals the whole set: True" in text
    difference = float(text.split("bridge vs Hugging Face: ")[1].split()[0])
    assert difference < 1e-3
    line = next(x for x in text.splitlines() if "fastest 8 zeroed" in x)
    fast, slow = (float(x) for x in line.split("fastest 8 zeroed ")[1].replace("slowest 8 zeroed ", "").split("; "))
    assert fast < slow  # zeroing the fastest chunks breaks the previous-token head, the slowest do not


def test_theory_figures_without_a_model(tmp_path):
    result = run_cli("figures", "--only", "F2,F8,F9,THEORY", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    names = {p.name for p in tmp_path.iterdir()}
    for stem in ("fig02_decay_ones_vs_gaussian", "fig08_random_rope", "fig09_fixed_gaussian_pair"):
        assert {f"{stem}.png", f"{stem}.pdf", f"{stem}.csv"} <= names
    assert "theory_p31_p52_t53_t61.png" in names


def test_model_figures_on_real_gemma(tmp_path):
    result = run_cli("figures", "--only", "f3,F5,F7,F19", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert "fig03_usage_per_layer_gemma-3-270m.png" in names
    assert any(n.startswith("fig05_attention_previous-token_") for n in names)
    assert any(n.startswith("fig12_trigger_head_logits_") for n in names)
    similarity = (tmp_path / "fig19_domain_similarity_gemma-3-270m.csv").read_text().splitlines()
    assert len(similarity) == 6  # header + five domains


def test_unknown_figure_id(capsys):
    assert_one_line_error(run_here(capsys, "figures", "--only", "F99"), "unknown figure id 'F99'")
