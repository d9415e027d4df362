"""Generated images of any shape and depth: resized tiles decoded to the right length, warnings
that name what ran, 8-bit said once per batch with its cap, the report's column named for what
it measures (issue 23)."""
import inspect

import cv2
import numpy as np
import pytest
import soundfile as sf

from tests.audio_fixtures import music_like, write
from wavdiff_utils.codec.params import CodecParams, load_yaml_params
from wavdiff_utils.errors import BadParameterError
from wavdiff_utils.io.tiles import read_tile
from wavdiff_utils.jobs.decode import decode_batch, decode_song, summary_markdown
from wavdiff_utils.jobs.decode_images import EIGHT_BIT_CAP_DB
from wavdiff_utils.jobs.encode import encode_song
from wavdiff_utils.paths import REPO_ROOT

P = CodecParams(size=256)                        # 0.74 s tiles at 44.1 kHz


def _save(path, px):
    """Write pixels as a generator does: a plain PNG without wavdiff metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.ascontiguousarray(px[..., ::-1] if px.ndim == 3 else px)
    assert cv2.imwrite(str(path), img)
    return path


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """Pixels of three tiles of a 256 codec, and of one tile of the default 1024 codec."""
    tmp = tmp_path_factory.mktemp("src")
    src = write(tmp / "a.wav", music_like(12.0, 44100, seed=2), 44100)
    encode_song(src, tmp / "small", params=P)
    encode_song(src, tmp / "big")                          # CodecParams(): 1024x1024, 11.89 s
    small = [read_tile(p).pixels for p in sorted((tmp / "small" / "a").glob("*.png"))[2:5]]
    return small, read_tile(tmp / "big" / "a" / "a_0000.png").pixels


def _shrunk(px, size):
    return cv2.resize(px, (size, size), interpolation=cv2.INTER_AREA)


def test_512_image_of_a_resized_1024_tile_decodes_to_11_9_s_by_default(tiles, tmp_path):
    _, big = tiles
    _save(tmp_path / "gen" / "sample_0.png", _shrunk(big, 512))
    r = decode_batch(tmp_path / "gen", tmp_path / "out", progress=False)
    res, = r.results
    assert r.ok and res.n_samples == 1024 * 512                 # 11.89 s, not 2.97 s
    assert sf.info(res.output).duration == pytest.approx(11.89, abs=0.01)
    note, = [w for w in res.warnings if "resized" in w]
    # both readings named: the one taken and the other
    assert "read as 1024x1024 tiles resized to 512x512" in note and "11.89 s" in note
    assert "512x512 tile of its own (resize='none', size=512) 2.97 s" in note
    # asked to refuse instead: one line naming both readings
    no = decode_batch(tmp_path / "gen", tmp_path / "no", resize="none", progress=False)
    (_, msg), = no.failures
    assert "sample_0.png" in msg and "\n" not in msg
    assert "expected 1024x1024" in msg and "11.89 s" in msg and "2.97 s" in msg


def test_resized_reading_is_said_once_per_batch(tiles, tmp_path):
    small, _ = tiles
    for k, px in enumerate(small):
        _save(tmp_path / "gen" / f"s_{k}.png", _shrunk(px, 128))
    r = decode_batch(tmp_path / "gen", tmp_path / "out", params=P, progress=False)
    assert r.ok and all(x.n_samples == P.tile_samples for x in r.results)
    text = r.summary()
    assert text.count("resized to 128x128") == 1 and "3 files" in text
    assert summary_markdown(r, tmp_path / "out").count("resized to 128x128") == 1


def test_an_image_of_neither_size_is_one_line(tiles, tmp_path):
    small, _ = tiles
    _save(tmp_path / "gen" / "a_ok.png", _shrunk(small[0], 128))
    _save(tmp_path / "gen" / "b_odd.png", _shrunk(small[0], 96))
    _save(tmp_path / "gen" / "c_wide.png", cv2.resize(small[0], (256, 128)))
    _save(tmp_path / "gen" / "d_same.png", small[1])
    r = decode_batch(tmp_path / "gen", tmp_path / "out", params=P, resize=128, progress=False)
    assert sorted(x.song for x in r.results) == ["a_ok", "d_same"]
    assert not any("resized" in w for w in r.results[1].warnings)     # the codec's size: as is
    fails = {p.rsplit("/", 1)[-1]: m for p, m in r.failures}
    odd = fails["b_odd.png"]
    assert "\n" not in odd and "neither a 256x256 tile nor one resized to 128x128" in odd
    assert "0.74 s" in odd and "96x96 tile of its own (resize='none', size=96)" in odd
    auto = decode_batch(tmp_path / "gen", tmp_path / "auto", params=P, progress=False)
    fails = {p.rsplit("/", 1)[-1]: m for p, m in auto.failures}
    assert set(fails) == {"c_wide.png"} and "not square" in fails["c_wide.png"]
    wide = fails["c_wide.png"]
    assert "\n" not in wide and "1.00x in time, 2.00x in frequency" in wide


def test_larger_image_is_a_wrong_size_under_auto(tiles, tmp_path):
    small, _ = tiles
    _save(tmp_path / "gen" / "x.png", small[0])
    r = decode_batch(tmp_path / "gen", tmp_path / "out", params=CodecParams(size=128),
                     progress=False)
    (_, msg), = r.failures
    assert "expected 128x128" in msg and "or smaller" in msg and "size=256" in msg


def test_tiles_with_metadata_are_never_resized(tiles, tmp_path):
    small, _ = tiles
    src = write(tmp_path / "a.wav", music_like(1.0, 44100, seed=1), 44100)
    encode_song(src, tmp_path / "t", params=P)
    tile = tmp_path / "t" / "a" / "a_0000.png"
    data = tile.read_bytes()                       # keep the metadata chunk, shrink the pixels
    ok, enc = cv2.imencode(".png", np.ascontiguousarray(_shrunk(small[0], 128)[..., ::-1]))
    enc = enc.tobytes()
    meta_chunk = data[33:data.index(b"IDAT") - 4]
    tile.write_bytes(enc[:33] + meta_chunk + enc[33:])
    r = decode_batch(tmp_path / "t", tmp_path / "out", progress=False)
    assert not r.ok and "its own wavdiff metadata" in r.failures[0][1]


@pytest.mark.parametrize("value", ["big", True, 8, -512, 3.5])
def test_resize_value_is_checked_before_any_file(tmp_path, value):
    with pytest.raises(BadParameterError, match="resize must be"):
        decode_batch(tmp_path / "nowhere", tmp_path / "out", resize=value, progress=False)


@pytest.mark.parametrize("asked, label, says", [
    ("auto", "fgla (pghi start)", "phase 'auto': PGHI"),
    ("image", "fgla (pghi start)", "phase 'image' has no phase planes to use, so phase 'auto'"),
    ("fgla", "fgla (zero phase start)", "phase 'fgla' (as asked): fast Griffin-Lim from zero"),
    ("griffinlim", "griffinlim", "phase 'griffinlim' (as asked): fast Griffin-Lim from random"),
    ("pghi", "pghi", "phase 'pghi' (as asked): PGHI"),
])
def test_grey_images_are_warned_with_the_method_that_ran(tiles, tmp_path, asked, label, says):
    small, _ = tiles
    _save(tmp_path / "gen" / "grey.png", small[0][..., 0])
    r = decode_batch(tmp_path / "gen", tmp_path / "out", params=P, phase=asked, n_iter=8,
                     progress=False)
    res, = r.results
    assert [t.method for t in res.tiles] == [label]
    grey, = [w for w in res.warnings if w.startswith("grey image")]
    assert says in grey
    if asked not in ("auto", "image"):
        assert "phase 'auto':" not in grey          # the old text named a method that did not run


def test_docstring_says_what_runs_on_grey_images():
    doc = inspect.getdoc(decode_song)
    assert "whatever is asked" not in doc
    assert "``fgla`` from zero" in doc and "``griffinlim`` from random" in doc


def test_8_bit_images_are_warned_once_per_batch_with_the_cap(tiles, tmp_path):
    small, _ = tiles
    for k, px in enumerate(small):
        _save(tmp_path / "gen" / f"e_{k}.png", (px // 257).astype(np.uint8))
    r = decode_batch(tmp_path / "gen", tmp_path / "out", params=P, n_iter=8, progress=False)
    assert r.ok and len(r.results) == 3
    text = r.summary()
    assert text.count("8-bit") == 1 and "3 files" in text
    assert f"about {EIGHT_BIT_CAP_DB:g} dB SC" in text and EIGHT_BIT_CAP_DB == -39.0
    assert summary_markdown(r, tmp_path / "out").count("8-bit") == 1
    # and within one file of several 8-bit tiles, once too
    j = decode_batch(tmp_path / "gen", tmp_path / "joined", params=P, join="song", n_iter=8,
                     progress=False)
    assert sum("8-bit" in w for w in j.results[0].warnings) == 1


def test_report_column_is_named_for_consistency_not_fidelity(tiles, tmp_path):
    small, _ = tiles
    _save(tmp_path / "gen" / "g.png", _shrunk(small[0], 128))
    r = decode_batch(tmp_path / "gen", tmp_path / "out", params=P, n_iter=8, progress=False)
    table = r.table()
    assert "SC dB (worst)" not in table.columns
    assert table.loc[0, "consistency dB (worst)"] == round(r.results[0].tiles[0].sc_db, 1)
    assert "consistency_db" in r.tile_table().columns and "sc_db" not in r.tile_table().columns
    assert "consistency with its image" in summary_markdown(r, tmp_path / "out")


def test_params_file_for_generated_images_names_resize():
    values = load_yaml_params(REPO_ROOT / "params" / "decode_generated.yaml")
    assert values["resize"] == "auto"
    decode_keys = {"phase", "n_iter", "join", "peak", "missing", "resize"}
    assert decode_keys <= set(values)
    assert decode_keys <= set(inspect.signature(decode_batch).parameters)


@pytest.mark.parametrize("phase", ["image", "fgla"])
def test_a_generated_image_ends_without_a_click(tmp_path, phase):
    """An image no audio has (random phase planes, as from a barely trained model): its last
    samples are no louder than its body (the plain inverse STFT made a click there: 07_train's
    samples peaked in their last 30 samples); our own tiles still decode exactly."""
    from wavdiff_utils.codec.transform import stft_to_pixels
    from wavdiff_utils.io.tiles import write_tile

    rng = np.random.default_rng(7)
    shape = (P.n_fft // 2 + 1, P.frames_per_tile)
    mag = 0.05 * rng.rayleigh(1.0, shape) * np.linspace(1, 0.05, shape[0])[:, None]
    S = (mag * np.exp(2j * np.pi * rng.random(shape))).astype(np.complex64)
    write_tile(tmp_path / "sample_0000.png", stft_to_pixels(S, P)[0])
    res = decode_song([tmp_path / "sample_0000.png"], tmp_path / "s.wav", params=P, phase=phase)
    y, _ = sf.read(tmp_path / "s.wav")
    half, hop = P.n_fft // 2, P.hop_length

    def rms(x):
        return float(np.sqrt(np.mean(np.square(x))))

    # measured: last hop / body RMS 1.6 (image) and 0.97 (fgla) before, 0.8 and 0.48 now
    assert res.tiles[0].method.startswith(phase) and rms(y[-hop:]) < 0.9 * rms(y[:-half])
