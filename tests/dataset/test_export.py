"""Dataset export and the 16-bit loader: bit-exact round trips, channel meaning, the 8-bit trap."""
import json
import warnings

import cv2
import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from tests.audio_fixtures import music_like, write
from wavdiff_utils import dataset as D
from wavdiff_utils.io.png16 import decode_png16
from wavdiff_utils.io.audio import load_audio
from wavdiff_utils.codec.transform import encode_array
from wavdiff_utils.codec.metrics import snr_db
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils import decode_batch, decode_song, encode_batch
from wavdiff_utils.io.tiles import TileImageError, read_tile, read_tile_metadata, write_tile

P = CodecParams(size=128)          # 0.19 s per tile: fast, same code path as 1024


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two encoded songs (one in a sub-folder), captions on some tiles, exported."""
    root = tmp_path_factory.mktemp("ds")
    src = root / "in"
    (src / "sub").mkdir(parents=True)
    write(src / "a.wav", music_like(1.0, 44100, seed=1, channels=2), 44100)
    write(src / "sub" / "b.flac", music_like(0.5, 22050, seed=2), 22050)
    out = root / "out"
    assert encode_batch(src, out, params=P, progress=False).ok
    (out / "a" / "a_0000.txt").write_text("style of A. A calm piano piece.\n", encoding="utf-8")
    (out / "a" / "a_0001.txt").write_text("Loud drums.", encoding="utf-8")
    (out / ".c.partial").mkdir()                       # an interrupted encode's leftovers
    (out / ".c.partial" / "manifest.json").write_text("{}")
    return src, out, D.export_dataset(out)


def test_a_re_export_loads_its_new_rows_through_the_same_datasets_cache(made, tmp_path):
    """``datasets`` caches a local folder by its name and its card's YAML: a dataset folder
    exported again with other rows (a song removed) must not load the rows cached before."""
    import shutil

    datasets = pytest.importorskip("datasets")
    _, out, _ = made
    folder = tmp_path / "dataset"
    shutil.copytree(out, folder)
    cache = str(tmp_path / "cache")
    assert datasets.load_dataset(str(folder), split="train", cache_dir=cache).num_rows \
        == len(D.read_metadata(out))
    shutil.rmtree(folder / "b")
    D.export_dataset(folder)
    left = D.read_metadata(folder)
    assert {r["song"] for r in left} == {"a"}
    again = datasets.load_dataset(str(folder), split="train", cache_dir=cache)
    assert again.num_rows == len(left) and set(again["song"]) == {"a"}


def test_export_writes_one_row_per_tile_with_relative_paths(made):
    _, out, res = made
    rows = D.read_metadata(out)
    man_a = json.loads((out / "a" / "manifest.json").read_text())
    man_b = json.loads((out / "b" / "manifest.json").read_text())
    assert res.n_songs == 2 and res.n_tiles == len(rows) == man_a["n_tiles"] + man_b["n_tiles"]
    assert res.n_captioned == 2 and res.warnings == []
    assert rows[0] == {"file_name": "a/a_0000.png", "text": "style of A. A calm piano piece.",
                       "caption_source": "unknown",       # written by hand: no captioner claims it
                       "song": "a", "tile_index": 0, "start_seconds": 0.0,
                       "end_seconds": round(8192 / 44100, 6), "start_sample": 0,
                       "end_sample": 8192, "sample_rate": 44100, "padding": 0.0,
                       "split": D.song_split("a")}
    assert [(r["text"], r["caption_source"]) for r in rows[1:3]] == [("Loud drums.", "unknown"),
                                                                     ("", "")]
    for r in rows:                                   # every span is the manifest's
        man = man_a if r["song"] == "a" else man_b
        t = man["tiles"][r["tile_index"]]
        assert (out / r["file_name"]).is_file() and r["file_name"].startswith(f"{r['song']}/")
        assert (r["start_sample"], r["end_sample"]) == (t["start"], t["end"])
        assert r["end_seconds"] == pytest.approx(t["end"] / 44100, abs=1e-6)
    assert rows[-1]["end_sample"] == man_b["n_samples"] and res.seconds == pytest.approx(1.5, abs=1e-3)


def test_card_has_codec_parameters_counts_and_loading_recipe(made):
    _, out, res = made
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "task_categories:\n- text-to-image" in card
    assert json.dumps(P.to_dict(), indent=1) in card and P.describe() in card
    assert f"**{res.n_songs}** song(s), **{res.n_tiles}** tiles, **2** with a caption" in card
    assert "| a | a.wav |" in card and "| b | b.flac |" in card
    assert "load_tile_dataset" in card and "IMREAD_UNCHANGED" in card
    png_bytes = sum(p.stat().st_size for p in out.glob("*/*.png"))
    assert f"{png_bytes / 1e6:,.1f} MB of PNG tiles, {png_bytes / res.seconds / 1000:,.0f} kB per " \
           f"second of audio" in card


def test_export_is_repeatable_and_keeps_a_foreign_card(made, tmp_path):
    _, out, _ = made
    before = (out / "metadata.jsonl").read_text()
    assert D.export_dataset(out).n_tiles == len(before.splitlines())
    assert (out / "metadata.jsonl").read_text() == before
    other = tmp_path / "o"
    assert encode_batch(made[0] / "a.wav", other, params=P, progress=False).ok
    (other / "README.md").write_text("my own card")
    with pytest.warns(UserWarning, match="not written by wavdiff"):
        D.export_dataset(other)
    assert (other / "README.md").read_text() == "my own card"


@pytest.mark.parametrize("case, exc, match", [("missing", FileNotFoundError, "does not exist"),
                                              ("empty", ValueError, "no finished song")])
def test_export_errors_name_the_folder(tmp_path, case, exc, match):
    folder = tmp_path / case
    if case == "empty":
        folder.mkdir()
    with pytest.raises(exc, match=match) as info:
        D.export_dataset(folder)
    assert str(folder) in str(info.value)


def test_every_16_bit_value_survives_tensor_and_back():
    v = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    px = np.stack([v, v[::-1], v.T], axis=-1)
    x = D.pixels_to_tensor(px)
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 256, 256)
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert np.array_equal(D.tensor_to_pixels(x), px)
    # neighbouring values stay distinct: all 16 bits reach the model
    assert len(torch.unique(x[0])) == 65536


def test_loader_round_trip_is_bit_exact_through_files_and_decodes_identically(made, tmp_path):
    _, out, _ = made
    ds = D.TileDataset(out)
    assert isinstance(ds, torch.utils.data.Dataset) and len(ds) == len(D.read_metadata(out))
    songs = {}
    for item in ds:
        songs.setdefault(item["song"], []).append(item["pixel_values"])
    written = D.write_tensor_tiles(songs["a"], tmp_path / "gen", song="a", params=P)
    for k, path in enumerate(written):
        assert np.array_equal(read_tile(path).pixels, read_tile(out / "a" / f"a_{k:04d}.png").pixels)
    # 03_decode's decoder gives the same audio from both folders (the manifest trims padding)
    decode_song(out / "a", tmp_path / "orig.wav")
    decode_song(tmp_path / "gen", tmp_path / "gen.wav")
    y0, _ = sf.read(tmp_path / "orig.wav", dtype="float32")
    y1, _ = sf.read(tmp_path / "gen.wav", dtype="float32")
    assert len(y1) == len(written) * P.tile_samples
    assert np.array_equal(y0, y1[:len(y0)])


def test_channels_mean_what_the_docs_say():
    y = music_like(0.5, 44100, seed=3)
    tile = encode_array(y, P)[0]
    x = D.pixels_to_tensor(tile.pixels).numpy()
    S = librosa.stft(y, n_fft=P.n_fft, hop_length=P.hop_length, center=True,
                     pad_mode="constant")[:P.bins, :P.frames_per_tile]
    low_first = x[:, ::-1, :]                               # row 0 is the highest frequency
    db = 20 * np.log10(np.abs(S) / P.db_scale + 1e-30)
    loud = (db > P.db_min + 1) & (db < P.db_max)
    step = (P.db_max - P.db_min) / 65535
    got = D.magnitude_db(x, P)[::-1]
    assert np.abs(got[loud] - db[loud]).max() < step         # within one 16-bit step
    assert np.all(low_first[0][db < P.db_min - 1] == -1.0)    # silence is -1
    phase = np.angle(S)
    assert np.abs(low_first[1][loud] - np.cos(phase[loud])).max() < 2e-4
    assert np.abs(low_first[2][loud] - np.sin(phase[loud])).max() < 2e-4


def test_pillow_reads_8_bits_and_that_costs_this_many_db(made):
    src, out, _ = made
    path = out / "a" / "a_0002.png"
    px16 = decode_png16(path)
    # the trap: Pillow keeps the high byte (46527 -> 181) and says nothing
    assert np.array_equal(D.read_png_like_pillow(path), (px16 >> 8) * 257)
    cost = D.eight_bit_cost(path)
    meta = read_tile_metadata(path)
    ref = load_audio(src / "a.wav", sample_rate=44100)[meta["start"]:meta["end"]]
    from wavdiff_utils.codec.transform import decode_array
    y16 = decode_array([px16], P, n_samples=meta["end"] - meta["start"])
    snr16 = snr_db(ref, y16)
    print(f"\n16-bit tile alone: {snr16:.1f} dB SNR; 8-bit read: PSNR {cost['psnr_db']:.1f} dB, "
          f"magnitude error mean {cost['magnitude_error_db']:.3f} / max "
          f"{cost['magnitude_error_max_db']:.3f} dB, audio SNR {cost['audio_snr_db']:.1f} dB")
    assert cost["pillow_mode"] == "RGB"
    assert snr16 > 70 and cost["audio_snr_db"] < snr16 - 25
    assert cost["psnr_db"] < 60 and 0.2 < cost["magnitude_error_max_db"] <= 120 / 257 + 1e-6


def test_datasets_loads_image_text_and_columns_and_the_transform_keeps_16_bits(made, tmp_path):
    datasets = pytest.importorskip("datasets")
    _, out, _ = made
    rows = D.read_metadata(out)
    plain = datasets.load_dataset("imagefolder", data_dir=str(out), split="train",
                                  cache_dir=str(tmp_path / "c1"))
    assert plain.num_rows == len(rows)
    assert set(plain.column_names) == {"image", "text", "song", "tile_index", "start_seconds",
                                       "end_seconds", "start_sample", "end_sample", "sample_rate",
                                       "caption_source", "padding", "split"}
    assert plain[0]["text"] == rows[0]["text"] and plain[0]["image"].mode == "RGB"
    assert np.asarray(plain[0]["image"]).dtype == np.uint8         # what Pillow makes of it
    # the card's YAML lets load_dataset(folder) find the same rows
    assert datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "c2")).num_rows \
        == len(rows)
    ds = D.load_tile_dataset(out, cache_dir=str(tmp_path / "c3"))
    for i in (0, len(rows) - 1):
        item = ds[i]
        assert "image" not in item and item["text"] == rows[i]["text"]
        assert np.array_equal(D.tensor_to_pixels(item["pixel_values"]),
                              decode_png16(out / rows[i]["file_name"]))
    batch = ds[:2]
    assert [tuple(t.shape) for t in batch["pixel_values"]] == [(3, 128, 128)] * 2


@pytest.mark.parametrize("kind", ["bytes", "path", "dict_bytes", "dict_path"])
def test_transform_reads_bytes_and_paths(made, kind):
    _, out, _ = made
    path = out / "a" / "a_0001.png"
    value = {"bytes": path.read_bytes(), "path": None} if kind == "dict_bytes" else \
        {"bytes": None, "path": str(path)} if kind == "dict_path" else \
        path.read_bytes() if kind == "bytes" else str(path)
    got = D.TileTransform()({"image": [value], "text": ["t"]})
    assert got["text"] == ["t"] and "image" not in got
    assert np.array_equal(D.tensor_to_pixels(got["pixel_values"][0]), read_tile(path).pixels)


def test_transform_refuses_pillow_images_with_the_fix(made):
    from PIL import Image
    _, out, _ = made
    with Image.open(out / "a" / "a_0000.png") as im:
        with pytest.raises(TypeError, match=r"decode=False"):
            D.TileTransform()({"image": [im]})


def test_dataloader_batches_a_folder_without_metadata(made):
    _, out, _ = made
    ds = D.TileDataset(out / "b")              # plain tile folder: found by name, no captions
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    first = next(iter(loader))
    assert tuple(first["pixel_values"].shape) == (2, 3, 128, 128)
    assert first["file_name"] == ["b_0000.png", "b_0001.png"] and first["text"] == ["", ""]


def test_generated_tensors_become_tiles_03_decode_reads(tmp_path):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-1.3, 1.3, (3, 3, 128, 128)).astype(np.float32))
    x[0, 0, 0, 0] = float("nan")
    paths = D.write_tensor_tiles(x, tmp_path / "gen", song="gen", params=P, start_index=5)
    assert [p.name for p in paths] == ["gen_0005.png", "gen_0006.png", "gen_0007.png"]
    px = read_tile(paths[0]).pixels
    assert px.dtype == np.uint16 and px[0, 0, 0] == 0 and px.max() == 65535      # clipped
    meta = read_tile_metadata(paths[1])
    assert meta["codec"] == P.to_dict() and meta["tile_index"] == 6 and meta["generated"]
    res = decode_batch(tmp_path / "gen", tmp_path / "wav", progress=False)
    assert res.ok and res.results[0].n_samples == 3 * P.tile_samples


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(3, 64, 64), "64x64 but the codec's tiles are 128x128"),
    (torch.zeros(4, 128, 128), r"shape \(3, H, W\)"),
])
def test_write_tensor_tiles_names_the_problem(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        D.write_tensor_tiles([bad], tmp_path, params=P)


def test_decode_png16_checks_what_it_reads(tmp_path):
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.zeros((8, 8), np.uint16))
    with pytest.raises(TileImageError, match="1 channel"):
        decode_png16(grey)
    with pytest.raises(TileImageError, match="not a readable image"):
        decode_png16(b"not a png", name="x.png")
    eight = tmp_path / "eight.png"
    cv2.imwrite(str(eight), np.full((8, 8, 3), 181, np.uint8))
    with pytest.warns(UserWarning, match="8-bit image"):
        assert decode_png16(eight).max() == 181 * 257
    write_tile(tmp_path / "t_0000.png", np.full((8, 8, 3), 46527, np.uint16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_png16(tmp_path / "t_0000.png")[0, 0, 0] == 46527


def test_rows_carry_padding_share_and_a_split_per_song(tmp_path):
    from tests.audio_fixtures import music_like, write

    from wavdiff_utils import encode_song

    (tmp_path / "in").mkdir()
    for i in range(15):                                     # enough songs to see every split
        write(tmp_path / "in" / f"song{i:02d}.wav", music_like(0.5, 44100, seed=i), 44100)
        encode_song(tmp_path / "in" / f"song{i:02d}.wav", tmp_path / "ds", params=P)
    res = D.export_dataset(tmp_path / "ds", splits=(("train", 0.5), ("validation", 0.25),
                                                    ("test", 0.25)))
    rows = D.read_metadata(tmp_path / "ds")
    by_song = {}
    for r in rows:
        by_song.setdefault(r["song"], set()).add(r["split"])
        assert 0.0 <= r["padding"] < 1.0
    assert all(len(s) == 1 for s in by_song.values())        # one split per song
    assert {s for v in by_song.values() for s in v} == {"train", "validation", "test"}
    last = [r for r in rows if r["song"] == "song00"][-1]
    man = json.loads((tmp_path / "ds" / "song00" / "manifest.json").read_text())
    assert last["padding"] == round(man["tiles"][-1]["pad"] / P.tile_samples, 4) > 0
    assert D.song_split("song00", (("train", 0.5), ("validation", 0.25), ("test", 0.25))) \
        == by_song["song00"].pop()                            # the same on any machine
    # drop the mostly-padding last tiles
    n_all = len(rows)
    D.export_dataset(tmp_path / "ds", max_padding=0.2)         # last tiles are 31% padding
    kept = D.read_metadata(tmp_path / "ds")
    assert all(r["padding"] <= 0.2 for r in kept) and len(kept) == n_all - 15
    card = (tmp_path / "ds" / "README.md").read_text()
    assert 'pretty_name: "Ds"' in card and str(tmp_path) not in card
    D.export_dataset(tmp_path / "ds", name="My music tiles")
    assert 'pretty_name: "My music tiles"' in (tmp_path / "ds" / "README.md").read_text()
    with pytest.raises(ValueError, match="max_padding must be a share"):
        D.export_dataset(tmp_path / "ds", max_padding=2)


def test_load_tile_dataset_ignores_split_named_exports_beside_the_tiles(made, tmp_path):
    pytest.importorskip("datasets")
    _, out, _ = made
    rows = D.read_metadata(out)
    data = out / "parquet" / "data"                      # as write_parquet names its shards
    data.mkdir(parents=True, exist_ok=True)
    (data / "train-000000.parquet").write_bytes(b"PAR1 not read")
    (data / "validation-000000.parquet").write_bytes(b"PAR1 not read")
    try:
        ds = D.load_tile_dataset(out, cache_dir=str(tmp_path / "c"))
        assert ds.num_rows == len(rows) and ds[0]["text"] == rows[0]["text"]
    finally:
        import shutil
        shutil.rmtree(out / "parquet")
