"""``python -m wavdiff_utils``: flags, prompts, missing weights, resume, and the dataset it makes.

Every run is a real subprocess on short clips made here.  The MuQ runs use the
tiny model ``conftest.py`` points ``$WAVDIFF_MUQ_MODEL`` at.
"""
import html as htmllib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.audio_fixtures import music_like, write
from wavdiff_utils.io.png16 import decode_png16
from wavdiff_utils.dataset.loader import load_tile_dataset
from wavdiff_utils.dataset.export import read_metadata
from wavdiff_utils.dataset.tensors import tensor_to_pixels

SMALL = ["--size", "128"]                   # 0.19 s tiles: fast, same code path as 1024
MUQ = os.environ.get("WAVDIFF_MUQ_MODEL", "")
needs_muq = pytest.mark.skipif(not MUQ or not Path(MUQ).is_dir(),
                               reason="no tiny MuQ model ($WAVDIFF_MUQ_MODEL, set by conftest.py)")


def cli(args, cwd, *, answers: str | None = None, timeout: float = 180):
    """Run the CLI.  Without ``answers`` stdin is /dev/null (not a terminal: it must not prompt)."""
    extra = {"input": answers} if answers is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run([sys.executable, "-m", "wavdiff_utils", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, **extra)


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "songs"
    (d / "sub").mkdir(parents=True)
    write(d / "one.wav", music_like(0.8, 44100, seed=1, channels=2), 44100)
    write(d / "sub" / "two.flac", music_like(0.5, 22050, seed=2), 22050)
    return d


@pytest.fixture(scope="module")
def flags_run(songs):
    """The main job with flags: MuQ captions (tiny model), 2 workers.  The report notebook is not
    executed here (nbval runs it once; its content and wiring are tested directly below)."""
    assert MUQ and Path(MUQ).is_dir(), "conftest.py builds the tiny MuQ model and sets $WAVDIFF_MUQ_MODEL"
    out = songs.parent / "out"
    r = cli(["--input", str(songs), "--output", str(out), "--captioner", "muq", "--workers", "2",
             "--artist", "Band", "--no-report", *SMALL], cwd=songs.parent)
    return r, out, "muq"


def test_flags_run_makes_captioned_tiles_and_dataset(flags_run):
    r, out, cap = flags_run
    assert r.returncode == 0, r.stderr
    assert "2 encoded, 0 already done, 0 failed" in r.stdout and "FAILED" not in r.stdout
    rows = read_metadata(out)
    man = {s: json.loads((out / s / "manifest.json").read_text()) for s in ("one", "two")}
    assert len(rows) == sum(m["n_tiles"] for m in man.values())
    assert {row["file_name"].split("/")[0] for row in rows} == {"one", "two"}
    assert cap == "muq" and f"captions: muq: {len(rows)} tiles in 2 song(s) captioned" in r.stdout
    for row in rows:
        assert row["text"].startswith("style of Band. ") and len(row["text"]) > 30
        assert row["caption_source"] == "muq"
        assert (out / row["file_name"]).with_suffix(".txt").read_text().strip() == row["text"]
    record = json.loads((out / "wavdiff_batch.json").read_text())
    assert [s["status"] for s in record["songs"]] == ["encoded", "encoded"]
    assert "**2** song(s)" in (out / "README.md").read_text()
    assert not (out / "report").exists() and "report:" not in r.stdout


def test_batch_report_shows_strips_captions_players_and_round_trip(flags_run, monkeypatch):
    """What 06_batch_report shows, from the package function the notebook calls."""
    import matplotlib
    import matplotlib.pyplot as plt
    from wavdiff_utils.views.batch_report import show_batch_report

    matplotlib.use("Agg")
    _, out, _ = flags_run
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs: shown.extend(objs))
    before = len(plt.get_fignums())
    show_batch_report(out, max_players=2)
    figures = len(plt.get_fignums()) - before
    plt.close("all")
    text = "\n".join(getattr(o, "data", None) or o.to_string() for o in shown)
    rows = read_metadata(out)
    assert figures == 2                                                  # one tile strip per song
    assert text.count("data:audio/mpeg;base64,") == 4                    # 2 players x 2 songs
    assert text.count("decoded alone: **SNR ") == 2 and "### one" in text and "### two" in text
    assert all(htmllib.escape(row["text"]) in text for row in rows)      # every caption, in its table
    assert f"**{len(rows)}** tiles, **{len(rows)}** with a caption (muq)" in text


def test_the_report_step_executes_06_once_and_names_a_failure(songs, tmp_path, monkeypatch):
    import wavdiff_utils.jobs.pipeline as report      # where the pipeline calls run_notebook
    from wavdiff_utils.jobs.pipeline import run_pipeline
    from wavdiff_utils.codec.params import CodecParams

    calls = []

    def fake_run(notebook, **kw):
        calls.append((Path(notebook).name, kw))
        html = Path(kw["output"]) / f"{kw['name']}.html"
        html.write_text("<html></html>")
        return html.with_suffix(".ipynb"), html

    monkeypatch.setattr(report, "run_notebook", fake_run)
    out = tmp_path / "o"
    res = run_pipeline(songs / "sub", out, params=CodecParams(size=128), captioner="none",
                       workers=1, progress=False, log=None)
    assert res.report == out.resolve() / "report" / "batch_report.html" and res.report_error == ""
    (name, kw), = calls
    assert name == "06_batch_report.ipynb" and kw["hide_code"]
    assert kw["parameters"] == {"output": str(out.resolve()), "input": ""}

    def broken(notebook, **kw):
        raise RuntimeError("kernel died\nmore detail")
    monkeypatch.setattr(report, "run_notebook", broken)
    res = run_pipeline(songs / "sub", out, params=CodecParams(size=128), captioner="none",
                       workers=1, progress=False, log=None)
    assert res.report is None and res.report_error.startswith("RuntimeError: kernel died (details: ")
    assert "batch_report.log" in res.report_error and "\n" not in res.report_error


def test_rendered_report_is_one_offline_file(tmp_path):
    """render_html embeds images and players and loads no remote media (input cells hidden)."""
    import base64

    import cv2
    import nbformat
    from wavdiff_utils.views.plots import audio_player
    from wavdiff_utils.views.report import render_html

    png = base64.b64encode(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()).decode()
    player = audio_player(music_like(0.2, 22050), 22050, label="t_0000.png").data
    cell = nbformat.v4.new_code_cell("secret_source_line = 1", outputs=[
        nbformat.v4.new_output("display_data", data={"image/png": png}),
        nbformat.v4.new_output("display_data", data={"text/html": player})])
    nb_path = tmp_path / "r.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), str(nb_path))
    html = render_html(nb_path, tmp_path / "r.html", hide_code=True).read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and html.count("data:audio/mpeg;base64,") == 1
    assert "secret_source_line" not in html
    body = html.split("<body", 1)[1]
    assert 'src="http' not in body.replace('src="https://cdnjs', "")


def test_the_exported_folder_loads_with_16_bits(flags_run, tmp_path):
    datasets = pytest.importorskip("datasets")
    _, out, _ = flags_run
    rows = read_metadata(out)
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == len(rows)
    assert {"image", "text", "song", "tile_index", "start_seconds", "end_seconds",
            "sample_rate"} <= set(ds.column_names)
    assert ds[0]["song"] == "one" and ds[0]["tile_index"] == 0 and ds[0]["sample_rate"] == 44100
    assert ds[0]["text"] == rows[0]["text"]
    tensors = load_tile_dataset(out, cache_dir=str(tmp_path / "hf2"))
    x = tensors[len(rows) - 1]["pixel_values"]
    assert np.array_equal(tensor_to_pixels(x), decode_png16(out / rows[-1]["file_name"]))


def test_a_rerun_with_flags_and_no_captioner_skips_finished_songs(flags_run, songs):
    _, out, _ = flags_run
    before = (out / "one" / "manifest.json").stat().st_mtime_ns
    r = cli(["--input", str(songs), "--output", str(out), "--captioner", "none", "--no-report",
             *SMALL], cwd=songs.parent)
    assert r.returncode == 0 and "0 encoded, 2 already done, 0 failed" in r.stdout
    assert (out / "one" / "manifest.json").stat().st_mtime_ns == before


def test_missing_weights_give_metadata_captions_and_one_line(songs, tmp_path):
    out = tmp_path / "o"
    r = cli(["--input", str(songs / "one.wav"), "--output", str(out), "--captioner", "muq",
             "--model", str(tmp_path / "no-such-model"), "--no-report", *SMALL], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    said = [ln for ln in (r.stdout + r.stderr).splitlines() if "unavailable" in ln]
    assert len(said) == 1
    assert said[0].strip().startswith("captions: muq unavailable, metadata captions instead: ")
    assert "no-such-model" in said[0] and "--model" in said[0] and "hf download" in said[0]
    assert "captions: metadata: " in r.stdout
    rows = read_metadata(out)
    assert rows and all(row["text"] == "one. A track." and row["caption_source"] == "metadata"
                        for row in rows)


@needs_muq
def test_interactive_prompts_take_answers_from_stdin(songs, tmp_path):
    answers = "\n".join(["no/such/file.wav", str(songs / "one.wav"), "made", "Some Artist",
                         "A Title"]) + "\n"
    r = cli(["--interactive", "--captioner", "muq", "--no-report", *SMALL], tmp_path, answers=answers)
    assert r.returncode == 0, r.stderr
    for prompt in ("Audio file or folder:", "Output folder [outputs/dataset]:",
                   "Artist (empty = from the file tags):", "Title (empty = from the file tags):"):
        assert prompt in r.stdout
    assert "'no/such/file.wav' does not exist" in r.stderr          # asked again
    rows = read_metadata(tmp_path / "made")
    assert rows[0]["text"].startswith("style of Some Artist, A Title. ")


def test_without_flags_or_terminal_it_says_how_to_run_instead_of_waiting(tmp_path):
    r = cli([], cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert "stdin is not a terminal" in r.stderr and "--input" in r.stderr
    assert "--interactive" in r.stderr


def test_answers_running_out_is_an_error_not_a_hang(tmp_path):
    r = cli(["--interactive"], tmp_path, answers="", timeout=60)
    assert r.returncode == 2 and "end of input" in r.stderr


@pytest.mark.parametrize("args, named", [
    (["--captioner", "whisper"], "'whisper'"),
    (["--workers", "-2"], "-2"),
    (["--size", "8"], "size must be at least 16 pixels, got 8"),
    (["--layout", "wide"], "'wide'"),
    (["--input", "nowhere"], "'nowhere' does not exist"),
    (["-f", "bad.yaml"], "'colour'"),
])
def test_bad_values_are_named(songs, tmp_path, args, named):
    (tmp_path / "bad.yaml").write_text("colour: blue\n")
    base = ["--input", str(songs), "--output", str(tmp_path / "o")]
    r = cli(base + args, cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and named in r.stderr and not (tmp_path / "o").exists()


def test_yaml_file_sets_options_and_flags_win(songs, tmp_path):
    (tmp_path / "p.yaml").write_text(f"input: {songs / 'sub'}\noutput: from_yaml\ncaptioner: none\n"
                                     f"size: 128\nreport: false\n")
    r = cli(["-f", "p.yaml", "--output", "from_flag"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "from_flag" / "two" / "manifest.json").is_file()
    assert not (tmp_path / "from_yaml").exists() and not (tmp_path / "from_flag" / "report").exists()


def test_an_interrupted_batch_resumes_without_redoing_finished_songs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write(src / "a_first.wav", music_like(2.0, 44100, seed=1), 44100)
    for k in (2, 3):                                # long enough to still be running at the kill
        write(src / f"song{k}.wav", music_like(30.0, 44100, seed=k), 44100)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "wavdiff_utils", "--input", str(src), "--output", str(out),
            "--captioner", "none", "--workers", "1", "--no-report"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = out / "a_first" / "manifest.json"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)                 # Ctrl-C while the second song is encoding
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    assert not (out / "song3" / "manifest.json").exists()
    done_before = first.stat().st_mtime_ns
    again = subprocess.run(args, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    assert "already done" in again.stdout and "0 failed" in again.stdout
    assert first.stat().st_mtime_ns == done_before                  # not redone
    record = json.loads((out / "wavdiff_batch.json").read_text())
    status = {s["song"]: s["status"] for s in record["songs"]}
    assert status["a_first"] == "skipped" and status["song3"] == "encoded"
    assert len(read_metadata(out)) == sum(s["tiles"] for s in record["songs"])
    assert not list(out.glob(".*.partial"))


def test_songs_per_minute_reports_each_worker_count(songs, tmp_path):
    from wavdiff_utils.bench.scaling import songs_per_minute
    from wavdiff_utils.codec.params import CodecParams
    rows = songs_per_minute(songs, workers=(1, 2), params=CodecParams(size=128), scratch=tmp_path)
    assert [r["workers"] for r in rows] == [1, 2] and rows[0]["speedup"] == 1.0
    assert all(r["songs"] == 2 and r["failed"] == 0 and r["songs_per_minute"] > 0 for r in rows)
    assert rows[0]["tiles"] == rows[1]["tiles"] and not list(tmp_path.iterdir())   # cleaned up
    with pytest.raises(ValueError, match="-1"):
        songs_per_minute(songs, workers=(-1,))


def test_metadata_captioner_from_the_command_line(songs, tmp_path):
    out = tmp_path / "meta"
    r = cli(["--input", str(songs / "sub"), "--output", str(out), "--captioner", "metadata",
             "--title", "Night", "--no-report", *SMALL], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "unavailable" not in r.stdout + r.stderr and "captions: metadata: " in r.stdout
    rows = read_metadata(out)
    assert rows and all(row["text"] == "Night. A track." and row["caption_source"] == "metadata"
                        for row in rows)
    record = json.loads((out / "wavdiff_batch.json").read_text())
    assert record["caption_source"] == "metadata" and record["caption_notice"] == ""


def test_png_compression_small_from_the_command_line(tmp_path):
    from wavdiff_utils.paths import REPO_ROOT
    """`--png-compression small` makes smaller tiles holding the same pixels; a bad value is one line."""
    import subprocess
    import sys

    from wavdiff_utils.io.tiles import read_tile

    base = [sys.executable, "-m", "wavdiff_utils", "--input", "sample_data", "--captioner", "none",
            "--no-report", "--size", "256"]
    for name, level in (("fast", "0"), ("small", "small")):
        r = subprocess.run(base + ["--output", str(tmp_path / name), "--png-compression", level],
                           capture_output=True, text=True, cwd=str(REPO_ROOT))
        assert r.returncode == 0, r.stderr[-1500:]
    fast = sorted((tmp_path / "fast" / "wavdiff_demo").glob("*.png"))
    small = sorted((tmp_path / "small" / "wavdiff_demo").glob("*.png"))
    assert sum(p.stat().st_size for p in small) < 0.95 * sum(p.stat().st_size for p in fast)
    assert all((read_tile(a).pixels == read_tile(b).pixels).all() for a, b in zip(fast, small))
    r = subprocess.run(base + ["--output", str(tmp_path / "bad"), "--png-compression", "huge"],
                       capture_output=True, text=True, cwd=str(REPO_ROOT))
    assert r.returncode == 2 and "--png-compression must be 0-9 or 'small', got 'huge'" in r.stderr
    assert "Traceback" not in r.stderr
