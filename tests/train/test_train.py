"""Training on tiles: the loss goes down, a resumed run ends where an uninterrupted one does,
samples are 16-bit tiles with the dataset's codec that decode, caption conditioning with a tiny T5."""
import json

import numpy as np
import pytest
from safetensors.torch import load_file

from wavdiff_utils import decode_batch
from wavdiff_utils.errors import BadParameterError, WeightsMissingError
from wavdiff_utils.io.tiles import png_header, read_tile, read_tile_metadata
from wavdiff_utils.train.loop import main, train
from wavdiff_utils.train.config import TEXT_ENCODER_ENV, TrainConfig
from wavdiff_utils.train.data import TrainDataError, build_demo_dataset
from wavdiff_utils.train.model import load_model
from wavdiff_utils.train.sample import sample_tiles

#: A small, quick model for the tests that do not check learning.
SMALL = dict(channels=(8, 16), crop_frames=16, batch_size=8, eval_timesteps=4, probe_every=2,
             val_max_tiles=16)


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """A run with the default settings (v-prediction, EMA, the notebook's UNet) on the tiny set."""
    out = tmp_path_factory.mktemp("run")
    return train(TrainConfig(data=str(tiny.root), output=str(out), steps=40), progress=False)


def _weights(run):
    return load_file(str(run / "model" / "unet" / "diffusion_pytorch_model.safetensors"))


def test_the_loss_at_fixed_timesteps_goes_down(trained):
    r = trained
    assert r.steps == 40 and [h[0] for h in r.state.history] == list(range(1, 41))
    assert [p[0] for p in r.state.probes] == list(range(0, 41))     # from the untrained model on
    first = np.mean([p[1] for p in r.state.probes[:4]])
    last = np.mean([p[1] for p in r.state.probes[-4:]])
    assert r.loss_drop == pytest.approx(last / first) and r.loss_drop < 0.8
    assert [v[0] for v in r.state.val] == [20, 40] and np.isfinite(r.val_loss)
    table = r.losses()
    assert len(table) == 41 and table["probe_loss"].notna().all()
    for name in ("losses.csv", "loss_curve.png", "train_summary.json", "train_config.json"):
        assert (r.output / name).is_file(), name
    summary = json.loads((r.output / "train_summary.json").read_text())
    assert summary["steps"] == 40 and summary["loss_drop"] == pytest.approx(r.loss_drop)
    assert "validation loss" in r.summary() and r.precision == "no" and r.device == "cpu"


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tiny, tmp_path, grad_accum):
    # 64 training tiles in batches of 8: an epoch is 8 micro-batches, so the resumed part
    # crosses an epoch border; the stop comes 2 steps after the checkpoint of step 5
    cfg = TrainConfig(data=str(tiny.root), steps=12, checkpoint_every=5, eval_every=6,
                      grad_accum=grad_accum, **SMALL)
    whole = train(cfg.replace(output=str(tmp_path / "whole")), progress=False)

    def stop(step, record):
        if step == 7:
            raise KeyboardInterrupt

    notes = []
    with pytest.raises(KeyboardInterrupt):
        train(cfg.replace(output=str(tmp_path / "parts")), progress=False, callback=stop,
              log=notes.append)
    assert "checkpoint-000005" in notes[-1] and "resume" in notes[-1]
    assert not (tmp_path / "parts" / "model").exists()
    parts = train(cfg.replace(output=str(tmp_path / "parts")), progress=False, log=notes.append)
    assert parts.resumed_from == "checkpoint-000005" and parts.start_step == 5
    assert parts.state.epoch >= 1 if grad_accum == 1 else parts.state.epoch >= 2
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "parts")
    assert a.keys() == b.keys()
    for k in a:                                   # the same float operations in the same order
        assert np.allclose(a[k].numpy(), b[k].numpy(), rtol=0, atol=1e-6), k
    assert parts.state.history == whole.state.history and parts.state.val == whole.state.val
    kept = sorted(p.name for p in (tmp_path / "parts" / "checkpoints").iterdir())
    assert kept == ["checkpoint-000010", "checkpoint-000012"]        # checkpoints_kept = 2


def test_a_finished_run_started_again_trains_no_more(tiny, tmp_path):
    cfg = TrainConfig(data=str(tiny.root), output=str(tmp_path), steps=3, **SMALL)
    first = train(cfg, progress=False)
    again = train(cfg, progress=False)
    assert again.resumed_from == "checkpoint-000003" and again.steps == 3
    assert again.state.history == first.state.history
    longer = train(cfg.replace(steps=5), progress=False)           # more steps: goes on
    assert longer.steps == 5 and longer.state.history[:3] == first.state.history
    fresh = train(cfg.replace(resume="restart"), progress=False)
    assert fresh.resumed_from is None and fresh.state.history == first.state.history


def test_samples_are_exact_tiles_with_the_dataset_codec_and_decode(trained, tiny, tmp_path):
    s = sample_tiles(trained.model_dir, tmp_path / "samples", n=2, steps=5, progress=False)
    assert [p.name for p in s.paths] == ["sample_0000.png", "sample_0001.png"]
    for p in s.paths:
        assert png_header(p) == {"width": 32, "height": 32, "bit_depth": 16, "channels": 3}
        meta = read_tile_metadata(p)
        assert meta["codec"] == tiny.params.to_dict() and meta["generated"] is True
    again = sample_tiles(trained.model_dir, tmp_path / "again", n=2, steps=5, progress=False)
    assert np.array_equal(read_tile(s.paths[1]).pixels, read_tile(again.paths[1]).pixels)
    decoded = decode_batch(s.folder, tmp_path / "decoded", join="none", progress=False)
    assert decoded.ok and [r.song for r in decoded.results] == ["sample_0000", "sample_0001"]
    assert all(r.n_samples == tiny.params.tile_samples for r in decoded.results)
    assert len(decoded.tile_table()) == 2


def test_magnitude_only_samples_get_flat_phase_planes(tiny, tmp_path):
    r = train(TrainConfig(data=str(tiny.root), output=str(tmp_path), steps=2, planes="magnitude",
                          use_ema=False, **SMALL), progress=False)
    model = load_model(r.output)
    assert model.unet.config.in_channels == 1 and model.planes == "magnitude"
    s = sample_tiles(model, tmp_path / "samples", n=1, steps=3, progress=False)
    px = read_tile(s.paths[0]).pixels
    assert np.all(px[..., 1:] == 32768) and px[..., 0].std() > 0
    decoded = decode_batch(s.folder, tmp_path / "decoded", join="none", progress=False)
    assert decoded.ok and decoded.results[0].tiles[0].method != "image"


def test_caption_conditioning_with_a_tiny_text_encoder(tiny, tmp_path, monkeypatch):
    from tests.train.tiny_text_encoder import build_tiny_t5

    t5 = build_tiny_t5(tmp_path / "t5")
    monkeypatch.setenv(TEXT_ENCODER_ENV, str(t5))        # the default id, pointed at the tiny model
    cfg = TrainConfig(data=str(tiny.root), output=str(tmp_path / "run"), steps=3,
                      conditioning="caption", **{**SMALL, "channels": (32, 32)})
    r = train(cfg, progress=False)
    model = load_model(r.model_dir)
    assert type(model.unet).__name__ == "UNet2DConditionModel"
    assert model.unet.config.cross_attention_dim == 32 and model.conditioning == "caption"
    s = sample_tiles(model, tmp_path / "samples", n=2, steps=3, guidance_scale=3.0,
                     prompts=["A calm piano piece."], progress=False)
    assert s.prompts == ["A calm piano piece."] * 2
    assert (tmp_path / "samples" / "sample_0001.txt").read_text().strip() == "A calm piano piece."
    unguided = sample_tiles(model, tmp_path / "unguided", n=2, steps=3, guidance_scale=1.0,
                            prompts=["A calm piano piece."], progress=False)
    assert not np.array_equal(read_tile(s.paths[0]).pixels, read_tile(unguided.paths[0]).pixels)


def test_caption_conditioning_needs_captions(tmp_path):
    src = build_demo_dataset(tmp_path / "ds", size=32, seconds=1.0)
    meta = src.root / "metadata.jsonl"
    rows = [{**json.loads(line), "text": ""} for line in meta.read_text().splitlines()]
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TrainDataError) as e:
        train(TrainConfig(data=str(src.root), output=str(tmp_path / "run"), conditioning="caption"))
    assert "\n" not in str(e.value) and "caption" in str(e.value)


def test_missing_text_encoder_weights_say_how_to_get_them(tmp_path, monkeypatch):
    from wavdiff_utils.train.text import TextEncoder

    with pytest.raises(WeightsMissingError) as e:
        TextEncoder(str(tmp_path / "no-such-model"))
    msg = str(e.value)
    assert "\n" not in msg and "no-such-model" in msg and "hf download google-t5/t5-base" in msg
    monkeypatch.delenv(TEXT_ENCODER_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsMissingError) as e:
        TextEncoder()
    assert "google-t5/t5-base" in str(e.value) and "text_encoder" in str(e.value)


@pytest.mark.parametrize("change, words", [({"crop_frames": 10}, ["10", "multiple of 4"]),
                                           ({"crop_frames": 64}, ["crop_frames=64", "wider"])])
def test_sizes_the_unet_cannot_take_are_refused_before_training(tiny, tmp_path, change, words):
    with pytest.raises(BadParameterError) as e:
        train(TrainConfig(data=str(tiny.root), output=str(tmp_path), **change))
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words)
    assert not (tmp_path / "checkpoints").exists()


def test_command_line(tiny, tmp_path, capsys):
    rc = main(["--set", "data", str(tiny.root), "--set", "output", str(tmp_path / "run"),
               "--set", "steps", "2", "--set", "channels", "[8, 16]", "--samples", "1",
               "--set", "learning_rate", "1e-4", "--set", "device", "cpu"])
    out = capsys.readouterr()
    assert rc == 0 and "trained 2 step(s)" in out.out and "1 sample tile(s)" in out.out
    assert (tmp_path / "run" / "samples" / "sample_0000.png").is_file()
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["learning_rate"] == 1e-4          # YAML 1.1 reads "1e-4" as a string
    # the run's own record trains again as it was (its "codec" entry is a record, not a setting)
    assert "codec" in saved
    rc = main(["-f", str(tmp_path / "run" / "train_config.json"), "--set", "output",
               str(tmp_path / "again"), "--samples", "1"])
    again = json.loads((tmp_path / "again" / "train_config.json").read_text())
    assert rc == 0 and {**again, "output": saved["output"]} == saved
    capsys.readouterr()
    rc = main(["--set", "data", str(tmp_path / "nothing"), "--set", "output", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "nothing" in err


@pytest.mark.parametrize("args, words", [
    (["-f", "nope.yaml"], ["nope.yaml", "does not exist"]),
    (["--set", "channels", "[8, 16"], ["--set channels", "[8, 16"]),
    (["--set", "step", "100"], ["'step'", "steps"]),
    (["--set", "lerning_rate", "0.1"], ["'lerning_rate'", "learning_rate"]),
    (["--set", "learning_rate", "fast"], ["learning_rate", "fast"]),
])
def test_command_line_errors_are_one_line(tmp_path, capsys, args, words):
    rc = main(args + ["--set", "output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert all(w in err for w in words), err
    assert not (tmp_path / "run").exists()


def test_command_line_settings_file_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text("steps: 3\nbatchsize: 4\nnum_samples: 1\ndemo_size: 64\n")
    for path, words in ((bad, ["bad.yaml", "YAML"]), (typo, ["typo.yaml", "'batchsize'", "batch_size"])):
        assert main(["-f", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and all(w in err for w in words), err


def test_the_demo_dataset_is_reused_and_remade_for_other_codec_parameters(tmp_path):
    from wavdiff_utils.codec.params import CodecParams

    first = build_demo_dataset(tmp_path / "ds", size=32, seconds=1.0)
    tiles = sorted(first.root.rglob("*.png"))
    stamps = [p.stat().st_mtime_ns for p in tiles]
    again = build_demo_dataset(tmp_path / "ds", size=32, seconds=1.0)
    assert sorted(again.root.rglob("*.png")) == tiles
    assert [p.stat().st_mtime_ns for p in tiles] == stamps         # nothing encoded again
    assert again.rows == first.rows
    other = build_demo_dataset(tmp_path / "ds", size=64, seconds=1.0)
    assert other.params == CodecParams(size=64, sample_rate=22050) and other.height == 64


def test_a_finished_run_run_again_says_nothing_was_left_to_train(trained):
    """The quick CPU run repeated on its own output: said first, in words; no old figure passed
    off as new."""
    from wavdiff_utils.train.result import summary_markdown

    notes = []
    again = train(trained.config, progress=False, log=notes.append)
    assert again.nothing_left and again.start_step == again.steps == 40
    assert notes[0].startswith("nothing left to train: checkpoint-000040 is step 40 of 40")
    assert again.summary().splitlines()[0].startswith("nothing left to train")
    assert "from the earlier session" in again.summary()
    assert summary_markdown(again).startswith("**Nothing left to train.**")
    assert not trained.nothing_left
