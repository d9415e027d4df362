"""The speed measurement (``python -m wavdiff_utils.evaluate.speed``) at a tiny size: three
evaluations in fresh processes, figures with the expected keys and positive values."""
import pytest

from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.errors import BadParameterError
from wavdiff_utils.evaluate.speed import (build_speed_sets, estimate, main, measure_speed, speed_lines,
                                          time_metrics)


def test_measure_speed_at_a_tiny_size(tmp_path):
    f = measure_speed(tmp_path / "speed", generated=3, reference=4, small=0.5, bootstrap=5, n_iter=8,
                      params=CodecParams(size=128, sample_rate=22050))
    positive = ["cold_s", "cached_s", "cached_speedup", "cold_clips_per_s", "cached_clips_per_s",
                "audio_x_realtime_cold", "reference_s_per_clip", "generated_s_per_clip",
                "cached_reference_s", "metrics_s", "peak_mib", "peak_mib_cached", "peak_mib_small",
                "set_ratio", "memory_ratio", "clip_seconds"]
    assert all(f[k] > 0 for k in positive), {k: f[k] for k in positive}
    assert (f["generated"], f["reference"], f["small_clips"]) == (3, 4, 4)
    assert f["reference_cached"] == 4 and f["runs"]["cold"]["reference_cached"] == 0
    assert set(f["runs"]) == {"cold", "cached", "small"} and "fallback" in f["embedding"]
    est = estimate(f, generated=100, reference=1000)
    assert est["cold_s"] > est["cached_s"] > 0 and not est["metrics_measured_at_size"]
    assert len(speed_lines(f, est)) == 6
    assert not list((tmp_path / "speed").glob("runs-*/*/.decoded-*")), "scratch folders left"


def test_speed_sets_are_reused_and_bad_sizes_refused(tmp_path):
    params = CodecParams(size=128, sample_rate=22050)
    sets = build_speed_sets(tmp_path / "s", generated=2, reference=3, params=params)
    first = sets["reference"].stat().st_mtime_ns, sorted(p.name for p in sets["reference_small"].iterdir())
    again = build_speed_sets(tmp_path / "s", generated=2, reference=3, params=params)
    assert again == sets and sets["reference"].stat().st_mtime_ns == first[0]
    assert first[1] == ["reference_0000.png", "reference_0000.txt", "reference_0001.png",
                        "reference_0001.txt"]                            # at least 2 a side
    with pytest.raises(BadParameterError, match="at least 2"):
        build_speed_sets(tmp_path / "t", generated=1, reference=3, params=params)


def test_command_line_errors_are_one_line(tmp_path, capsys):
    assert main(["--folder", str(tmp_path / "x"), "--estimate", "lots"]) == 2
    assert "--estimate takes two counts" in capsys.readouterr().err


def test_metrics_timed_on_random_embeddings_of_the_embedding_shape():
    t = time_metrics(generated=3, reference=5, clip_seconds=2.5, bootstrap=5)
    assert t["metrics_s"] > 0 and (t["windows"], t["dim"]) == (2, 128)
