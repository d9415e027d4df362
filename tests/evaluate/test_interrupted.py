"""A run killed halfway leaves nothing the next run trips on: its scratch folders and a half-written
record are swept by the next run on the folder, nothing of it is cached, and its lock is taken over."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.evaluate.conftest import PARAMS
from wavdiff_utils.evaluate import evaluate_sets
from wavdiff_utils.io.locking import LOCK_NAME
from wavdiff_utils.paths import REPO_ROOT


def run(gen, ref, out, **kw):
    return evaluate_sets(gen, ref, out, embedding="fallback", n_iter=8, bootstrap=0, params=PARAMS,
                         progress=False, **kw)


def test_leftovers_of_a_killed_run_are_swept_by_the_next(music_sets, tmp_path):
    out = tmp_path / "out"
    leftovers = [out / ".decoded-k1x2" / "sample.wav",                 # the generated side's staging
                 out / ".reference-audio-k3y4" / "tile.wav",           # the reference's scratch
                 out / "decoded" / ".generated.old-4242" / "old.wav"]  # a publish cut short
    for f in leftovers:
        f.parent.mkdir(parents=True)
        f.write_bytes(b"RIFF")
    (out / ".evaluation.json.a1b2c3.json").write_text('{"half": ')    # a record cut short
    run(music_sets / "noisy", music_sets / "ref", out)
    assert not any(f.parent.exists() for f in leftovers)
    assert not list(out.glob(".evaluation.json.*"))
    n = len(list((music_sets / "noisy").glob("*.png")))
    assert json.loads((out / "evaluation.json").read_text())["counts"]["generated"] == n
    assert sorted(p.name for p in out.iterdir()) == ["cache", "decoded", "evaluation.json"]


_STALLED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from wavdiff_utils.codec.params import CodecParams
    from wavdiff_utils.evaluate import run

    gen, ref, out, marker = sys.argv[1:5]
    def stall(*args, **kwargs):                 # both sides embedded, nothing published yet
        Path(marker).write_text("embedded")
        time.sleep(300)
    run.compute_scores = stall
    run.evaluate_sets(gen, ref, out, embedding="fallback", n_iter=8, bootstrap=0, progress=False,
                      params=CodecParams(size=512, sample_rate=22050))
""")


def test_kill_9_halfway_then_run_again(music_sets, tile_dataset, tmp_path):
    out, marker = tmp_path / "out", tmp_path / "embedded"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _STALLED, str(music_sets / "noisy"),
                             str(tile_dataset), str(out), str(marker)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "timeout"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # what the killed run left: its lock, the decoded staging; no record, nothing cached
    assert (out / LOCK_NAME).exists() and list(out.glob(".decoded-*"))
    assert not (out / "evaluation.json").exists() and not list(out.rglob("*.npz"))
    assert not (out / "decoded").exists()
    r = run(music_sets / "noisy", tile_dataset, out)                 # the lock of a dead pid: taken over
    assert r.gen.n == len(list((music_sets / "noisy").glob("*.png"))) and r.ref.cached == 0
    assert not list(out.glob(".*-*")) and not (out / LOCK_NAME).exists()
    assert (out / "evaluation.json").is_file() and len(list(out.rglob("*.npz"))) == r.gen.n + r.ref.n
    assert len(list((out / "decoded" / "generated").glob("*.wav"))) == r.gen.n
