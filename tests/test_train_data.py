"""Training data: exact 16-bit tensors, crops that never resize, one-line errors for bad datasets."""
import json
import sys

import cv2
import numpy as np
import pytest
import torch

from audio_fixtures import music_like, write
from wavdiff_utils import encode_batch, export_dataset
from wavdiff_utils.dataset import METADATA_NAME, decode_png16, tensor_to_pixels
from wavdiff_utils.errors import BadParameterError, MissingInputError, OutputConflictError
from wavdiff_utils.params import CodecParams
from wavdiff_utils.train_config import (MissingExtraError, TrainConfig, check_resumable,
                                        require_training)
from wavdiff_utils.train_data import (EpochSampler, TrainDataError, TrainTiles, build_demo_dataset,
                                      crop_offset, model_to_tile, scan_dataset, shard_tiles,
                                      tile_to_model)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The demo dataset, small: the sample's first 2 s as 32x32 tiles, four songs, one in validation."""
    return build_demo_dataset(tmp_path_factory.mktemp("train") / "ds", size=32, seconds=2.0)


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
    _one_line(e, "empty", "python -m wavdiff_utils")


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
    from wavdiff_utils.train import train

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
    from wavdiff_utils.params import load_yaml_params

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


# --------------------------------------------------------------------------- shards (the contract)

def test_shard_folders_are_read_through_iter_shard_samples(tiny, tmp_path, monkeypatch):
    """A shard folder (shards.json) is read through wavdiff_utils.shards.iter_shard_samples, whose
    contract is stood in for here: dicts with key, uint16 RGB pixels, meta, caption and split."""
    import types

    rows = [r for rows in tiny.rows.values() for r in rows]
    meta = {"codec": tiny.params.to_dict()}

    def iter_shard_samples(folder, *, split=None):
        for r in rows:
            if split is None or r["split"] == split:
                yield {"key": r["file_name"][:-4], "pixels": decode_png16(tiny.root / r["file_name"]),
                       "meta": meta, "caption": r["text"], "split": r["split"]}

    monkeypatch.setitem(sys.modules, "wavdiff_utils.shards",
                        types.SimpleNamespace(iter_shard_samples=iter_shard_samples))
    (tmp_path / "shards.json").write_text(json.dumps({"shards": []}))
    src = scan_dataset(tmp_path)
    assert src.kind == "shards" and src.params == tiny.params and (src.height, src.width) == (32, 32)
    ds = shard_tiles(src, "train", crop=16, seed=3, fixed=True)
    items = list(ds)
    assert len(items) == tiny.count("train")
    ref = TrainTiles(tiny, "train", crop=16, seed=3, fixed=True)
    assert torch.equal(items[0]["pixel_values"], ref[0]["pixel_values"])
    shuffled = shard_tiles(src, "train", seed=3, shuffle_buffer=8)
    order = [i["index"] for i in shuffled]
    assert sorted(order) == list(range(len(items))) and order != sorted(order)

    def eight_bit(folder, *, split=None):
        px = decode_png16(tiny.root / rows[0]["file_name"])
        yield {"key": "x", "pixels": ((px >> 8) * 257).astype(np.uint16), "meta": meta,
               "caption": "", "split": "train"}

    monkeypatch.setitem(sys.modules, "wavdiff_utils.shards",
                        types.SimpleNamespace(iter_shard_samples=eight_bit))
    with pytest.raises(TrainDataError) as e:
        scan_dataset(tmp_path)
    _one_line(e, "8-bit", "sample x")


def test_the_real_shard_reader_when_it_exists():
    shards = pytest.importorskip("wavdiff_utils.shards")
    assert callable(shards.iter_shard_samples)
