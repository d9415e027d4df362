"""The benchmark notebook runs and its figures are sane (no timing assertions: speed is reported, not tested)."""
import json

import cv2
import numpy as np
import papermill as pm
import soundfile as sf

from wavdiff_utils.io.audio import load_audio
from wavdiff_utils.bench.reference import reference_decode, reference_encode
from wavdiff_utils.bench.throughput import synth_music, write_synth_wav
from wavdiff_utils.codec.metrics import lsd_db, snr_db
from wavdiff_utils.codec.params import load_yaml_params
from wavdiff_utils.paths import REPO_ROOT


def test_reference_round_trip(tmp_path):
    src = write_synth_wav(tmp_path / "s.wav", 3.0, 44100, seed=3)
    files = reference_encode(src, tmp_path / "tiles")
    assert len(files) == 1 and files[0].name == "s_0000.png"
    img = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (1024, 1024, 3) and img.dtype == np.uint16
    out = reference_decode(tmp_path / "tiles", tmp_path / "back.wav")
    ref = load_audio(src, sample_rate=44100)
    y, sr = sf.read(out)
    assert sr == 44100 and len(y) == len(ref)
    # the Lanczos resize of the original recipe is lossy, but the song must come back
    assert 15 < snr_db(ref, y) < 80
    assert lsd_db(ref, y) < 5


def test_synth_music_is_streamable_and_deterministic():
    a = synth_music(25.0, 44100, seed=1)
    b = synth_music(25.0, 44100, seed=1)
    assert a.dtype == np.float32 and len(a) == 25 * 44100
    assert np.array_equal(a, b)
    assert 0.05 < np.max(np.abs(a)) <= 1.0 and a[0] == 0.0 and abs(a[-1]) < 1e-3


def test_benchmark_notebook_quick(tmp_path):
    params = load_yaml_params("params/benchmark_quick.yaml")
    params["workdir"] = str(tmp_path / "work")
    out = tmp_path / "05_benchmark.ipynb"
    pm.execute_notebook(str(REPO_ROOT / "notebooks" / "05_benchmark.ipynb"), str(out),
                        parameters=params, kernel_name="python3", cwd=str(REPO_ROOT),
                        progress_bar=False)
    nb = json.loads(out.read_text(encoding="utf-8"))
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    res = json.loads((tmp_path / "work" / "results.json").read_text(encoding="utf-8"))
    rows = {(r["input"], r["method"]): r for r in res["rows"]}
    methods = {"exact", "seed", "reference"}
    assert {m for _, m in rows} == methods and len(rows) == 6
    for r in rows.values():
        assert r["encode_x"] > 0 and r["decode_x"] > 0 and r["length_ok"]
        assert np.isfinite(r["encode_vs_ref"]) and np.isfinite(r["decode_vs_ref"])
    synth = next(i for i, _ in rows if i != "sample")
    assert rows[(synth, "exact")]["snr_db"] > 80
    assert rows[(synth, "seed")]["snr_db"] < rows[(synth, "exact")]["snr_db"]
    assert rows[("sample", "seed")]["snr_db"] < rows[("sample", "exact")]["snr_db"]
    assert rows[(synth, "exact")]["lsd_db"] < rows[(synth, "seed")]["lsd_db"]
    mem = {m["job"]: m for m in res["memory"]}
    assert {"exact encode", "exact decode", "reference encode"} <= set(mem)
    assert all(m["peak_mib"] >= m["baseline_mib"] > 0 for m in mem.values())
    assert res["targets"] and all(isinstance(t["met"], bool) for t in res["targets"])
    # big scratch files are cleaned up; only the figures stay
    assert not (tmp_path / "work" / "scratch").exists()
    assert (tmp_path / "work" / "results.csv").is_file()
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "MET" in text or "MISS" in text
    # the whole-command section: wall and CPU seconds, and the per-CPU-second figures
    assert "encode, audio s per CPU-s (whole process)" in text
    assert "encode, audio s per CPU-s (steady state)" in text
    # the generated-tile (phase) section: every method at every scenario, saved as JSON
    ph = json.loads((tmp_path / "work" / "phase.json").read_text(encoding="utf-8"))
    by = {(r["mag_db"], str(r["level"]), r["method"]): r for r in ph["rows"]}
    assert len(by) == 3 * 5
    for mag, level in ((0.0, "0.3"), (0.0, "random"), (3.0, "0.3")):
        # auto fits the magnitude at least as well as the image phase decoded as it is
        assert by[(mag, level, "auto")]["sc_mean_db"] <= by[(mag, level, "image")]["sc_mean_db"] + 0.1
        assert all(by[(mag, level, m)]["x_realtime"] > 0 for m in ("image", "auto", "pghi"))
    assert by[(0.0, "random", "pghi")]["sc_mean_db"] < by[(0.0, "random", "griffinlim")]["sc_mean_db"]
    assert "auto decode >= 10x realtime" in text
    # whole commands, alternating with the original recipe
    assert "encode (recipe time / ours)" in text and "decode (recipe time / ours)" in text
    # stereo: the side tile's range on the sample, and the cost of a stereo encode
    st = json.loads((tmp_path / "work" / "stereo.json").read_text(encoding="utf-8"))
    assert [r["file"] for r in st["side_range"]] == ["wavdiff_demo.mp3"]
    assert st["side_range"][0]["side_clipped_high"] == 0 and st["cost"]["ratio"] > 0
    assert len(st["cost"]["memory"]) == 4
    assert "stereo encode time / mono" in text and "side range [-130, 10] dB" in text
