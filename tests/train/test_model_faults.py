"""A damaged model folder: one line naming the file, never a traceback from json or diffusers."""
import json
import shutil

import pytest

from tests.train.test_train import SMALL
from wavdiff_utils.errors import BadParameterError, MissingInputError
from wavdiff_utils.train.config import TrainConfig
from wavdiff_utils.train.loop import train
from wavdiff_utils.train.model import MODEL_META, load_model


@pytest.fixture(scope="module")
def model_dir(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    r = train(TrainConfig(data=str(tiny.root), output=str(out), steps=1, use_ema=False, **SMALL),
              progress=False)
    return r.model_dir


def _copy(model_dir, tmp_path):
    dest = tmp_path / "model"
    shutil.copytree(model_dir, dest)
    return dest


@pytest.mark.parametrize("text, words", [
    ("{not json", "unreadable"),
    (b"\xff\xfe\x00", "unreadable"),
    ("[1, 2]", "not a wavdiff model"),
    ('{"format": "something-else"}', "not a wavdiff model"),
    ('{"format": "wavdiff-diffusion-model", "version": 1}', "lacks"),
])
def test_a_damaged_model_json_is_one_line_naming_it(model_dir, tmp_path, text, words):
    dest = _copy(model_dir, tmp_path)
    meta = dest / MODEL_META
    meta.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(BadParameterError, match=words) as info:
        load_model(dest)
    assert str(meta) in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_class_and_missing_weights_say_what_is_damaged(model_dir, tmp_path):
    dest = _copy(model_dir, tmp_path)
    meta = json.loads((dest / MODEL_META).read_text())
    (dest / MODEL_META).write_text(json.dumps({**meta, "unet_class": "NoSuchUNet"}))
    with pytest.raises(BadParameterError, match="unknown model class 'NoSuchUNet'"):
        load_model(dest)
    (dest / MODEL_META).write_text(json.dumps(meta))
    assert load_model(dest).planes == meta["planes"]                  # restored: loads again
    shutil.rmtree(dest / "unet")
    with pytest.raises(BadParameterError, match="weights or scheduler cannot be read"):
        load_model(dest)


def test_no_model_at_all_says_how_to_make_one(tmp_path):
    with pytest.raises(MissingInputError, match="train one first"):
        load_model(tmp_path)
