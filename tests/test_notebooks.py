"""The notebooks run top to bottom (nbclient, a real kernel) on tiny settings."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_generated_from_the_script():
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "scripts" / "make_notebooks.py"
    before = {p: p.read_text() for p in NOTEBOOKS}
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True)
    assert {p: p.read_text() for p in NOTEBOOKS} == before, "run scripts/make_notebooks.py and commit the notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLENS_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("MEMLENS_NOTEBOOK_DIR", str(tmp_path / "work"))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "cue from memory: accuracy" in outputs and "selectivity" in outputs
    assert (tmp_path / "work" / "memory_evolution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "re-projected" in outputs and "share of the actions' attention on memory" in outputs
