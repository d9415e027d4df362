"""HTML reports: offline (nothing fetched from other hosts), small, a failed run says so first."""
import nbformat

from wavdiff_utils.views.report import external_urls, render_html


def _executed(tmp_path, outputs):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("x = 1", outputs=outputs)
    nb.cells = [nbformat.v4.new_markdown_cell("# A report\n\nSee <https://example.org/docs>."), cell]
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_report_opens_offline(tmp_path):
    html = render_html(_executed(tmp_path, []), tmp_path / "run.html").read_text(encoding="utf-8")
    assert external_urls(html) == []                       # no require.js, MathJax, widget CDN
    assert "<h1" in html and "example.org/docs" in html     # a link in the text is not a request
    assert "This run failed" not in html


def test_external_urls_finds_what_a_browser_would_fetch():
    page = ('<script src="https://cdn.example/require.js"></script>'
            '<link href="//fonts.example/x.css" rel="stylesheet">'
            '<style>@import url("https://cdn.example/y.css");</style>'
            '<img src="data:image/png;base64,AAAA"><a href="https://example.org">docs</a>')
    assert external_urls(page) == ["//fonts.example/x.css", "https://cdn.example/require.js",
                                   "https://cdn.example/y.css"]


def test_a_failed_run_says_so_on_the_first_line(tmp_path):
    err = nbformat.v4.new_output("error", ename="BadAudioError",
                                 evalue="song.mp3: is silent (every sample is zero)",
                                 traceback=["BadAudioError: song.mp3: is silent"])
    html = render_html(_executed(tmp_path, [err]), tmp_path / "run.html").read_text(encoding="utf-8")
    body = html[html.index("<body"):]
    first = body.index("This run failed")
    assert first < body.index("A report") and "BadAudioError: song.mp3: is silent" in body
    assert not list(tmp_path.glob(".run.html*"))           # written atomically: no temp left
