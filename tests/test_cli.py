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

from audio_fixtures import music_like, write
from wavdiff_utils.dataset import decode_png16, load_tile_dataset, read_metadata, tensor_to_pixels

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
    """The main job with flags: MuQ captions (tiny model), 2 workers, the HTML report."""
    assert MUQ and Path(MUQ).is_dir(), "conftest.py builds the tiny MuQ model and sets $WAVDIFF_MUQ_MODEL"
    out = songs.parent / "out"
    r = cli(["--input", str(songs), "--output", str(out), "--captioner", "muq", "--workers", "2",
             "--artist", "Band", *SMALL], cwd=songs.parent)
    return r, out, "muq"


def test_flags_run_makes_captioned_tiles_dataset_and_report(flags_run):
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
    html = (out / "report" / "batch_report.html").read_text(encoding="utf-8")
    # the report: tile strips, captions, players and the round trip of one tile, all embedded
    assert html.count("data:audio/mpeg;base64,") == 4                 # 2 players x 2 songs
    assert html.count("data:image/png;base64,") >= 2 and "decoded alone" in html and "SNR" in html
    assert all(htmllib.escape(row["text"]) in html for row in rows)   # every caption, in its table
    body = html.split("<body", 1)[1]
    assert 'src="http' not in body.replace('src="https://cdnjs', "")   # no remote media
    assert f"report:   {out / 'report' / 'batch_report.html'}" in r.stdout


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
    assert rows and all(row["text"] == "A track." and row["caption_source"] == "metadata"
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
    from wavdiff_utils.batch import songs_per_minute
    from wavdiff_utils.params import CodecParams
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
