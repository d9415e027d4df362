"""Decoding any folder of images: names, joins, bad images, bad metadata, loud audio, the report."""
import json
import struct
import zlib

import cv2
import numpy as np
import pytest
import soundfile as sf

from tests.audio_fixtures import music_like, write
from wavdiff_utils.codec.transform import pixels_to_stft, stft_to_pixels
from wavdiff_utils.jobs.decode import decode_batch, decode_song, plan_decode, summary_markdown
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.bench.phase import perturb
from wavdiff_utils.jobs.encode import encode_song
from wavdiff_utils.io.tiles import TileImageError, read_tile, read_tile_metadata, write_tile

P = CodecParams(size=128)                        # 0.19 s tiles at 44.1 kHz


@pytest.fixture
def song(tmp_path):
    """A song's tiles from 01_encode (with metadata and manifest)."""
    src = write(tmp_path / "a.wav", music_like(1.0, 44100, seed=1), 44100)
    encode_song(src, tmp_path / "tiles", params=P)
    return tmp_path / "tiles" / "a"


def _generated(song_dir, folder, names, *, noise=0.3, seed=0):
    """Tiles as a generator writes them: phase noise, no metadata, any names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tiles = sorted(song_dir.glob("*.png"))
    for name, t in zip(names, tiles):
        S = perturb(pixels_to_stft(read_tile(t).pixels, P), noise, rng=rng)
        px, _ = stft_to_pixels(S, P)
        cv2.imwrite(str(folder / name), np.ascontiguousarray(px[..., ::-1]))
    return folder


def test_generator_names_in_natural_order_one_clip_each(song, tmp_path):
    names = [f"sample_{i}.png" for i in (0, 1, 2, 10, 11)]
    gen = _generated(song, tmp_path / "gen", names)
    jobs = plan_decode(gen)
    assert [j.name for j in jobs] == ["sample_0", "sample_1", "sample_2", "sample_10", "sample_11"]
    r = decode_batch(gen, tmp_path / "out", params=P, progress=False)
    assert r.ok and len(r.results) == 5
    from wavdiff_utils.views.plots import plot_decode_report
    fig = plot_decode_report(r)                                  # 03_decode's per-tile figure
    assert len(fig.axes[0].get_xticklabels()) == 5
    assert len(r.tile_table()) == 5 and r.table()["consistency dB (worst)"].notna().all()
    for res in r.results:
        assert res.n_samples == P.tile_samples and res.tiles[0].method == "fgla (image start)"
        assert res.tiles[0].sc_db < res.tiles[0].coherence_db - 8      # the fit got much better
        assert "assumed layout 'exact'" in res.assumed
    # one line for a warning every clip shares
    assert r.summary().count("no wavdiff metadata") == 1 and "5 files" in r.summary()


def test_join_song_uses_natural_order(song, tmp_path):
    names = [f"x{i}.png" for i in (1, 2, 10)]
    gen = _generated(song, tmp_path / "gen", names, noise=0.0)
    job, = plan_decode(gen, join="song")
    assert [p.name for p in job.tiles] == ["x1.png", "x2.png", "x10.png"] and job.name == "gen"
    r = decode_batch(gen, tmp_path / "out", params=P, join="song", progress=False)
    assert r.ok and r.results[0].n_samples == 3 * P.tile_samples
    assert {t.method for t in r.results[0].tiles} == {"image"}      # clean planes: exact path


def test_own_tiles_stay_exact_under_auto(song, tmp_path):
    a = decode_song(song, tmp_path / "auto.wav")
    b = decode_song(song, tmp_path / "image.wav", phase="image")
    ya, _ = sf.read(tmp_path / "auto.wav")
    yb, _ = sf.read(tmp_path / "image.wav")
    assert np.array_equal(ya, yb) and {t.method for t in a.tiles} == {"image"}
    assert a.n_samples == b.n_samples == 44100
    table = decode_batch(song, tmp_path / "out", progress=False).tile_table()
    sc = table[["coherence_db", "consistency_db"]]      # exact phase: no SC, NaN (was None)
    assert (sc.dtypes == float).all() and sc.isna().all().all()


@pytest.mark.parametrize("make, problem", [
    (lambda p: p.write_bytes(cv2.imencode(".jpg", np.zeros((128, 128, 3), np.uint8))[1].tobytes()),
     "is a JPEG image, not a PNG"),
    (lambda p: p.write_bytes(cv2.imencode(".png", np.zeros((128, 128, 3), np.uint16))[1]
                             .tobytes()[:-300]), "is a truncated PNG"),
    (lambda p: cv2.imwrite(str(p), np.zeros((64, 96, 3), np.uint16)), "is 96x64 pixels: not square"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_text("hello"), "not an image file"),
])
def test_bad_images_fail_alone_with_one_line(song, tmp_path, make, problem):
    gen = _generated(song, tmp_path / "gen", ["g_0.png", "g_1.png"])
    make(gen / "bad.png")
    r = decode_batch(gen, tmp_path / "out", params=P, progress=False)
    assert [x.song for x in r.results] == ["bad", "g_0", "g_1"][1:]           # the rest decoded
    (path, msg), = r.failures
    assert path.endswith("bad.png") and "bad.png" in msg and problem in msg and "\n" not in msg
    assert not (tmp_path / "out" / "bad.wav").exists()
    assert "FAILED" in r.summary() and "1 failed" in r.summary()


def test_real_jpeg_files_are_listed_not_skipped(song, tmp_path):
    gen = _generated(song, tmp_path / "gen", ["g_0.png"])
    cv2.imwrite(str(gen / "photo.jpg"), np.zeros((128, 128, 3), np.uint8))
    r = decode_batch(gen, tmp_path / "out", params=P, progress=False)
    assert len(r.results) == 1 and "photo.jpg: is a JPEG image" in r.failures[0][1]


def _rewrite_metadata(path, change):
    meta = read_tile_metadata(path)
    px = read_tile(path).pixels
    new = change(meta)
    write_tile(path, px, new)


@pytest.mark.parametrize("change, field", [
    (lambda m: "just a string", "must be a JSON object"),
    (lambda m: {**m, "codec": {**m["codec"], "size": -5}}, "field 'codec' is invalid"),
    (lambda m: {**m, "codec": "big"}, "field 'codec' must be an object"),
    (lambda m: {**m, "tile_index": "three"}, "field 'tile_index'"),
    (lambda m: {**m, "end": m["stop"] + 5}, "'start', 'end', 'stop', 'pad' disagree"),
    (lambda m: {**m, "is_last": "yes"}, "field 'is_last'"),
])
def test_edited_metadata_is_refused_naming_file_and_field(song, tmp_path, change, field):
    tile = song / "a_0002.png"
    if field == "must be a JSON object":      # write_tile only takes dicts: splice the chunk by hand
        data = tile.read_bytes()
        text = json.dumps("just a string").encode()
        body = b"wavdiff\x00\x00\x00\x00\x00" + text
        chunk = struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
        px = read_tile(tile).pixels
        ok, enc = cv2.imencode(".png", np.ascontiguousarray(px[..., ::-1]))
        enc = enc.tobytes()
        tile.write_bytes(enc[:33] + chunk + enc[33:])
        assert data != tile.read_bytes()
    else:
        _rewrite_metadata(tile, change)
    with pytest.raises(TileImageError, match=field) as err:
        read_tile(tile)
    assert "a_0002.png" in str(err.value)
    r = decode_batch(song.parent, tmp_path / "out", progress=False)
    assert not r.ok and "a_0002.png" in r.failures[0][1] and field.split("'")[0] in r.failures[0][1]


def test_out_of_range_tiles_warn_and_peak_options(tmp_path):
    full = np.full((128, 128, 3), 65535, np.uint16)       # every bin at db_max
    write_tile(tmp_path / "gen" / "loud_0000.png", full)
    r = decode_batch(tmp_path / "gen", tmp_path / "keep", params=P, progress=False)
    res = r.results[0]
    assert res.peak > 1.0 and res.clipped > 0
    assert res.tiles[0].peak == pytest.approx(res.peak) and res.tiles[0].clipped == res.clipped
    assert "tile(s) 0 decode beyond full scale" in res.warnings
    assert {"peak", "clipped"} <= set(r.tile_table().columns)
    assert any("beyond full scale" in w and "kept as float" in w for w in res.warnings)
    assert "beyond full scale" in r.summary()
    y, _ = sf.read(res.output, dtype="float32")
    assert np.abs(y).max() == pytest.approx(res.peak, rel=1e-5)             # true values kept
    lim = decode_batch(tmp_path / "gen", tmp_path / "lim", params=P, peak="limit", progress=False)
    y, _ = sf.read(lim.results[0].output, dtype="float32")
    assert np.abs(y).max() <= 1.0
    norm = decode_batch(tmp_path / "gen", tmp_path / "norm", params=P, peak="normalize",
                        progress=False)
    y, _ = sf.read(norm.results[0].output, dtype="float32")
    assert 20 * np.log10(np.abs(y).max()) == pytest.approx(-1.0, abs=0.01)
    flac = decode_batch(tmp_path / "gen", tmp_path / "flac", params=P, fmt="flac", progress=False)
    assert any(".flac cannot hold them" in w for w in flac.results[0].warnings)


def test_tiles_of_two_songs_in_one_sequence_are_warned_about(tmp_path):
    for name, seed in (("a", 1), ("b", 2)):
        write(tmp_path / f"{name}.wav", music_like(0.6, 44100, seed=seed), 44100)
        encode_song(tmp_path / f"{name}.wav", tmp_path / "t", params=P)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, src in enumerate(["a/a_0000.png", "a/a_0001.png", "b/b_0000.png", "b/b_0001.png"]):
        (mixed / f"m_{i:04d}.png").write_bytes((tmp_path / "t" / src).read_bytes())
    r = decode_batch(mixed, tmp_path / "out", progress=False)
    w = " ".join(r.results[0].warnings)
    assert "tiles of 2 different songs ('a', 'b')" in w and "not consecutive" in w
    assert "2 different songs" in r.summary()


def test_grey_and_8bit_images_decode_with_a_warning(song, tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    px = read_tile(song / "a_0001.png").pixels
    cv2.imwrite(str(gen / "grey.png"), np.ascontiguousarray(px[..., 0]))
    cv2.imwrite(str(gen / "eight.png"), np.ascontiguousarray((px[..., ::-1] // 257).astype(np.uint8)))
    r = decode_batch(gen, tmp_path / "out", params=P, progress=False)
    by = {x.song: x for x in r.results}
    assert r.ok and by["grey"].tiles[0].method == "fgla (pghi start)"
    assert by["grey"].tiles[0].coherence_db is None
    table = r.tile_table().set_index("file")          # not measured: NaN in a float column
    assert table["coherence_db"].dtype == float and np.isnan(table.loc["grey", "coherence_db"])
    assert np.isfinite(table.loc["grey", "consistency_db"])
    assert any("magnitude only" in w for w in by["grey"].warnings)
    assert any("8-bit image" in w for w in by["eight"].warnings)
    assert by["eight"].tiles[0].method != "image" or by["eight"].tiles[0].coherence_db < -50


def test_loud_long_22k_stereo_song_round_trip_and_players(tmp_path):
    """Realistic input: 22.05 kHz stereo, peaks at 1.3, 20 s (54 small tiles)."""
    from wavdiff_utils.views.plots import audio_player, show_decoded

    sr = 22050
    y = music_like(20.0, sr, seed=7, channels=2) * (1.3 / 0.8)
    src = tmp_path / "loud.wav"
    sf.write(src, y, sr, subtype="FLOAT")
    p = CodecParams(size=128, sample_rate=sr)
    encode_song(src, tmp_path / "t", params=p)
    r = decode_batch(tmp_path / "t", tmp_path / "out", progress=False)
    res = r.results[0]
    assert r.ok and res.peak > 1.0 and any("beyond full scale" in w for w in res.warnings)
    z, got_sr = sf.read(res.output, dtype="float32")
    assert got_sr == sr and len(z) == len(y)
    scores = show_decoded(r, max_files=1)                        # what 03_decode shows: no crash
    assert scores.loc[0, "SNR dB"] > 80 and scores.loc[0, "length matches"]
    html = audio_player(z, sr, label="loud")._repr_html_()
    assert "played" in html and "dB quieter" in html
    assert "peak +" in summary_markdown(r, tmp_path / "out", scores)


def test_results_show_themselves_as_a_table(song, tmp_path):
    r = decode_batch(song, tmp_path / "out", progress=False)
    page = r._repr_html_()
    assert page.startswith("<p>1 file(s) decoded") and "<table" in page and "a.wav" in page
    assert str(tmp_path) not in page                      # paths relative to the output folder
