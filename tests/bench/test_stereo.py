"""The stereo benchmark's figures at a tiny size: every key there, values in range (no timing
assertions: speed is reported, not tested)."""
import json

import numpy as np
import pytest

from tests.audio_fixtures import music_like, write
from wavdiff_utils.bench.stereo import (STEREO_TIME_TARGET, main, run_stereo_benchmark,
                                        side_range, side_range_lines, stereo_cost,
                                        stereo_cost_lines)

ROW_KEYS = {"file", "seconds", "tiles", "peak", "side_peak", "clipped_high", "side_clipped_high",
            "side_max_db", "side_headroom_db", "side_zero_fraction", "side_p01_db",
            "side_p50_db", "side_p99_db", "mid_max_db", "mid_headroom_db", "mid_zero_fraction"}


@pytest.fixture(scope="module")
def duo(tmp_path_factory):
    """A 2 s stereo clip whose channels differ (the right at 0.8 of the left, and noise)."""
    y = music_like(2.0, 44100, seed=7, channels=2)
    y[:, 1] += 0.01 * np.random.default_rng(1).standard_normal(len(y)).astype(np.float32)
    return write(tmp_path_factory.mktemp("stereo") / "duo.wav", y, 44100)


def test_side_range_rows(duo, tmp_path):
    rows = side_range([duo], workdir=tmp_path / "work", size=64)
    assert len(rows) == 1 and set(rows[0]) == ROW_KEYS
    r = rows[0]
    assert r["file"] == "duo.wav" and r["tiles"] > 1 and abs(r["seconds"] - 2.0) < 1e-6
    assert 0 < r["side_peak"] < r["peak"] <= 1.0
    assert r["side_clipped_high"] == 0 and r["clipped_high"] == 0
    assert -110 < r["side_max_db"] < r["mid_max_db"] < 10
    assert r["side_headroom_db"] > 0 and r["mid_headroom_db"] > 0
    assert 0 <= r["side_zero_fraction"] < 1 and 0 <= r["mid_zero_fraction"] < 1
    assert -110 < r["side_p01_db"] <= r["side_p50_db"] <= r["side_p99_db"] <= r["side_max_db"]
    assert json.loads(json.dumps(rows)) == rows                     # plain JSON values
    assert not list((tmp_path / "work").rglob("*.png"))             # tiles removed
    lines = side_range_lines(rows)
    assert lines[1].startswith("duo.wav") and "0 side values clipped in 1 file(s)" in lines[-1]


def test_stereo_cost_figures(duo, tmp_path):
    cost = stereo_cost(duo, workdir=tmp_path / "work", size=64, repeats=1, clip_seconds=0.5)
    assert {"song", "seconds", "size", "runs", "mono_s", "stereo_s", "ratio", "process_ratio",
            "memory", "target", "met"} <= set(cost)
    assert [r["channels"] for r in cost["runs"]] == ["mono", "stereo"]
    assert all(r["encode_s"] > 0 and r["process_s"] > r["encode_s"] and
               r["peak_mib"] >= r["baseline_mib"] > 0 for r in cost["runs"])
    assert cost["mono_s"] > 0 and cost["stereo_s"] > 0 and cost["ratio"] > 0
    assert cost["process_ratio"] > 0 and cost["target"] == STEREO_TIME_TARGET
    assert isinstance(cost["met"], bool)
    mem = {(m["channels"], round(m["seconds"], 1)): m["peak_mib"] for m in cost["memory"]}
    assert set(mem) == {("mono", 0.5), ("stereo", 0.5), ("mono", 2.0), ("stereo", 2.0)}
    assert all(v > 0 for v in mem.values())
    assert not (tmp_path / "work" / "stereo_cost").exists()
    text = "\n".join(stereo_cost_lines(cost))
    assert "stereo encode time / mono" in text and "peak memory, stereo" in text


def test_run_and_command_line(duo, tmp_path, capsys):
    res = run_stereo_benchmark([duo], workdir=tmp_path / "w", size=64, cost=False,
                               results_file=tmp_path / "stereo.json")
    assert res["cost"] is None and len(res["side_range"]) == 1
    assert json.loads((tmp_path / "stereo.json").read_text(encoding="utf-8")) == res
    assert main([str(duo), "--size", "64", "--no-cost", "--workdir", str(tmp_path / "m")]) == 0
    assert "duo.wav" in capsys.readouterr().out
