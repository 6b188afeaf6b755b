"""notebooks/01_prepare.ipynb executed headless, with papermill and with nbmake, on the mirror.

Both runs use the conftest's PREPARE_PARAMS and seed 0, so their files must be byte-identical to
each other and to ``prepare_steps``' (the ``prepared_run_dir`` fixture, the notebook's calls made
outside a kernel): they are one recipe, and a repeated run gives the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill
import pytest
from conftest import PREPARE_PARAMS
from nbmake.nb_run import NotebookRun
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from moderation_helpers.core.jsonl import validate_jsonl
from moderation_helpers.recipe.run_folder import DISTRIBUTION_PNG, PREPARE_SUMMARY, SPLIT_FILES

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_prepare.ipynb"
OUTPUTS = (*SPLIT_FILES.values(), DISTRIBUTION_PNG, PREPARE_SUMMARY)
# The one notebook of the quick check (README): `pytest -m "not slow or quick"`.
pytestmark = [pytest.mark.slow, pytest.mark.quick, pytest.mark.needs_data]


def parameters(source: Path, run_dir: Path) -> dict:
    return {"source": str(source), "run_dir": str(run_dir), "seed": 0, **PREPARE_PARAMS}


def check_run_folder(run_dir: Path, reference: Path) -> dict:
    """All outputs exist, validate against the summary's labels, and match the reference run."""
    for name in OUTPUTS:
        assert (run_dir / name).is_file(), f"{name} not written"
    summary = json.loads((run_dir / PREPARE_SUMMARY).read_text())
    allowed = {summary["target"]: summary["labels"]}
    for split, name in SPLIT_FILES.items():
        report = validate_jsonl(run_dir / name, allowed_labels=allowed)
        assert report.n_lines == summary["splits"][split]["rows_kept"] > 0
        assert (run_dir / name).read_bytes() == (reference / name).read_bytes(), name
    assert summary == json.loads((reference / PREPARE_SUMMARY).read_text())
    return summary


def test_papermill_runs_the_notebook_with_injected_parameters(
    civil_comments_dir, prepared_run_dir, tmp_path
):
    run_dir = tmp_path / "run" / "nested"  # created by the notebook
    executed = tmp_path / "01_prepare.out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(executed),
        parameters=parameters(civil_comments_dir, run_dir),
        cwd=str(tmp_path),
        progress_bar=False,
        kernel_name="python3",
    )
    summary = check_run_folder(run_dir, prepared_run_dir)
    assert summary["parameters"]["max_label_fraction"] == PREPARE_PARAMS["max_label_fraction"]
    nb = nbformat.read(executed, as_version=4)
    printed = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert "after balancing" in printed, "the counts before and after balancing are shown"
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)


def test_nbmake_runs_the_parameterized_notebook(civil_comments_dir, prepared_run_dir, tmp_path):
    run_dir = tmp_path / "run"
    # The stored defaults point at the hub, so inject the mirror as papermill would (its loader
    # gives every cell the tags list that parameterize_notebook expects).
    nb = load_notebook_node(str(NOTEBOOK))
    nb = parameterize_notebook(nb, parameters(civil_comments_dir, run_dir), kernel_name="python3")
    path = tmp_path / "01_prepare.ipynb"
    nbformat.write(nb, path)
    result = NotebookRun(path, default_timeout=300).execute()
    assert result.error is None, result.error and result.error.summary
    check_run_folder(run_dir, prepared_run_dir)
