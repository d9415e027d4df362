"""Training data: exact 16-bit tensors, crops that never resize, one-line errors for bad datasets."""
import json
import sys

import cv2
import numpy as np
import pytest
import torch

from tests.audio_fixtures import music_like, write
from wavdiff_utils import encode_batch, export_dataset
from wavdiff_utils.dataset.export import METADATA_NAME
from wavdiff_utils.io.png16 import decode_png16
from wavdiff_utils.dataset.tensors import tensor_to_pixels
from wavdiff_utils.errors import BadParameterError, MissingInputError, OutputConflictError
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.train.config import (MissingExtraError, TrainConfig, check_resumable,
                                        require_training)
from wavdiff_utils.train.data import (EpochSampler, TrainDataError, TrainTiles, crop_offset,
                                      model_to_tile, scan_dataset, shard_tiles, tile_to_model)


def _one_line(exc_info, *names):
    msg = str(exc_info.value)
    assert "\n" not in msg and msg.strip()
    for n in names:
        assert str(n) in msg, msg
    return msg


# --------------------------------------------------------------------------- tensors

@pytest.mark.parametrize("planes", ["all", "magnitude"])
def test_pixels_map_to_minus_one_one_and_back_bit_exactly(planes):
    rng = np.random.default_rng(0)
    px = rng.integers(0, 65536, size=(32, 48, 3), dtype=np.uint16)
    px[0, 0] = 0
    px[0, 1] = 65535
    x = tile_to_model(px, planes)
    assert x.dtype == torch.float32 and x.shape == ((3 if planes == "all" else 1), 32, 48)
    assert x.min() == -1.0 and x.max() == 1.0
    back = tensor_to_pixels(model_to_tile(x, planes))
    if planes == "all":
        assert np.array_equal(back, px)
    else:                                        # magnitude exact; phase planes flat (cos = sin = 0)
        assert np.array_equal(back[..., 0], px[..., 0])
        assert np.all(back[..., 1:] == 32768)


def test_training_items_are_time_crops_of_the_exact_tile_at_full_height(tiny):
    ds = TrainTiles(tiny, "train", crop=16, seed=3)
    whole = TrainTiles(tiny, "train", seed=3)
    assert len(ds) == tiny.count("train") > 8
    offsets = set()
    for epoch in (0, 1):
        ds.use_epoch(epoch)
        for i in range(6):
            item = ds[i]
            x = item["pixel_values"]
            assert x.shape == (3, tiny.height, 16)            # full height: no bin moved
            off = crop_offset(tiny.width, 16, seed=3, epoch=epoch, index=i)
            assert torch.equal(x, whole[i]["pixel_values"][:, :, off:off + 16])
            assert np.array_equal(tensor_to_pixels(x), decode_png16(
                tiny.root / tiny.rows["train"][i]["file_name"])[:, off:off + 16])
            offsets.add((epoch, i, off))
    assert len({o for _, _, o in offsets}) > 1                # crops move within and across epochs
    again = TrainTiles(tiny, "train", crop=16, seed=3)
    again.use_epoch(1)
    assert torch.equal(again[2]["pixel_values"], ds[2]["pixel_values"])   # a function of (seed, epoch, index)


def test_epoch_order_depends_only_on_seed_and_epoch():
    a, b = EpochSampler(20, seed=1), EpochSampler(20, seed=1)
    first = list(a)
    a.use_epoch(1)
    second = list(a)
    b.use_epoch(1)
    assert sorted(first) == list(range(20)) and first != second and list(b) == second


def test_demo_dataset_has_a_validation_split_and_one_codec(tiny):
    assert tiny.kind == "imagefolder" and tiny.count("validation") > 0 and tiny.count("train") > 0
    assert tiny.params == CodecParams(size=32, sample_rate=22050) and (tiny.height, tiny.width) == (32, 32)
    assert tiny.captioned("train") == tiny.count("train")      # metadata captions on every tile
    assert "train" in tiny.summary() and "validation" in tiny.summary()


# --------------------------------------------------------------------------- bad datasets

def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(MissingInputError) as e:
        scan_dataset(tmp_path / "nope")
    _one_line(e, tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(TrainDataError) as e:
        scan_dataset(tmp_path / "file.png")
    _one_line(e, "file.png", "is a file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainDataError) as e:
        scan_dataset(tmp_path / "empty")
    msg = _one_line(e, "empty", "python -m wavdiff_utils")
    assert "--channels stereo" not in msg
    for folder, kind in ((tmp_path / "nope", MissingInputError), (tmp_path / "empty", TrainDataError)):
        with pytest.raises(kind) as e:            # a stereo run is told how to make a stereo one
            scan_dataset(folder, stereo=True)
        _one_line(e, folder, f"--output {folder} --channels stereo`")


def _encode(tmp_path, name, params, seconds=0.3, seed=1):
    src = tmp_path / f"{name}_src"
    src.mkdir(exist_ok=True)
    write(src / f"{name}.wav", music_like(seconds, params.sample_rate, seed=seed), params.sample_rate)
    assert encode_batch(src, tmp_path / "ds", params=params, progress=False).ok


def test_tiles_without_metadata_are_told_how_to_export(tmp_path):
    _encode(tmp_path, "a", CodecParams(size=32))
    with pytest.raises(TrainDataError) as e:
        scan_dataset(tmp_path / "ds")
    _one_line(e, METADATA_NAME, "export_dataset")


def test_eight_bit_tiles_are_refused(tmp_path):
    _encode(tmp_path, "a", CodecParams(size=32))
    export_dataset(tmp_path / "ds")
    tile = tmp_path / "ds" / "a" / "a_0001.png"
    px = decode_png16(tile)
    cv2.imwrite(str(tile), np.ascontiguousarray((px >> 8).astype(np.uint8)[..., ::-1]))  # 8-bit copy
    with pytest.raises(TrainDataError) as e:
        scan_dataset(tmp_path / "ds")
    _one_line(e, "8-bit", "a/a_0001.png")


def test_mixed_tile_sizes_are_refused(tmp_path):
    _encode(tmp_path, "a", CodecParams(size=32))
    _encode(tmp_path, "b", CodecParams(size=64), seed=2)
    with pytest.warns(UserWarning, match="different codec"):
        export_dataset(tmp_path / "ds")
    with pytest.raises(TrainDataError) as e:
        scan_dataset(tmp_path / "ds")
    msg = _one_line(e, "2 sizes", "32x32", "64x64")
    assert "b/b_0000.png" in msg or "a/a_0000.png" in msg


def test_mixed_codecs_of_one_size_are_refused(tmp_path):
    _encode(tmp_path, "a", CodecParams(size=32))
    _encode(tmp_path, "b", CodecParams(size=32, sample_rate=22050), seed=2)
    with pytest.warns(UserWarning):
        export_dataset(tmp_path / "ds")
    with pytest.raises(TrainDataError) as e:
        scan_dataset(tmp_path / "ds")
    _one_line(e, "sample_rate", "44100", "22050")


def test_missing_tiles_and_no_training_split(tmp_path):
    _encode(tmp_path, "a", CodecParams(size=32))
    export_dataset(tmp_path / "ds", splits=(("validation", 1.0),))
    with pytest.raises(TrainDataError) as e:
        scan_dataset(tmp_path / "ds")
    _one_line(e, "split 'train'", "validation")
    export_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "a" / "a_0000.png").unlink()
    rows = (tmp_path / "ds" / METADATA_NAME).read_text()
    assert "a_0000.png" in rows                                   # listed, but gone
    with pytest.raises(TrainDataError) as e:
        scan_dataset(tmp_path / "ds")
    _one_line(e, "missing", "a/a_0000.png")


def test_missing_diffusers_names_the_extra(tiny, tmp_path, monkeypatch):
    from wavdiff_utils.train.loop import train

    monkeypatch.setitem(sys.modules, "diffusers", None)           # `import diffusers` fails
    with pytest.raises(MissingExtraError) as e:
        train(TrainConfig(data=str(tiny.root), output=str(tmp_path)))
    _one_line(e, "diffusers", "pip install -e '.[train]'")
    assert isinstance(e.value, ImportError) and not any(tmp_path.iterdir())
    with pytest.raises(MissingExtraError):
        require_training()


# --------------------------------------------------------------------------- settings

@pytest.mark.parametrize("change, words", [
    ({"planes": "phase"}, ["planes", "magnitude"]),
    ({"channels": [16, 0]}, ["channels"]),
    ({"channels": [16, 32], "attention": [True]}, ["attention", "2"]),
    ({"channels": [12, 24]}, ["norm_groups", "12"]),
    ({"steps": 0}, ["steps", ">= 1"]),
    ({"caption_dropout": 1.5}, ["caption_dropout"]),
])
def test_bad_settings_name_the_setting(change, words):
    with pytest.raises(BadParameterError) as e:
        TrainConfig(**change)
    _one_line(e, *words)


def test_settings_from_a_yaml_file_and_a_notebook_namespace():
    from wavdiff_utils.codec.params import load_yaml_params

    gpu = TrainConfig.from_mapping(load_yaml_params("params/train_gpu.yaml"))
    assert gpu.steps >= 10000 and gpu.mixed_precision in ("auto", "bf16", "fp16")
    assert gpu.crop_frames % gpu.down_factor == 0
    nb = TrainConfig.from_mapping({"steps": 7, "seed": 3, "In": [], "plt": object()})
    assert (nb.steps, nb.seed, nb.planes) == (7, 3, "all")


def test_resuming_with_another_model_is_refused(tmp_path):
    saved = {**TrainConfig(channels=(16, 32)).to_dict(), "codec": CodecParams(size=32).to_dict()}
    with pytest.raises(OutputConflictError) as e:
        check_resumable(saved, TrainConfig(channels=(16, 64)), tmp_path)
    _one_line(e, "channels", "restart")
    with pytest.raises(OutputConflictError) as e:
        check_resumable(saved, TrainConfig(channels=(16, 32)), tmp_path,
                        codec=CodecParams(size=64).to_dict())
    _one_line(e, "size", "32", "64")
    notes = check_resumable(saved, TrainConfig(channels=(16, 32), batch_size=3), tmp_path,
                            codec=saved["codec"])
    assert len(notes) == 1 and "batch_size" in notes[0]


# --------------------------------------------------------------------------- shards

def _shards(folder, dest, size):
    pytest.importorskip("webdataset")
    from wavdiff_utils.jobs.shard_writer import write_shards

    write_shards(folder, dest, shard_size=size, progress=False)
    return dest


@pytest.mark.parametrize("shard_size", [8, 48])     # 8 even shards; 48 + 16: shared by samples
def test_each_loader_worker_decodes_only_its_own_shard_samples(tiny, tmp_path, monkeypatch,
                                                               shard_size):
    import types

    import wavdiff_utils.train.data as shards     # where the shard reader's decode is called

    src = scan_dataset(_shards(tiny.root, tmp_path / "sh", shard_size))
    assert src.kind == "shards" and src.params == tiny.params and (src.height, src.width) == (32, 32)
    assert src.captioned("train") == src.looked["train"][0] > 0     # metadata captions
    n = tiny.count("train")
    ref = TrainTiles(tiny, "train", seed=3)
    decoded = []
    real_decode = shards.decode_sample
    monkeypatch.setattr(shards, "decode_sample", lambda raw: decoded.append(raw["__key__"])
                        or real_decode(raw))
    seen = []
    for wid in (0, 1):                          # what two DataLoader workers each read
        monkeypatch.setattr(torch.utils.data, "get_worker_info",
                            lambda wid=wid: types.SimpleNamespace(id=wid, num_workers=2))
        decoded.clear()
        items = list(shard_tiles(src, "train", seed=3, shuffle_buffer=4))
        assert len(decoded) == len(items) and abs(len(items) - n / 2) <= n / 8
        seen += [i["index"] for i in items]
        for item in items:                      # the index names the tile: the same pixels
            assert torch.equal(item["pixel_values"], ref[item["index"]]["pixel_values"])
            assert item["text"] == tiny.rows["train"][item["index"]]["text"]
    assert sorted(seen) == list(range(n))       # every sample once, by one worker


def test_training_from_shards_with_two_loader_workers(tiny, tmp_path):
    from torch.utils.data import DataLoader

    from wavdiff_utils.train.loop import train
    from wavdiff_utils.train.data import collate

    src = scan_dataset(_shards(tiny.root, tmp_path / "sh", 8))
    ds = shard_tiles(src, "train", crop=16, seed=3, shuffle_buffer=8)
    orders = []
    for epoch in (0, 1):
        ds.use_epoch(epoch)
        batches = list(DataLoader(ds, batch_size=8, collate_fn=collate, num_workers=2))
        orders.append([k for b in batches for k in b["index"]])
        assert all(b["pixel_values"].shape[1:] == (3, 32, 16) for b in batches)
    n = tiny.count("train")
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(n)) and orders[0] != orders[1]
    probe = list(shard_tiles(src, "train", seed=3, fixed=True, limit=4))
    assert [i["index"] for i in probe] == [0, 1, 2, 3]
    r = train(TrainConfig(data=str(src.root), output=str(tmp_path / "run"), steps=2, channels=(8, 16),
                          crop_frames=16, num_workers=2, eval_timesteps=2, val_max_tiles=8),
              progress=False)
    assert r.steps == 2 and (r.model_dir / "unet").is_dir() and np.isfinite(r.val_loss)


def test_shards_without_captions_or_with_8_bit_samples_are_refused(tiny, tmp_path):
    import shutil

    from wavdiff_utils.train.loop import train

    ds = tmp_path / "ds"
    shutil.copytree(tiny.root, ds)
    meta = ds / METADATA_NAME
    rows = [{**json.loads(line), "text": ""} for line in meta.read_text().splitlines()]
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sh = _shards(ds, tmp_path / "sh", 16)
    with pytest.raises(TrainDataError) as e:
        train(TrainConfig(data=str(sh), output=str(tmp_path / "run"), conditioning="caption"))
    _one_line(e, "caption", "first")
    first = next(r for r in rows if r["split"] == "train")
    px = decode_png16(ds / first["file_name"])
    cv2.imwrite(str(ds / first["file_name"]), ((px >> 8) * 257).astype(np.uint16)[..., ::-1])
    _shards(ds, sh, 16)
    with pytest.raises(TrainDataError) as e:
        scan_dataset(sh)
    _one_line(e, "8-bit", first["song"])
