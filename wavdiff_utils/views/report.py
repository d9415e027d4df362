"""Run a notebook headless and render it to one self-contained HTML report.

Command line::

    python -m wavdiff_utils.views.report notebooks/01_encode.ipynb -p input song.mp3 -f params/encode_exact.yaml

writes ``outputs/reports/01_encode.ipynb`` (the executed copy) and
``outputs/reports/01_encode.html`` (opens offline: figures and audio players are
embedded).  ``outputs/`` is git-ignored.  Cells tagged ``remove_input`` show
only their output; ``--no-code`` hides every code cell's input.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from ..codec.params import load_yaml_params
from ..errors import MissingInputError, WavdiffError, one_line
from ..paths import atomic_path, output_dir, resolve, writing
from ..results import error_names

__all__ = ["run_notebook", "render_html", "external_urls", "failure_line", "main"]

#: The kernel's own log at errors only: its start-up warning about plain TCP between two
#: processes of this machine says nothing a report's reader can act on.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
DEFAULT_REPORTS = "outputs/reports"
#: nbconvert template of the reports: the "lab" page with nothing loaded from another host.
TEMPLATE_DIR = Path(__file__).resolve().parent / "data" / "nbconvert"
TEMPLATE = "wavdiff_offline"
_URL_ATTR = re.compile(r"""(?:src|href)\s*=\s*["']?((?:https?:)?//[^"'\s>]+)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"""@import\s+(?:url\()?["']?((?:https?:)?//[^"')\s]+)""", re.IGNORECASE)


def external_urls(page: str) -> list[str]:
    """Addresses a browser would fetch from another host when opening ``page`` (HTML text).

    Looks at ``src``/``href`` attributes and CSS ``@import``; links inside the
    text (e.g. a URL printed in a cell's output) are not requests and are not
    counted.  ``data:`` URIs are embedded, not fetched.
    """
    found = [m.group(1) for m in _URL_ATTR.finditer(page)]
    found += [m.group(1) for m in _CSS_IMPORT.finditer(page)]
    # an <a href> is a link the reader may follow, not a request the page makes
    anchors = {m.group(1) for m in re.finditer(r"""<a\s[^>]*href\s*=\s*["']([^"']+)""", page, re.I)}
    return sorted(u for u in set(found) if u not in anchors)


def _first_error(nb) -> str:
    """``"In [N]: Name: message"`` for the first cell that ended in an error (numbered as the
    report shows it), else ""."""
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                return (f"In [{cell.get('execution_count')}]: {out.get('ename', 'Error')}: "
                        f"{out.get('evalue', '')}")
    return ""


def render_html(notebook, html_path=None, *, hide_code: bool = False) -> Path:
    """Render an executed notebook to a single HTML file (atomically) that opens offline.

    The page uses the "lab" look without require.js, MathJax, mermaid or a
    widget manager from a CDN (:data:`TEMPLATE`); figures and audio are
    embedded.  Cells tagged ``remove_cell`` are dropped, ``remove_input`` keep
    only their output; ``hide_code`` hides all code inputs.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    from traitlets.config import Config

    notebook = Path(notebook)
    html_path = Path(html_path) if html_path else notebook.with_suffix(".html")
    cfg = Config()
    cfg.TagRemovePreprocessor.remove_cell_tags = ("remove_cell",)
    cfg.TagRemovePreprocessor.remove_input_tags = ("remove_input",)
    cfg.TagRemovePreprocessor.enabled = True
    exporter = HTMLExporter(config=cfg, exclude_input=hide_code, template_name=TEMPLATE,
                            extra_template_basedirs=[str(TEMPLATE_DIR)])
    exporter.register_preprocessor(TagRemovePreprocessor(config=cfg), True)
    nb = nbformat.read(str(notebook), as_version=4)
    failed = _first_error(nb)
    if failed:                              # a failed run says so on the report's first line
        banner = nbformat.v4.new_markdown_cell(f"**This run failed:** {failed}")
        nb.cells.insert(0, banner)
    body, _ = exporter.from_notebook_node(nb)
    remote = external_urls(body)
    if remote:                  # a new nbconvert template or output type asking for a CDN: say so
        import warnings
        warnings.warn(f"{html_path}: the report would load {len(remote)} address(es) from other "
                      f"hosts ({', '.join(remote[:3])}); it may not open offline", stacklevel=2)
    with writing(html_path), atomic_path(html_path) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return html_path


def _execute(nb: Path, executed: Path, params: dict, kernel: str):
    """Run ``nb`` with papermill into ``executed`` (atomically: a notebook cut short by a full
    disk is never left under its name); returns the failed cell's error, else None.

    Raises
    ------
    UnwritableOutputError
        ``executed`` cannot be written (full disk, read-only, no permission); names it.
    """
    import papermill as pm

    failed = None
    with writing(executed), atomic_path(executed) as tmp:
        try:                         # runs in the launch folder, like papermill
            pm.execute_notebook(str(nb), str(tmp), parameters=params, kernel_name=kernel,
                                progress_bar=False, extra_arguments=KERNEL_ARGUMENTS)
        except pm.PapermillExecutionError as exc:     # the executed copy shows the error
            failed = exc
    return failed


def run_notebook(notebook, *, parameters: dict | None = None, yaml_files=(), output=DEFAULT_REPORTS,
                 name: str | None = None, html: bool = True, hide_code: bool = False,
                 kernel: str = "python3") -> tuple[Path, Path | None]:
    """Execute ``notebook`` with papermill and render it.

    Parameters
    ----------
    notebook : path-like
        e.g. ``"notebooks/01_encode.ipynb"`` (resolved against the repository too).
    parameters : dict, optional
        Parameter values; they override those of ``yaml_files``.
    yaml_files : sequence of path-like
        ``params/*.yaml`` files, applied in order.
    output : path-like
        Folder for the executed copy and the HTML (created).
    name : str, optional
        Base name of the outputs (default: the notebook's stem).

    Returns
    -------
    (executed notebook path, HTML path or None)

    Raises
    ------
    papermill.PapermillExecutionError
        When a cell fails; the executed copy (with the error) is still written and rendered.
    MissingInputError, BadParameterError
        The notebook or a parameter file is missing, or a parameter file is not a mapping.
    UnwritableOutputError
        The report folder, the executed copy or the HTML cannot be written (full disk,
        read-only, no permission); one line naming it.
    """
    nb = resolve(notebook)
    if not nb.is_file():
        raise MissingInputError(f"notebook {str(nb)!r} does not exist")
    params: dict = {}
    for f in yaml_files:
        params.update(load_yaml_params(f))
    params.update(parameters or {})
    out = output_dir(output)
    stem = name or nb.stem
    executed = out / f"{stem}.ipynb"
    failed = _execute(nb, executed, params, kernel)
    try:
        if html:
            render_html(executed, out / f"{stem}.html", hide_code=hide_code)
    finally:
        if failed is not None:         # the cell's error comes first, whatever the rendering did
            raise failed
    return executed, (out / f"{stem}.html") if html else None


def failure_line(exc: BaseException) -> str:
    """One line for a failed :func:`run_notebook`: a wavdiff error's message, or the failed
    cell's error, named as the report shows the cell (``In [3]: size must be at least 16 pixels,
    got 7``)."""
    if isinstance(exc, WavdiffError):
        return one_line(exc)
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename is None:
        return f"{type(exc).__name__}: {one_line(exc)}"
    cell = getattr(exc, "exec_count", None)
    where = f"In [{cell}]: " if cell is not None else ""
    kind = "" if ename in error_names() else f"{ename}: "
    return f"{where}{kind}{one_line(evalue) if evalue else ename}"


def _parse_value(text: str):
    """``-p`` values are read as YAML scalars (numbers, booleans), like papermill's ``-p``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wavdiff_utils.views.report",
                                 description="Run a wavdiff notebook headless and render an HTML report.")
    ap.add_argument("notebook", help="e.g. notebooks/01_encode.ipynb")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="parameter value (YAML-typed: 1024 is a number, true a boolean)")
    ap.add_argument("-r", "--raw", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="parameter value kept as a string")
    ap.add_argument("-f", "--file", action="append", default=[], help="params/*.yaml file")
    ap.add_argument("-o", "--output", default=DEFAULT_REPORTS, help=f"report folder (default {DEFAULT_REPORTS})")
    ap.add_argument("--name", help="base name of the report files")
    ap.add_argument("--no-html", action="store_true", help="skip the HTML rendering")
    ap.add_argument("--no-code", action="store_true", help="hide code cells in the HTML")
    a = ap.parse_args(argv)
    params = {k: _parse_value(v) for k, v in a.parameter}
    params.update({k: v for k, v in a.raw})
    try:
        nb, html = run_notebook(a.notebook, parameters=params, yaml_files=a.file, output=a.output,
                                name=a.name, html=not a.no_html, hide_code=a.no_code)
    except WavdiffError as exc:      # before the notebook ran, or its report not written
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:         # a cell failed: its error, on one line
        print(f"error: {failure_line(exc)}", file=sys.stderr)
        return 1
    print(f"executed notebook: {nb}")
    if html:
        print(f"HTML report:       {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
