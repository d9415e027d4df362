"""Stereo datasets (issue 26): side tiles in metadata.jsonl, the card, the 16-bit loaders; mono
exports unchanged (recorded before stereo datasets existed); every format bit-exact on real music
when outputs/music is there (scripts/fetch_music.py)."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.jobs.test_stereo import before_signal
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.dataset.export import export_dataset, read_metadata
from wavdiff_utils.dataset.loader import TileDataset, load_tile_dataset
from wavdiff_utils.dataset.tensors import pixels_to_tensor
from wavdiff_utils.errors import WavdiffError
from wavdiff_utils.io.png16 import decode_png16
from wavdiff_utils.jobs.encode import encode_batch

BEFORE = Path(__file__).parent / "data" / "mono_before_stereo.json"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _library(root: Path, channels: str) -> Path:
    """duo.wav (3 s stereo) and solo.wav (2 s mono), size 64, a caption on duo_0001."""
    (root / "in").mkdir(parents=True)
    sf.write(root / "in" / "duo.wav", before_signal(44100, 3.0), 44100, subtype="FLOAT")
    sf.write(root / "in" / "solo.wav", before_signal(44100, 2.0)[:, 0], 44100, subtype="FLOAT")
    out = root / "out"
    assert encode_batch(root / "in", out, params=CodecParams(size=64, channels=channels),
                        progress=False).ok
    (out / "duo" / "duo_0001.txt").write_text("a caption")
    return out


@pytest.fixture(scope="module")
def mono(tmp_path_factory) -> Path:
    out = _library(tmp_path_factory.mktemp("mono"), "mono")
    export_dataset(out)
    return out


@pytest.fixture(scope="module")
def stereo(tmp_path_factory) -> Path:
    out = _library(tmp_path_factory.mktemp("stereo"), "stereo")
    export_dataset(out)
    return out


def test_mono_metadata_is_byte_identical_to_before(mono):
    assert _sha(mono / "metadata.jsonl") == json.loads(BEFORE.read_text())["metadata.jsonl"]
    assert "side" not in (mono / "metadata.jsonl").read_text()


def test_stereo_rows_name_their_side_tile_and_are_otherwise_the_mono_rows(mono, stereo):
    rows, mono_rows = read_metadata(stereo), read_metadata(mono)
    assert [{k: v for k, v in r.items() if k != "side_file_name"} for r in rows] == mono_rows
    assert all(r["side_file_name"] == r["file_name"][:-4] + ".side.png" for r in rows)
    assert all((stereo / r["side_file_name"]).is_file() for r in rows)
    card = (stereo / "README.md").read_text()
    assert "## Stereo" in card and 'channels="stereo"' in card
    assert "## Stereo" not in (mono / "README.md").read_text()


def test_a_missing_side_tile_leaves_its_row_out_with_a_note(stereo, tmp_path):
    copy = tmp_path / "c"
    shutil.copytree(stereo, copy)
    (copy / "duo" / "duo_0002.side.png").unlink()
    with pytest.warns(UserWarning, match="missing .*duo_0002.side.png"):
        res = export_dataset(copy)
    assert "duo/duo_0002.png" not in {r["file_name"] for r in read_metadata(copy)}
    assert res.n_tiles == len(read_metadata(stereo)) - 1


def test_tile_dataset_gives_six_planes_for_stereo_and_the_mid_alone_by_default(stereo):
    rows = read_metadata(stereo)
    six = TileDataset(stereo, channels="stereo")
    three = TileDataset(stereo)
    for i in (0, len(rows) - 1):
        x = six[i]["pixel_values"]
        assert x.shape == (6, 64, 64) and torch.equal(x[:3], three[i]["pixel_values"])
        side = pixels_to_tensor(decode_png16(stereo / rows[i]["side_file_name"]))
        assert torch.equal(x[3:], side)
    folder_only = TileDataset(stereo / "duo", channels="stereo")     # no metadata: found beside
    assert folder_only[0]["pixel_values"].shape == (6, 64, 64)


def test_a_mono_dataset_refuses_stereo_in_one_line(mono):
    with pytest.raises(WavdiffError, match="mono dataset .*channels='mid'") as info:
        TileDataset(mono, channels="stereo")
    assert "\n" not in str(info.value)
    with pytest.raises(WavdiffError, match="mono dataset"):
        load_tile_dataset(mono, channels="stereo")
    with pytest.raises(WavdiffError, match="channels must be one of"):
        TileDataset(mono, channels="left")


def test_datasets_loader_gives_the_same_six_planes_at_16_bits(stereo, tmp_path):
    pytest.importorskip("datasets")
    ds = load_tile_dataset(stereo, channels="stereo", cache_dir=str(tmp_path / "c"))
    ref = TileDataset(stereo, channels="stereo")
    for i in (0, 5):
        assert torch.equal(ds[i]["pixel_values"], ref[i]["pixel_values"])
    mid = load_tile_dataset(stereo, cache_dir=str(tmp_path / "c2"))
    assert mid[0]["pixel_values"].shape == (3, 64, 64)


def test_stereo_round_trip_through_the_loader_is_bit_exact_on_pixels(stereo):
    from wavdiff_utils.dataset.tensors import tensor_to_pixels

    rows = read_metadata(stereo)
    x = TileDataset(stereo, channels="stereo")[3]["pixel_values"]
    assert np.array_equal(tensor_to_pixels(x[:3]), decode_png16(stereo / rows[3]["file_name"]))
    assert np.array_equal(tensor_to_pixels(x[3:]), decode_png16(stereo / rows[3]["side_file_name"]))


@pytest.fixture(scope="module")
def mono_shards(mono):
    from wavdiff_utils.jobs.shard_writer import write_shards

    write_shards(mono, progress=False)
    return mono / "shards"


@pytest.fixture(scope="module")
def stereo_shards(stereo):
    from wavdiff_utils.jobs.shard_writer import write_shards

    write_shards(stereo, progress=False)
    return stereo / "shards"


def test_mono_shards_are_byte_identical_to_before(mono_shards):
    rec = json.loads(BEFORE.read_text())
    tars = {f"shards/{p.name}": _sha(p) for p in sorted(mono_shards.glob("*.tar"))}
    assert tars == {k: v for k, v in rec.items() if k.endswith(".tar")}


def test_stereo_shards_carry_the_side_tile_and_read_back_as_six_planes(stereo, stereo_shards):
    from wavdiff_utils.dataset.shards import SIDE_EXT, ShardReader, iter_shard_samples

    samples = list(iter_shard_samples(stereo_shards))    # checksums (side.png too) checked
    rows = {r["file_name"]: r for r in read_metadata(stereo)}
    assert len(samples) == len(rows) and SIDE_EXT == "side.png"
    for s in samples[:4]:
        row = rows[s["meta"]["file_name"]]
        assert np.array_equal(s["side_pixels"], decode_png16(stereo / row["side_file_name"]))
    ref = {r["file_name"]: r for r in TileDataset(stereo, channels="stereo")}
    n = 0
    for item in ShardReader(stereo_shards, split=None, channels="stereo"):
        assert torch.equal(item["pixel_values"], ref[item["file_name"]]["pixel_values"])
        n += 1
    assert n == len(rows)
    mid = next(iter(ShardReader(stereo_shards, split=None)))
    assert mid["pixel_values"].shape == (3, 64, 64)


def test_mono_shards_refuse_stereo_in_one_line(mono_shards):
    from wavdiff_utils.dataset.shards import ShardReader

    with pytest.raises(WavdiffError, match="mono shards .*channels='mid'") as info:
        ShardReader(mono_shards, split=None, channels="stereo")          # said when it is made
    assert "\n" not in str(info.value)


def test_a_missing_side_tile_stops_the_shard_writer_naming_it(stereo, tmp_path):
    from wavdiff_utils.jobs.shard_writer import write_shards

    copy = tmp_path / "c"
    shutil.copytree(stereo, copy, ignore=shutil.ignore_patterns("shards"))
    (copy / "duo" / "duo_0002.side.png").unlink()        # after the export listed it
    with pytest.raises(WavdiffError, match="duo_0002.side.png: listed in metadata.jsonl"):
        write_shards(copy, progress=False)


def _parquet(folder: Path) -> Path:
    from wavdiff_utils.dataset.parquet import write_parquet

    write_parquet(folder, progress=False, card=True)
    return folder / "parquet"


def test_mono_parquet_holds_what_it_held_before(mono):
    import pyarrow.parquet as pq

    dest = _parquet(mono)
    rec = json.loads(BEFORE.read_text())
    for p in sorted((dest / "data").glob("*.parquet")):
        t = pq.read_table(p)
        got = {n: hashlib.sha256(json.dumps(t[n].to_pylist(), default=str).encode()).hexdigest()
               for n in t.column_names}
        assert got == rec[f"parquet/data/{p.name}"], p.name
    assert "stereo" not in json.loads((dest / "parquet.json").read_text())


def test_stereo_parquet_has_an_exact_side_column(stereo):
    from wavdiff_utils.dataset.parquet_read import ParquetTiles, iter_parquet_rows, row_pixels

    dest = _parquet(stereo)
    index = json.loads((dest / "parquet.json").read_text())
    assert index["stereo"] is True and "side" in index["columns"]
    assert "`side`" in (dest / "README.md").read_text()
    rows = {r["file_name"]: r for r in read_metadata(stereo)}
    assert index["png_bytes"] == sum((stereo / r[k]).stat().st_size for r in rows.values()
                                     for k in ("file_name", "side_file_name"))   # both tiles
    n = 0
    for row in iter_parquet_rows(dest):
        meta = rows[row["file_name"]]
        assert np.array_equal(row_pixels(row), decode_png16(stereo / meta["file_name"]))
        assert np.array_equal(row_pixels(row, column="side"),
                              decode_png16(stereo / meta["side_file_name"]))
        n += 1
    assert n == len(rows)
    ref = {r["file_name"]: r["pixel_values"] for r in TileDataset(stereo, channels="stereo")}
    tiles = ParquetTiles(dest, split=None, channels="stereo")
    assert len(tiles) == len(rows)
    for i in range(len(tiles)):
        item = tiles[i]
        assert torch.equal(item["pixel_values"], ref[item["file_name"]])
    assert ParquetTiles(dest, split=None)[0]["pixel_values"].shape == (3, 64, 64)


def test_datasets_reads_the_side_column_at_16_bits(stereo, tmp_path):
    datasets = pytest.importorskip("datasets")
    dest = _parquet(stereo)
    ds = datasets.load_dataset(str(dest), split="train", cache_dir=str(tmp_path / "c"))
    ds = ds.with_format("numpy", columns=["tile", "side"], dtype="uint16", output_all_columns=True)
    row = ds[0]
    side = decode_png16(stereo / row["file_name"].replace(".png", ".side.png"))
    assert np.array_equal(row["side"].transpose(1, 2, 0), side)


def test_a_mono_parquet_refuses_stereo_and_mixed_rows_are_null(mono, stereo, tmp_path):
    from wavdiff_utils.dataset.parquet_read import ParquetTiles, iter_parquet_rows

    with pytest.raises(WavdiffError, match="mono export .*channels='mid'"):
        ParquetTiles(_parquet(mono), split=None, channels="stereo")
    mixed = tmp_path / "mixed"
    shutil.copytree(stereo, mixed, ignore=shutil.ignore_patterns("parquet", "shards"))
    lines = (mixed / "metadata.jsonl").read_text().splitlines()
    solo = [json.loads(x) for x in lines]
    for r in solo:
        if r["song"] == "solo":
            r.pop("side_file_name")                    # as a mono song in a stereo library
    (mixed / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in solo))
    dest = _parquet(mixed)
    sides = {r["song"]: r["side"] is None for r in iter_parquet_rows(dest)}
    assert sides == {"duo": False, "solo": True}
    tiles = ParquetTiles(dest, split=None, channels="stereo")
    names = [r["song"] for r in tiles.rows]
    with pytest.raises(WavdiffError, match="has no side tile"):
        tiles[names.index("solo")]


def test_row_audio_decodes_a_stereo_row_to_left_and_right(stereo):
    from wavdiff_utils.codec.metrics import snr_db
    from wavdiff_utils.dataset.parquet_read import iter_parquet_rows, row_audio
    from wavdiff_utils.io.audio import AudioStream

    dest = _parquet(stereo)
    row = next(r for r in iter_parquet_rows(dest) if r["song"] == "duo" and r["tile_index"] == 10)
    lr = row_audio(row, channels="stereo")
    with AudioStream(stereo.parent / "in" / "duo.wav", sample_rate=44100, mono=False) as s:
        src = np.concatenate(list(s))[row["start_sample"]:row["end_sample"]]
    assert lr.shape == src.shape == (row["end_sample"] - row["start_sample"], 2)
    assert min(snr_db(src[:, c], lr[:, c]) for c in (0, 1)) > 30   # one tile alone: edges cost
    from wavdiff_utils.codec.transform import decode_array
    from wavdiff_utils.io.tiles import read_tile

    side_tile = read_tile(stereo / "duo" / "duo_0010.side.png")      # decoded with its own codec
    own = decode_array([side_tile.pixels], CodecParams.from_dict(side_tile.metadata["codec"]),
                       n_samples=len(lr))
    assert np.allclose((lr[:, 0] - lr[:, 1]) / 2, own, atol=1e-6)
    assert np.array_equal(row_audio(row), (lr[:, 0] + lr[:, 1]) / 2) or \
        np.allclose(row_audio(row), (lr[:, 0] + lr[:, 1]) / 2, atol=1e-6)
    mono_row = {**row, "side": None}
    with pytest.raises(WavdiffError, match="no 'side' tile"):
        row_audio(mono_row, channels="stereo")


MUSIC = Path(__file__).resolve().parents[2] / "outputs" / "music"


@pytest.mark.skipif(not (MUSIC / "derived" / "loud_stereo_44k.mp3").is_file()
                    or not any(MUSIC.glob("*.ogg")),
                    reason="no real music in outputs/music (scripts/fetch_music.py)")
def test_real_stereo_music_is_bit_exact_through_every_format(tmp_path):
    """30 s (from 0:30) of a real stereo song and of the loud MP3 (samples beyond +-1), 256 px
    stereo tiles: the loader, the datasets loader, the shards and the Parquet export each give
    the PNGs' mid and side planes bit for bit."""
    from wavdiff_utils.dataset.shards import ShardReader
    from wavdiff_utils.dataset.tensors import tensor_to_pixels
    from wavdiff_utils.io.audio import load_audio
    from wavdiff_utils.jobs.shard_writer import write_shards

    (tmp_path / "in").mkdir()
    for src in (sorted(MUSIC.glob("*.ogg"))[-1], MUSIC / "derived" / "loud_stereo_44k.mp3"):
        y = load_audio(src, sample_rate=44100, mono=False)[30 * 44100:60 * 44100]
        assert y.shape[1] == 2 and (src.suffix == ".ogg" or np.abs(y).max() > 1)
        sf.write(tmp_path / "in" / f"{src.stem}.wav", y, 44100, subtype="FLOAT")
    out = tmp_path / "out"
    assert encode_batch(tmp_path / "in", out, params=CodecParams(size=256, channels="stereo"),
                        progress=False).ok
    export_dataset(out)
    write_shards(out, progress=False)
    rows = {r["file_name"]: r for r in read_metadata(out)}
    assert len(rows) > 40 and all("side_file_name" in r for r in rows.values())
    by_tile = {(r["song"], r["tile_index"]): n for n, r in rows.items()}

    def exact(name: str, x: torch.Tensor) -> None:
        assert x.shape == (6, 256, 256), name
        assert np.array_equal(tensor_to_pixels(x[:3]), decode_png16(out / name)), name
        assert np.array_equal(tensor_to_pixels(x[3:]),
                              decode_png16(out / rows[name]["side_file_name"])), name

    readers = {"TileDataset": TileDataset(out, channels="stereo"),
               "ShardReader": ShardReader(out / "shards", split=None, channels="stereo"),
               "ParquetTiles": _parquet_tiles(out),
               "load_tile_dataset": load_tile_dataset(out, channels="stereo",
                                                      cache_dir=str(tmp_path / "cache"))}
    for label, reader in readers.items():
        seen = set()
        items = (reader[i] for i in range(len(reader))) if hasattr(reader, "__getitem__") else reader
        for item in items:                   # datasets' imagefolder turns file_name into image
            name = item.get("file_name") or by_tile[item["song"], int(item["tile_index"])]
            exact(name, item["pixel_values"])
            seen.add(name)
        assert seen == set(rows), label


def _parquet_tiles(folder: Path):
    from wavdiff_utils.dataset.parquet_read import ParquetTiles

    return ParquetTiles(_parquet(folder), split=None, channels="stereo")
