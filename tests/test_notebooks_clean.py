"""Notebooks are stored as source: canonical JSON, no outputs, a papermill parameters cell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPECTED = [
    "01_prepare.ipynb",
    "02_train.ipynb",
    "03_monitor.ipynb",
    "04_infer.ipynb",
    "05_deploy.ipynb",
]


def test_every_step_has_its_notebook():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs stored"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters' for papermill"
    assert nb.cells[0].cell_type == "markdown", "a notebook opens with prose saying what it teaches"
    secrets = ("MISTRAL_API_KEY =", 'api_key="', "WANDB_API_KEY =")
    assert not any(s in c.source for c in code for s in secrets), "a key-like literal in code"


def test_nbclean_finds_nothing_to_change():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "nbclean.py"), "--check", str(REPO / "notebooks")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"run `python tools/nbclean.py notebooks/`:\n{result.stdout}"


def test_nbclean_strips_outputs_and_metadata(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"widgets": {"x": 1}})
    cell = nbformat.v4.new_code_cell(
        "print(1)", metadata={"tags": ["parameters"], "scrolled": True}
    )
    cell.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    cell.execution_count = 3
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), cell]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    tool = [sys.executable, str(REPO / "tools" / "nbclean.py")]
    assert subprocess.run([*tool, "--check", str(path)], capture_output=True).returncode == 1
    assert subprocess.run([*tool, str(path)], capture_output=True).returncode == 0
    clean = nbformat.read(path, as_version=4)
    assert clean.cells[1].outputs == [] and clean.cells[1].execution_count is None
    assert clean.cells[1].metadata == {"tags": ["parameters"]}
    assert "widgets" not in clean.metadata
    assert subprocess.run([*tool, "--check", str(path)], capture_output=True).returncode == 0
