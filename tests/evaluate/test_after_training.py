"""``evaluate_run``: the evaluation at the end of a training run (``07_train``) gives numbers, or
one line saying why none can be measured, never an error for too few samples."""
import json
import shutil

from tests.evaluate.conftest import PARAMS
from wavdiff_utils.evaluate import Evaluation, Skipped, evaluate_run


def run(gen, ref, out, **kw):
    return evaluate_run(gen, ref, out, embedding="fallback", n_iter=8, bootstrap=10, params=PARAMS,
                        progress=False, **kw)


def test_numbers_against_the_validation_split(music_sets, tile_dataset, tmp_path):
    gen = tmp_path / "samples"
    gen.mkdir()
    for png in sorted((music_sets / "noisy").glob("*.png"))[:2]:     # two samples: the fewest
        shutil.copy(png, gen / png.name)
    r = run(gen, tile_dataset, tmp_path / "out")
    assert isinstance(r, Evaluation) and r.gen.n == 2
    assert r.settings["split"] == "validation" and r.scores.fad > 0 and r.scores.kad_interval
    assert r.scores.fad_inf is None and "50 samples a side" in r.scores.fad_inf_note
    assert [row["metric"] for row in json.loads((tmp_path / "out" / "evaluation.json").read_text())
            ["headline"]][:3] == ["FAD", "FAD-inf", "KAD"]
    assert repr(r).startswith("<Evaluation: 2 generated vs") and "\n" not in repr(r)


def test_too_few_samples_or_an_unreadable_reference_say_why(music_sets, tile_dataset, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(next(iter(sorted((music_sets / "noisy").glob("*.png")))), one / "sample_0.png")
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "shards.json").write_text("{}")
    cases = {"1 generated sample(s)": (one, tile_dataset, {}),
             "WebDataset shards": (music_sets / "noisy", shards, {}),
             "0 tile(s) in split 'test'": (music_sets / "noisy", tile_dataset, {"split": "test"})}
    for want, (gen, ref, kw) in cases.items():
        r = run(gen, ref, tmp_path / "out", **kw)
        assert isinstance(r, Skipped) and want in r.reason, r
        assert r.summary().startswith("evaluation skipped: ") and "Evaluation skipped" in r._repr_html_()
    assert not (tmp_path / "out").exists()                           # nothing written
