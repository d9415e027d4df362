"""``channels: mono | stereo`` where a user sets it: the command line, params files, the pipeline's
settings and ``01_encode``; a stereo pipeline run end to end (encode, metadata captions, the
dataset exports) on a short synthetic stereo file.  A dataset row is one span: its mid tile,
naming its side tile; a side tile is never a row of its own."""
import json
import subprocess
import sys

import papermill as pm
import pytest

from tests.audio_fixtures import music_like, write
from wavdiff_utils.codec.params import CodecParams, load_yaml_params
from wavdiff_utils.dataset.export import read_metadata
from wavdiff_utils.errors import BadParameterError
from wavdiff_utils.io.manifest import read_manifest
from wavdiff_utils.jobs import run_pipeline
from wavdiff_utils.jobs.cli import _parser
from wavdiff_utils.jobs.pipeline_result import side_tile_count
from wavdiff_utils.jobs.settings import PipelineSettings, song_memory
from wavdiff_utils.paths import REPO_ROOT

SMALL = ["--size", "128"]                   # 0.19 s tiles: fast, same code path as 1024


def cli(args, cwd, *, timeout: float = 180):
    return subprocess.run([sys.executable, "-m", "wavdiff_utils", *args], cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def stereo_song(tmp_path_factory):
    d = tmp_path_factory.mktemp("stereo") / "songs"
    d.mkdir()
    write(d / "duo.wav", music_like(1.0, 44100, seed=3, channels=2), 44100)
    return d


@pytest.fixture(scope="module")
def stereo_run(stereo_song):
    """``--channels stereo`` with metadata captions, shards and the Parquet export."""
    out = stereo_song.parent / "out"
    r = cli(["--input", str(stereo_song), "--output", str(out), "--channels", "stereo",
             "--captioner", "metadata", "--no-report", "--shards", "--format", "parquet",
             "-q", *SMALL], cwd=stereo_song.parent)
    return r, out


def test_cli_stereo_writes_a_side_tile_per_mid_tile(stereo_run):
    r, out = stereo_run
    assert r.returncode == 0, r.stderr
    song = out / "duo"
    manifest = read_manifest(song)
    mids = sorted(p.name for p in song.glob("duo_[0-9][0-9][0-9][0-9].png"))
    sides = sorted(p.name for p in song.glob("*.side.png"))
    assert manifest["codec"]["channels"] == "stereo" and len(mids) == manifest["n_tiles"] > 1
    assert sides == [m.replace(".png", ".side.png") for m in mids]
    assert [t["side_file"] for t in manifest["tiles"]] == sides
    assert manifest["side_clipped_high"] == 0 and manifest["side_peak"] > 0
    assert f"{len(mids)} tiles and {len(sides)} side tiles (stereo)" in r.stdout
    assert "each row a mid tile naming its side tile" in r.stdout
    record = json.loads((out / "wavdiff_batch.json").read_text(encoding="utf-8"))
    assert record["channels"] == "stereo" and record["side_tiles"] == len(sides)


def test_captions_are_one_per_span_from_the_mono_mix(stereo_run):
    """Captioners read the mono mix; a side tile gets no caption of its own."""
    _, out = stereo_run
    song = out / "duo"
    captions = sorted(p.name for p in song.glob("*.txt"))
    assert captions == [f"duo_{i:04d}.txt" for i in range(read_manifest(song)["n_tiles"])]
    record = json.loads((song / "captions_metadata.json").read_text(encoding="utf-8"))
    assert [t["file"] for t in record["tiles"]] == captions


def test_the_dataset_exports_have_one_row_per_span(stereo_run):
    """metadata.jsonl, the shards and the Parquet export: one row (sample) per span, its mid
    tile; no side tile is a row of its own."""
    import tarfile

    import pyarrow.parquet as pq

    _, out = stereo_run
    n = read_manifest(out / "duo")["n_tiles"]
    mids = [f"duo/duo_{i:04d}.png" for i in range(n)]
    rows = read_metadata(out)
    assert [r["file_name"] for r in rows] == mids
    assert [r.get("side_file_name") for r in rows] == [m.replace(".png", ".side.png") for m in mids]
    members = [m for t in sorted((out / "shards").glob("*.tar"))
               for m in tarfile.open(t).getnames()]
    assert sorted({m.split(".", 1)[0] for m in members}) == [f"duo_{i:04d}" for i in range(n)]
    table = pq.read_table(sorted((out / "parquet").rglob("*.parquet"))[0])
    assert table.column("file_name").to_pylist() == mids


def test_a_rerun_skips_the_finished_stereo_song(stereo_run, stereo_song):
    _, out = stereo_run
    r = cli(["--input", str(stereo_song), "--output", str(out), "--channels", "stereo",
             "--captioner", "none", "--no-report", "-q", *SMALL], cwd=stereo_song.parent)
    assert r.returncode == 0, r.stderr
    assert "0 encoded, 1 already done" in r.stdout and "side tiles (stereo)" in r.stdout


@pytest.mark.parametrize("value, words", [
    ("3", "--channels must be mono or stereo, got '3'"),
    ("Stereo", "--channels must be mono or stereo, got 'Stereo' (did you mean stereo?)"),
])
def test_bad_channels_are_one_line_naming_the_value(stereo_song, tmp_path, value, words):
    r = cli(["--input", str(stereo_song), "--output", str(tmp_path / "o"), "--channels", value,
             *SMALL], cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and not (tmp_path / "o").exists()
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {words}"] and "Traceback" not in r.stderr


def test_channels_from_a_yaml_file(stereo_song, tmp_path):
    (tmp_path / "p.yaml").write_text(f"input: {stereo_song}\noutput: ds\ncaptioner: none\n"
                                     f"size: 128\nreport: false\nchannels: stereo\n")
    r = cli(["-f", "p.yaml", "-q"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "ds" / "duo").glob("*.side.png"))
    (tmp_path / "bad.yaml").write_text("channels: both\n")
    r = cli(["-f", "bad.yaml", "--input", str(stereo_song), "--output", "x"], cwd=tmp_path,
            timeout=60)
    assert r.returncode == 2 and "--channels must be mono or stereo, got 'both'" in r.stderr


def test_settings_take_channels_flat_and_refuse_other_spellings():
    s = PipelineSettings().replace(channels="stereo", size=128)
    assert s.params == CodecParams(size=128, channels="stereo")
    assert s.replace(channels="mono").params == CodecParams(size=128)
    assert PipelineSettings.from_mapping({"channels": "stereo"}).params.stereo
    for bad in ("Stereo", "left", 2, None):
        with pytest.raises(BadParameterError, match="channels must be mono or stereo"):
            PipelineSettings.from_mapping({"channels": bad})
    assert "channels" in PipelineSettings.names()
    assert "--channels" in {o for a in _parser()._actions for o in a.option_strings}


def test_a_stereo_song_is_counted_as_two_tiles_of_memory():
    mono, stereo = CodecParams(), CodecParams(channels="stereo")
    assert song_memory(stereo) - song_memory(mono) == mono.tile_memory


def test_run_pipeline_stereo_in_process(stereo_song, tmp_path):
    res = run_pipeline(stereo_song, tmp_path / "ds", captioner="none", channels="stereo",
                       size=128, workers=1, report=False, progress=False, log=None)
    assert res.ok and res.channels == "stereo"
    n = res.encode.results[0].n_tiles
    assert side_tile_count(res.encode.results) == n == res.export.n_tiles
    mono = run_pipeline(stereo_song, tmp_path / "mono", captioner="none", size=128, workers=1,
                        report=False, progress=False, log=None)
    assert side_tile_count(mono.encode.results) == 0 and "side" not in mono.summary()
    assert "channels" not in json.loads((tmp_path / "mono" / "wavdiff_batch.json").read_text())
    for i in range(n):                   # the mid tile is the mono tile, byte for byte
        name = f"duo/duo_{i:04d}.png"
        assert (tmp_path / "ds" / name).read_bytes() == (tmp_path / "mono" / name).read_bytes()


def test_params_files_and_01_encode_name_channels():
    names = pm.inspect_notebook(str(REPO_ROOT / "notebooks" / "01_encode.ipynb"))
    assert names["channels"]["default"] == '"mono"'
    for f in ("encode_exact", "encode_seed", "encode_small", "pipeline"):
        data = load_yaml_params(REPO_ROOT / "params" / f"{f}.yaml")
        assert data["channels"] == "mono", f
        if f != "pipeline":
            assert set(data) <= set(names), f


def test_01_encode_stereo_counts_side_tiles_and_draws_the_pair(stereo_song, tmp_path):
    out = tmp_path / "01_encode.ipynb"
    pm.execute_notebook(str(REPO_ROOT / "notebooks" / "01_encode.ipynb"), str(out),
                        parameters={"input": str(stereo_song / "duo.wav"),
                                    "output": str(tmp_path / "tiles"), "size": 128,
                                    "channels": "stereo", "max_players": 1},
                        kernel_name="python3", cwd=str(REPO_ROOT), progress_bar=False)
    nb = json.loads(out.read_text(encoding="utf-8"))
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    n = read_manifest(tmp_path / "tiles" / "duo")["n_tiles"]
    assert f"stereo: {n} side tiles" in text
    pair = [c for c in nb["cells"] if c["cell_type"] == "code" and "plot_mid_side(" in "".join(c["source"])]
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for o in pair[0]["outputs"])
