"""The notebook runs top to bottom; the figures command writes what it promises."""

from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli

REPO = Path(__file__).resolve().parents[2]


def test_notebook_executes_top_to_bottom():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(REPO / "notebooks" / "explore.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed clean
    nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert any(
        o.output_type == "display_data" and "image/png" in o.data
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
    )


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


def test_unknown_figure_id():
    assert_one_line_error(run_cli("figures", "--only", "F99"), "unknown figure id 'F99'")
