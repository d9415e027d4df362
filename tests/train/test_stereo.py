"""Stereo training (issue 26): a stereo dataset's mid and side tiles as 6 planes (or the two
magnitudes), samples written as mid and side tiles that decode to stereo files; mono runs as
before; a mono dataset asked for stereo, a changed stereo setting on resume, and missing or
damaged side tiles are one line naming them."""
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.train.conftest import TINY
from tests.train.test_train import SMALL
from wavdiff_utils import decode_batch
from wavdiff_utils.dataset.export import METADATA_NAME, export_dataset, read_metadata
from wavdiff_utils.dataset.loader import TileDataset
from wavdiff_utils.dataset.tensors import pixels_to_tensor
from wavdiff_utils.errors import OutputConflictError, WavdiffError
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.io.png16 import decode_png16
from wavdiff_utils.io.tiles import read_tile, read_tile_metadata, side_tile_of
from wavdiff_utils.train.config import TrainConfig, check_resumable
from wavdiff_utils.train.data import (TrainDataError, TrainTiles, build_demo_dataset,
                                      model_to_tile, scan_dataset, shard_tiles, tile_to_model)
from wavdiff_utils.train.loop import train
from wavdiff_utils.train.model import MODEL_META, load_model
from wavdiff_utils.train.sample import sample_tiles
from tests.train.test_data import _one_line


@pytest.fixture(scope="module")
def stereo(tmp_path_factory):
    """The tiny demo dataset encoded in stereo (a side tile beside each tile), read in stereo."""
    return build_demo_dataset(tmp_path_factory.mktemp("stereo") / "ds", stereo=True, **TINY)


@pytest.fixture(scope="module")
def run(stereo, tmp_path_factory):
    """Three steps of a stereo run (6 planes) with a small UNet."""
    out = tmp_path_factory.mktemp("stereo_run")
    return train(TrainConfig(data=str(stereo.root), output=str(out), steps=3, stereo=True,
                             **SMALL), progress=False)


def _copy(src, dest):
    shutil.copytree(src, dest)
    return dest


# --------------------------------------------------------------------------- data

def test_a_stereo_dataset_reads_as_mid_then_side_planes_bit_exactly(stereo):
    assert stereo.stereo and stereo.params.stereo and "stereo" in stereo.summary()
    rows = stereo.rows["train"]
    assert all(r["side_file_name"] == r["file_name"][:-4] + ".side.png" for r in rows)
    loader = TileDataset(stereo.root, channels="stereo")          # the 16-bit loader's tensors
    by_name = {r["file_name"]: k for k, r in enumerate(loader.rows)}
    six = TrainTiles(stereo, "train")
    two = TrainTiles(stereo, "train", planes="magnitude")
    for k in (0, len(rows) - 1):
        ref = loader[by_name[rows[k]["file_name"]]]["pixel_values"]
        x = six[k]["pixel_values"]
        assert x.shape == (6, 32, 32) and torch.equal(x, ref)
        side = pixels_to_tensor(decode_png16(stereo.root / rows[k]["side_file_name"]))
        assert torch.equal(x[3:], side)
        assert torch.equal(two[k]["pixel_values"], ref[[0, 3]])
    cropped = TrainTiles(stereo, "train", crop=16, seed=1)[2]["pixel_values"]
    whole = six[2]["pixel_values"]
    assert cropped.shape == (6, 32, 16)
    assert any(torch.equal(cropped, whole[:, :, o:o + 16]) for o in range(17))


def test_a_stereo_dataset_read_without_stereo_is_its_mid_tiles_with_a_note(stereo):
    mono = scan_dataset(stereo.root)
    assert not mono.stereo and not mono.params.stereo and mono.params == stereo.params.tile_codec()
    assert any("stereo=True trains on both" in n for n in mono.notes)
    assert "stereo" not in mono.summary()
    x = TrainTiles(mono, "train")[0]["pixel_values"]
    assert x.shape == (3, 32, 32)
    assert torch.equal(x, TrainTiles(stereo, "train")[0]["pixel_values"][:3])


def test_mono_datasets_are_read_as_before(tiny):
    assert not tiny.stereo and not tiny.params.stereo
    assert not any("stereo" in n for n in tiny.notes) and "stereo" not in tiny.summary()
    assert TrainConfig().stereo is False and TrainConfig().model_planes == 3
    assert TrainConfig(planes="magnitude").model_planes == 1
    assert TrainConfig(stereo=True).model_planes == 6
    assert TrainConfig(stereo=True, planes="magnitude").model_planes == 2


def test_stereo_tensors_to_tiles_and_back():
    rng = np.random.default_rng(0)
    mid, side = (rng.integers(0, 65536, size=(16, 24, 3), dtype=np.uint16) for _ in range(2))
    x = tile_to_model(mid, "all", side)
    assert x.shape == (6, 16, 24) and torch.equal(model_to_tile(x), x)
    m = tile_to_model(mid, "magnitude", side)
    assert m.shape == (2, 16, 24)
    t = model_to_tile(m[None], "magnitude")
    assert t.shape == (1, 6, 16, 24)
    assert torch.equal(t[0, 0], m[0]) and torch.equal(t[0, 3], m[1])
    assert not t[0, [1, 2, 4, 5]].any()                  # flat phase: the decode rebuilds it
    one = tile_to_model(mid, "magnitude")               # mono magnitude: as before
    assert torch.equal(model_to_tile(one, "magnitude"),
                       torch.cat([one, torch.zeros(2, 16, 24)]))


def test_stereo_shards_stream_the_same_six_planes(stereo, tmp_path):
    pytest.importorskip("webdataset")
    from wavdiff_utils.jobs.shard_writer import write_shards

    sh = tmp_path / "sh"
    write_shards(stereo.root, sh, shard_size=16, progress=False)
    src = scan_dataset(sh, stereo=True)
    assert src.kind == "shards" and src.stereo and src.params == stereo.params
    ref = TrainTiles(stereo, "train")
    items = list(shard_tiles(src, "train", seed=3, shuffle_buffer=4))
    assert len(items) == len(ref)
    for item in items[:5]:
        assert torch.equal(item["pixel_values"], ref[item["index"]]["pixel_values"])
    assert not scan_dataset(sh).stereo                    # mono readers: the mid tiles
    r = train(TrainConfig(data=str(sh), output=str(tmp_path / "run"), steps=2, stereo=True,
                          **SMALL), progress=False)
    assert r.steps == 2 and load_model(r.model_dir).unet.config.in_channels == 6


# --------------------------------------------------------------------------- training

def test_a_stereo_run_samples_mid_and_side_tiles_that_decode_to_stereo_files(run, stereo,
                                                                              tmp_path):
    model = load_model(run.model_dir)
    assert model.stereo and model.channels == 6 and model.unet.config.in_channels == 6
    meta = json.loads((run.model_dir / MODEL_META).read_text())
    assert meta["stereo"] is True and CodecParams.from_dict(meta["codec"]).stereo
    assert json.loads((run.output / "train_config.json").read_text())["stereo"] is True
    assert np.isfinite(run.val_loss) and "mid and side" in run.summary()
    s = sample_tiles(model, tmp_path / "samples", n=2, steps=3, progress=False)
    assert "stereo" in s.summary()
    assert sorted(p.name for p in s.folder.iterdir()) == [
        "sample_0000.png", "sample_0000.side.png", "sample_0001.png", "sample_0001.side.png"]
    p = stereo.params
    for path in s.paths:
        assert read_tile_metadata(path)["codec"] == p.tile_codec().to_dict()
        side = read_tile_metadata(side_tile_of(path))
        assert side["channel"] == "side" and side["codec"] == p.side_codec().to_dict()
    decoded = decode_batch(s.folder, tmp_path / "decoded", join="none", peak="normalize",
                           progress=False)
    assert decoded.ok and [r.song for r in decoded.results] == ["sample_0000", "sample_0001"]
    for r in decoded.results:
        info = sf.info(r.output)
        assert info.channels == 2 and info.frames == p.tile_samples


def test_magnitude_only_stereo_gets_flat_phase_in_both_tiles_and_decodes(stereo, tmp_path):
    r = train(TrainConfig(data=str(stereo.root), output=str(tmp_path), steps=2, stereo=True,
                          planes="magnitude", use_ema=False, **SMALL), progress=False)
    model = load_model(r.output)
    assert model.unet.config.in_channels == 2 and model.planes == "magnitude" and model.stereo
    s = sample_tiles(model, tmp_path / "samples", n=1, steps=3, progress=False)
    for path in (s.paths[0], side_tile_of(s.paths[0])):
        px = read_tile(path).pixels
        assert np.all(px[..., 1:] == 32768) and px[..., 0].std() > 0
    decoded = decode_batch(s.folder, tmp_path / "decoded", join="none", progress=False)
    assert decoded.ok and sf.info(decoded.results[0].output).channels == 2
    assert decoded.results[0].tiles[0].method != "image"


def test_a_mono_run_records_mono_and_an_older_model_loads_as_mono(tiny, tmp_path):
    r = train(TrainConfig(data=str(tiny.root), output=str(tmp_path), steps=1, use_ema=False,
                          **SMALL), progress=False)
    meta_path = r.model_dir / MODEL_META
    meta = json.loads(meta_path.read_text())
    assert meta["stereo"] is False and meta["codec"] == tiny.params.to_dict()
    del meta["stereo"]                                    # a model saved before stereo existed
    meta_path.write_text(json.dumps(meta))
    model = load_model(r.model_dir)
    assert not model.stereo and model.channels == 3
    s = sample_tiles(model, tmp_path / "samples", n=1, steps=2, progress=False)
    assert [p.name for p in s.folder.iterdir()] == ["sample_0000.png"]
    meta["stereo"] = True                                 # says 6 planes, its UNet takes 3
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(WavdiffError) as e:
        load_model(r.model_dir)
    _one_line(e, meta_path, "damaged")


# --------------------------------------------------------------------------- refusals

def test_a_mono_dataset_asked_for_stereo_is_one_line(tiny, tmp_path, capsys):
    with pytest.raises(TrainDataError) as e:
        scan_dataset(tiny.root, stereo=True)
    _one_line(e, tiny.root, "mono dataset", "channels: stereo", "stereo=False")
    with pytest.raises(TrainDataError) as e:
        train(TrainConfig(data=str(tiny.root), output=str(tmp_path / "run"), stereo=True),
              progress=False)
    _one_line(e, "mono dataset")
    assert not (tmp_path / "run").exists()
    from wavdiff_utils.train.loop import main

    rc = main(["--set", "data", str(tiny.root), "--set", "output", str(tmp_path / "run"),
               "--set", "stereo", "true"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "mono dataset" in err


def test_mono_shards_asked_for_stereo_are_one_line(tiny, tmp_path):
    pytest.importorskip("webdataset")
    from wavdiff_utils.jobs.shard_writer import write_shards

    write_shards(tiny.root, tmp_path / "sh", shard_size=16, progress=False)
    with pytest.raises(TrainDataError) as e:
        scan_dataset(tmp_path / "sh", stereo=True)
    _one_line(e, "mono shards", "side.png", "stereo=False")


@pytest.mark.parametrize("value", ["yes", 2, None])
def test_stereo_must_be_true_or_false(value):
    with pytest.raises(WavdiffError) as e:
        TrainConfig(stereo=value)
    _one_line(e, "stereo", repr(value))


def test_resuming_with_another_stereo_setting_is_refused(run, stereo, tmp_path):
    out = _copy(run.output, tmp_path / "run")
    cfg = TrainConfig(data=str(stereo.root), output=str(out), steps=4, stereo=False, **SMALL)
    with pytest.raises(OutputConflictError) as e:
        train(cfg, progress=False)
    _one_line(e, out, "stereo=True", "not False", "restart")
    again = train(cfg.replace(stereo=True), progress=False)      # the same setting goes on
    assert again.resumed_from == "checkpoint-000003" and again.steps == 4
    older = {**TrainConfig().to_dict(), "codec": CodecParams(size=32).to_dict()}
    del older["stereo"]                                   # a run saved before stereo: mono
    assert check_resumable(older, TrainConfig(), tmp_path, codec=older["codec"]) == []
    with pytest.raises(OutputConflictError) as e:
        check_resumable(older, TrainConfig(stereo=True), tmp_path)
    _one_line(e, "stereo=False", "not True")


# --------------------------------------------------------------------------- hostile input

def _first_train_side(ds, *, last: bool = False):
    rows = [r for r in read_metadata(ds) if r["split"] == "train"]
    row = rows[-1 if last else 0]
    return row, ds / row["side_file_name"]


def test_a_missing_side_tile_is_one_line_naming_it(stereo, tmp_path):
    ds = _copy(stereo.root, tmp_path / "ds")
    row, side = _first_train_side(ds)
    side.unlink()
    with pytest.raises(TrainDataError) as e:
        scan_dataset(ds, stereo=True)
    _one_line(e, "1 of", "side tile(s)", "missing", row["side_file_name"])
    assert not scan_dataset(ds).stereo                    # mono readers do not need it


def test_rows_without_side_tiles_in_a_stereo_dataset_are_one_line(stereo, tmp_path):
    ds = _copy(stereo.root, tmp_path / "ds")
    rows = read_metadata(ds)
    rows[1].pop("side_file_name")
    (ds / METADATA_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TrainDataError) as e:
        scan_dataset(ds, stereo=True)
    _one_line(e, "1 of", "no side tile", rows[1]["file_name"])


@pytest.mark.parametrize("damage, words", [
    ("garbage", ["is not a PNG"]),
    ("eight_bit", ["side tile(s) are 8-bit"]),
    ("small", ["a side tile of 16x32 px", "its mid tile 32x32"]),
])
def test_a_damaged_side_tile_is_refused_before_training(stereo, tmp_path, damage, words):
    import cv2

    ds = _copy(stereo.root, tmp_path / "ds")
    _, side = _first_train_side(ds)
    px = decode_png16(side)
    if damage == "garbage":
        side.write_bytes(b"not a png at all" * 8)
    elif damage == "eight_bit":
        cv2.imwrite(str(side), (px >> 8).astype(np.uint8)[..., ::-1])
    else:
        cv2.imwrite(str(side), px[:, :16, ::-1].copy())
    with pytest.raises(TrainDataError) as e:
        train(TrainConfig(data=str(ds), output=str(tmp_path / "run"), stereo=True, **SMALL),
              progress=False)
    _one_line(e, side.name, *words)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_side_tile_cut_short_is_one_line_naming_it_while_training(stereo, tmp_path, workers):
    ds = _copy(stereo.root, tmp_path / "ds")
    _, side = _first_train_side(ds, last=True)            # not a probe tile: read in the loop
    data = side.read_bytes()
    side.write_bytes(data[:len(data) // 2])               # the header is whole: found on reading
    cfg = TrainConfig(data=str(ds), output=str(tmp_path / "run"), stereo=True, steps=20,
                      **{**SMALL, "num_workers": workers, "checkpoint_every": 0})
    with pytest.raises(WavdiffError) as e:
        train(cfg, progress=False)
    _one_line(e, side.name)


def test_a_side_tile_of_another_codec_is_one_line(stereo, tmp_path):
    from wavdiff_utils.io.tiles import write_tile

    ds = _copy(stereo.root, tmp_path / "ds")
    row = read_metadata(ds)[0]
    side = ds / row["side_file_name"]
    tile = read_tile(side)
    meta = {**tile.metadata, "codec": {**tile.metadata["codec"], "db_min": -80.0}}
    write_tile(side, tile.pixels, meta)
    with pytest.raises(TrainDataError) as e:
        scan_dataset(ds, stereo=True)
    _one_line(e, side, "db_min=-80.0")


def test_a_stereo_shard_sample_without_its_side_tile_is_one_line(stereo, tmp_path):
    pytest.importorskip("webdataset")
    from wavdiff_utils.jobs.shard_writer import write_shards

    ds = _copy(stereo.root, tmp_path / "ds")
    rows = read_metadata(ds)
    train_rows = [r for r in rows if r["split"] == "train"]
    gone = train_rows[len(train_rows) // 2]
    gone.pop("side_file_name")                            # its shard sample gets no side.png
    (ds / METADATA_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_shards(ds, tmp_path / "sh", shard_size=64, progress=False)
    src = scan_dataset(tmp_path / "sh", stereo=True)       # the first sample has its side tile
    with pytest.raises(TrainDataError) as e:
        list(shard_tiles(src, "train", shuffle_buffer=4))
    _one_line(e, "side.png", "stereo=False", ".tar")


def test_songs_encoded_mono_and_stereo_in_one_dataset(stereo, tiny, tmp_path):
    """Mid tiles are mono tiles either way: such a dataset trains mono; stereo names a tile
    without its side tile."""
    ds = _copy(stereo.root, tmp_path / "ds")
    song = next(p for p in ds.iterdir() if p.is_dir())
    shutil.rmtree(song)
    shutil.copytree(tiny.root / song.name, song)           # the same song, encoded mono
    with pytest.warns(UserWarning, match="2 different codec parameter sets"):
        export_dataset(ds, splits=(("train", 0.75), ("validation", 0.25)))
    mono = scan_dataset(ds)
    assert mono.params == tiny.params and not mono.stereo
    with pytest.raises(TrainDataError) as e:
        scan_dataset(ds, stereo=True)
    _one_line(e, "have no side tile", song.name)


@pytest.mark.parametrize("value", ["stereo", "mono"])
def test_channels_set_to_a_channel_layout_points_to_stereo(value):
    """07_train's ``channels`` is the UNet's widths; a user who sets it to "stereo" (as in
    01_encode) is told which setting learns a stereo dataset."""
    with pytest.raises(WavdiffError) as info:
        TrainConfig(channels=value)
    _one_line(info, "channels must be a list of positive integers", repr(value),
              "stereo=True")
