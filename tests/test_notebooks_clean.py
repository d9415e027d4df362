"""Notebooks are committed without outputs, each with a tagged parameters cell (CI checks both)."""
import json

import pytest

from wavdiff_utils.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"01_encode", "02_caption_muq", "02b_caption_qwen",
                                           "03_decode", "04_compare"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} carry outputs; run `make install` once "
                       f"(it sets up nbstripout) or `.venv/bin/nbstripout {path}`")
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), path.name


def test_nbstripout_is_set_up_by_the_install():
    """The README's install (make) runs `nbstripout --install`, which a clone does not carry."""
    make = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "nbstripout --install" in make
    assert "nbstripout" in (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_in_nbstripouts_normal_form(path):
    """What nbstripout's git filter makes of a notebook equals the committed file, so a clone with
    the filter installed (by `make`) shows no change after a JupyterLab save."""
    import subprocess
    import sys

    pytest.importorskip("nbstripout")
    keys = next(line.split(":=", 1)[1].strip() for line in
                (REPO_ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
                if line.startswith("NB_EXTRA_KEYS"))
    out = subprocess.run([sys.executable, "-m", "nbstripout", "-t", "--extra-keys", keys, str(path)],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == json.loads(path.read_text(encoding="utf-8")), \
        f"{path.name}: run `.venv/bin/nbstripout {path}` and commit"


def _parameters_cell(path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters'"
    return "".join(cells[0]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """papermill drops a parameter line it cannot parse (a comment holding '=') without failing:
    every name the parameters cell assigns must be in ``inspect_notebook``."""
    import ast

    import papermill as pm

    source = _parameters_cell(path)
    assigned = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        assigned |= {t.id for t in targets}
    assert assigned and set(pm.inspect_notebook(str(path))) == assigned
    bad = [line for line in source.splitlines() if "#" in line and "=" in line.split("#", 1)[1]]
    assert bad == [], f"{path.name}: '=' in a parameter comment: {bad}"


def test_the_readme_names_only_parameters_papermill_sees():
    """Every parameter the README's notebook table names is listed by papermill for that
    notebook (wildcards such as ``max_*`` must match at least one)."""
    import fnmatch
    import re

    import papermill as pm

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\d\w+)` \|.*\| (.+) \|$", readme, flags=re.M)
    assert len(rows) >= 7
    for stem, cell in rows:
        known = set(pm.inspect_notebook(str(REPO_ROOT / "notebooks" / f"{stem}.ipynb")))
        named = re.findall(r"`([\w*]+)`", re.sub(r"\([^)]*\)", "", cell))   # not (values)
        missing = [n for n in named if not fnmatch.filter(known, n)]
        assert missing == [], f"{stem}: README names {missing}, papermill lists {sorted(known)}"
