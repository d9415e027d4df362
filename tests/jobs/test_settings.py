"""PipelineSettings: one place for the pipeline's options, shared by run_pipeline, the command
line and params/pipeline.yaml; every bad value one line naming the field."""
import dataclasses

import pytest

from wavdiff_utils.codec.params import CodecParams, load_yaml_params
from wavdiff_utils.errors import BadParameterError, WavdiffError
from wavdiff_utils.jobs.cli import OPTIONS, _parser
from wavdiff_utils.jobs.settings import CODEC_OPTIONS, PipelineSettings
from wavdiff_utils.paths import REPO_ROOT


def test_defaults_are_the_documented_ones():
    s = PipelineSettings()
    assert s.params == CodecParams() and s.captioner == "muq" and s.workers == 0
    assert s.report and s.progress and s.engine == "local" and s.shards is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.workers = 3


def test_the_params_file_the_cli_and_the_settings_name_the_same_options():
    yaml_keys = set(load_yaml_params(REPO_ROOT / "params" / "pipeline.yaml"))
    assert yaml_keys - {"input", "output"} <= set(PipelineSettings.names())
    assert set(OPTIONS) == {"input", "output"} | set(PipelineSettings.names())
    dests = {a.dest for a in _parser()._actions}
    assert set(PipelineSettings.names()) <= dests


def test_from_yaml_reads_the_shipped_file_and_overrides_win():
    s = PipelineSettings.from_yaml(REPO_ROOT / "params" / "pipeline.yaml", size=256,
                                   captioner="none")
    assert s.params.size == 256 and s.captioner == "none" and s.params.layout == "exact"


def test_replace_takes_flat_codec_options_and_params():
    s = PipelineSettings().replace(size=128, workers=2)
    assert s.params == CodecParams(size=128) and s.workers == 2
    t = s.replace(params=CodecParams(size=64))
    assert t.params.size == 64 and t.workers == 2
    assert s.replace() is s


@pytest.mark.parametrize("changes, words", [
    ({"captioner": "whisper"}, "captioner must be one of muq, qwen, metadata, none, got 'whisper'"),
    ({"workers": -2}, "workers must be a whole number >= 0, got -2"),
    ({"workers": True}, "workers must be a whole number >= 0, got True"),
    ({"workers": 1.5}, "workers must be a whole number >= 0, got 1.5"),
    ({"caption_actors": -1}, "caption_actors must be a whole number >= 0, got -1"),
    ({"png_compression": 10}, "png_compression must be 0-9 or 'small', got 10"),
    ({"png_compression": "huge"}, "png_compression must be 0-9 or 'small', got 'huge'"),
    ({"engine": "spark"}, "engine must be one of local, ray, got 'spark'"),
    ({"ray_address": "auto"}, "ray_address auto is for the ray engine"),
    ({"shards": True, "shard_size": "12XB"}, "shard_size must be a size with a unit"),
    ({"size": 8}, "size must be at least 16 pixels, got 8"),
    ({"layout": "wide"}, "'wide'"),
    ({"params": "big"}, "params must be a CodecParams, got 'big'"),
    ({"colour": "blue"}, "unknown option(s) 'colour'"),
    ({"captioer": "muq"}, "did you mean captioner"),
    ({"channels": "Stereo"}, "channels must be mono or stereo, got 'Stereo' (did you mean stereo?)"),
    ({"holdout": 0.5}, "holdout must be a share of the songs from 0 to under 0.5, got 0.5"),
    ({"holdout": -0.1}, "holdout must be a share of the songs from 0 to under 0.5, got -0.1"),
    ({"holdout": "lots"}, "holdout must be a number from 0 to under 0.5, got 'lots'"),
    ({"channels": 2}, "channels must be mono or stereo, got 2"),
])
def test_a_bad_value_is_one_line_naming_the_field(changes, words):
    with pytest.raises(BadParameterError) as info:
        PipelineSettings().replace(**changes)
    msg = str(info.value)
    assert words in msg and "\n" not in msg
    assert isinstance(info.value, WavdiffError) and isinstance(info.value, ValueError)


def test_values_are_normalised():
    s = PipelineSettings(captioner=" MuQ ", artist=None, model="", shards="no", device=None)
    assert (s.captioner, s.artist, s.model, s.shards, s.device) == ("muq", "", None, None, "auto")
    assert PipelineSettings(shards=True, shard_size="500MB").shards is True


def test_codec_options_are_codec_params_fields():
    names = {f.name for f in dataclasses.fields(CodecParams)}
    assert set(CODEC_OPTIONS) <= names


def test_run_pipeline_takes_settings_and_old_keywords(tmp_path):
    from tests.audio_fixtures import music_like, write
    from wavdiff_utils.jobs.pipeline import run_pipeline

    src = write(tmp_path / "a.wav", music_like(1.0, 22050), 22050)
    base = PipelineSettings(captioner="none", report=False, progress=False, workers=1)
    r1 = run_pipeline(src, tmp_path / "one", base, size=64, log=None)
    r2 = run_pipeline(src, tmp_path / "two", captioner="none", report=False, progress=False,
                      workers=1, params=CodecParams(size=64), log=None)
    t1 = sorted(p.name for p in (tmp_path / "one").rglob("*.png"))
    t2 = sorted(p.name for p in (tmp_path / "two").rglob("*.png"))
    assert r1.ok and r2.ok and t1 == t2 and t1
    with pytest.raises(BadParameterError, match="captioner must be one of"):
        run_pipeline(src, tmp_path / "three", base, captioner="x")
    assert not (tmp_path / "three").exists()
