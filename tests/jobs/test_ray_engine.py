"""The Ray engine (issue 11) on tiny inputs, against an embedded Ray started once per session.

The engine must give what the local engine gives, byte for byte (tiles, captions, shards),
keep the same resume and failure rules, survive a killed worker (retried, or reported and
nothing half-written, then completed by a re-run), keep Ray's own output out of the
terminal, and say in one line what is wrong when Ray is missing or a cluster unreachable.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.audio_fixtures import music_like, write
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.jobs.pipeline import encode_songs, run_pipeline

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

P = CodecParams(size=128)               # 0.19 s tiles: fast, the same code path as 1024
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(scope="session")
def ray_cluster():
    """One embedded Ray (2 CPUs) for the whole test session, started and shut down here."""
    from wavdiff_utils.jobs.ray_engine import ray_session

    with ray_session(None, num_cpus=2) as session:
        yield session
    assert not ray.is_initialized()


def tree(folder, *, skip=("wavdiff_batch.json", "README.md", ".wavdiff.lock")) -> dict:
    """sha256 of every file under ``folder``; time stamps dropped from manifests and caption
    records (the run's time, not its content)."""
    out = {}
    folder = Path(folder)
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder).as_posix()
        if not f.is_file() or f.name in skip:
            continue
        data = f.read_bytes()
        if f.name == "manifest.json" or f.name.startswith("captions_") or f.name == "shards.json":
            d = json.loads(data)
            d.pop("created", None)
            for t in d.get("tiles", []):          # caption records: the caption file's path
                t.pop("path", None)
            for t in d.get("shards", []):         # the index: a hash of the files' times
                t.pop("fingerprint", None)
            data = json.dumps(d, sort_keys=True).encode()
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray_songs")
    (d / "sub").mkdir()
    write(d / "a.wav", music_like(1.5, 44100, seed=1, channels=2), 44100)
    write(d / "sub" / "b.flac", music_like(1.0, 22050, seed=2), 22050)
    write(d / "c.ogg", music_like(0.8, 48000, seed=3), 48000)
    (d / "broken.mp3").write_bytes(b"\x00" * 300)
    return d


def test_ray_and_local_engines_make_the_same_bytes(ray_cluster, songs, tmp_path):
    kw = dict(params=P, captioner="metadata", report=False, progress=False, log=None,
              shards=True, shard_size=7)
    local = run_pipeline(songs, tmp_path / "local", workers=2, **kw)
    res = run_pipeline(songs, tmp_path / "ray", engine="ray", **kw)
    assert [r.song for r in res.encode.results] == ["a", "c", "b"]
    assert tree(tmp_path / "ray") == tree(tmp_path / "local")        # tiles, captions, shards
    assert res.shards.written > 1 and res.shards.total_samples == local.export.n_tiles
    text = res.summary()
    assert "engine: ray, the Ray already running in this process (1 node(s), 2 CPU(s))" in text
    assert "3 encoded, 0 already done, 1 failed" in text
    assert "FAILED" in text and "broken.mp3" in text and "cannot be decoded" in text
    assert "metadata: " in text and "1 failed" in text
    # a re-run skips finished songs and up-to-date captions and shards
    again = run_pipeline(songs, tmp_path / "ray", engine="ray", **kw)
    assert [r.status for r in again.encode.results] == ["skipped"] * 3
    assert {c["status"] for c in again.captions} == {"skipped"}
    assert again.shards.written == 0 and again.shards.kept == res.shards.written
    assert tree(tmp_path / "ray") == tree(tmp_path / "local")


def test_model_captions_on_an_actor_pool_match_the_local_engine(ray_cluster, tmp_path):
    """MuQ (the tiny test model, which the Ray workers find through $WAVDIFF_MUQ_MODEL) on the
    actor pool writes the local engine's captions; missing weights give metadata captions."""
    src = tmp_path / "in"
    src.mkdir()
    for k in range(2):
        write(src / f"m{k}.wav", music_like(1.0, seed=30 + k), 44100)
    kw = dict(params=P, captioner="muq", report=False, progress=False, log=None)
    local = run_pipeline(src, tmp_path / "local", **kw)
    res = run_pipeline(src, tmp_path / "ray", engine="ray", **kw)
    assert local.caption_source == res.caption_source == "muq" and not res.caption_notice
    captions = {k: v for k, v in tree(tmp_path / "ray").items() if k.endswith(".txt")}
    assert captions and captions == {k: v for k, v in tree(tmp_path / "local").items()
                                     if k.endswith(".txt")}
    gone = run_pipeline(src, tmp_path / "gone", engine="ray", model=str(tmp_path / "no-weights"),
                        **kw)
    assert gone.ok and gone.caption_source == "metadata"
    assert "muq unavailable, metadata captions instead" in gone.caption_notice
    assert "no-weights" in gone.caption_notice and "looked up on Ray node" in gone.caption_notice
    assert "\n" not in gone.caption_notice


def test_a_local_model_path_and_wavdiff_settings_reach_the_nodes(tmp_path, monkeypatch):
    """A relative model folder goes to the actors as an absolute path (hub ids as they are);
    the WAVDIFF_* variables go to a joined cluster's nodes with the code."""
    import wavdiff_utils.jobs.ray_engine as engine

    (tmp_path / "models" / "muq").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert engine.absolute_if_local("models/muq") == str(tmp_path / "models" / "muq")
    assert engine.absolute_if_local("./models/none") == str(tmp_path / "models" / "none")
    assert engine.absolute_if_local("OpenMuQ/MuQ-MuLan-large") == "OpenMuQ/MuQ-MuLan-large"
    monkeypatch.setenv("WAVDIFF_MUQ_MODEL", "models/muq")
    monkeypatch.setenv("WAVDIFF_TEST_FLAG", "1")
    seen = {}
    monkeypatch.setattr(engine, "_init", lambda ray, **kw: seen.update(kw))
    engine._connect(None, "auto", {})
    env = seen["runtime_env"]
    assert env["py_modules"] == [str(Path(engine.__file__).resolve().parents[1])]   # the package
    assert env["env_vars"]["WAVDIFF_MUQ_MODEL"] == str(tmp_path / "models" / "muq")
    assert env["env_vars"]["WAVDIFF_TEST_FLAG"] == "1"
    assert not [k for k in env["env_vars"] if not k.startswith("WAVDIFF_")]


def test_an_error_the_song_does_not_catch_is_named_by_the_task():
    from wavdiff_utils.jobs.ray_engine import _stream

    def work(tick):
        tick(2)
        raise TypeError("bad argument\nsecond line")

    out = list(_stream(work, lambda why: ("failed", why)))
    assert out[-1] == ("done", ("failed", "TypeError: bad argument"))
    assert list(_stream(lambda tick: 7, None))[-1] == ("done", 7)


def test_a_joined_cluster_is_named_by_its_resolved_address():
    from wavdiff_utils.jobs.ray_engine import RaySession, _resolved_address

    class Ray:
        @staticmethod
        def get_runtime_context():
            return type("Ctx", (), {"gcs_address": "10.0.0.5:6379"})()

    assert _resolved_address(Ray, "auto") == "10.0.0.5:6379 (found by 'auto')"
    assert _resolved_address(Ray, "head:6379") == "10.0.0.5:6379"
    assert _resolved_address(Ray, "ray://head:10001") == "ray://head:10001"
    line = RaySession(address=_resolved_address(Ray, "auto"), nodes=3, cpus=48).describe()
    assert "the Ray cluster at 10.0.0.5:6379 (found by 'auto') (3 node(s), 48 CPU(s))" in line


def _killer(found: list, stop: threading.Event):
    """Kill the first Ray worker seen encoding a song (its process title names the task).

    Only this test's Ray is looked at: the embedded Ray of the fixture runs under this
    process (its raylet a child, the workers the raylet's), so the candidates are this
    process's descendants, never another session's Ray on the same host."""
    me = psutil.Process(os.getpid())
    while not stop.is_set() and not found:
        for p in me.children(recursive=True):
            try:
                cmd = p.cmdline()
            except psutil.Error:                 # ended meanwhile
                continue
            if cmd and cmd[0].startswith("ray::_encode_task"):
                time.sleep(0.05)                 # a few tiles into the song
                p.kill()
                found.append(p.pid)
                return
        time.sleep(0.01)


@pytest.fixture(scope="module")
def long_songs(tmp_path_factory):
    """Three 12 s songs (65 tiles each) and their local encode, the reference."""
    d = tmp_path_factory.mktemp("long")
    for k in range(3):
        write(d / f"s{k}.wav", music_like(12.0, 44100, seed=20 + k), 44100)
    ref = d.parent / (d.name + "_ref")
    assert encode_songs(d, ref, params=P, workers=1, progress=False).ok
    return d, tree(ref)


@pytest.mark.parametrize("retries", [2, 0], ids=["retried", "reported"])
def test_a_killed_worker_is_retried_or_reported_never_half_written(ray_cluster, long_songs,
                                                                    tmp_path, monkeypatch, retries):
    import wavdiff_utils.jobs.ray_engine as engine

    monkeypatch.setattr(engine, "TASK_RETRIES", retries)
    src, ref = long_songs
    out = tmp_path / "out"
    killed, stop = [], threading.Event()
    t = threading.Thread(target=_killer, args=(killed, stop), daemon=True)
    t.start()
    try:
        batch = encode_songs(src, out, params=P, engine="ray", progress=False)
    finally:
        stop.set()
        t.join()
    assert killed, "no encoding worker was seen to kill"
    if retries:
        assert batch.ok and len(batch.results) == 3          # Ray ran the song again
        assert tree(out) == ref
    else:
        [(path, msg)] = batch.failures
        song = Path(path).stem
        assert "Ray worker died" in msg and "run again" in msg and path in msg
        assert not (out / song).exists()                      # nothing of it published
        assert {p.parent.name for p in out.glob("*/manifest.json")} == {"s0", "s1", "s2"} - {song}
        again = encode_songs(src, out, params=P, engine="ray", progress=False)
        assert again.ok and sorted(r.status for r in again.results) == ["encoded"] + ["skipped"] * 2
        assert tree(out) == ref                               # the re-run completes the set


def test_caption_actors_per_gpu_or_cpu():
    from wavdiff_utils.jobs.ray_captions import caption_actor_count

    assert caption_actor_count("muq", 10, gpus=4, cpus=32, device="auto") == (4, True)
    assert caption_actor_count("qwen", 2, gpus=4, cpus=32, device="cuda") == (2, True)
    assert caption_actor_count("muq", 10, gpus=4, cpus=32, device="cpu") == (1, False)
    assert caption_actor_count("muq", 10, gpus=0, cpus=32, device="auto") == (1, False)
    assert caption_actor_count("metadata", 10, gpus=4, cpus=6, device="auto") == (6, False)
    assert caption_actor_count("muq", 10, gpus=0, cpus=8, device="auto", actors=3) == (3, False)


# --------------------------------------------------------------------------- the command line

SLOW_SITE = """
import os, time
if os.environ.get("WAVDIFF_TEST_SLOW_TILES"):   # every process, the Ray workers included
    import wavdiff_utils.jobs.encode as enc
    _write = enc.write_tile
    def slow(*a, **k):
        time.sleep(float(os.environ["WAVDIFF_TEST_SLOW_TILES"]))
        return _write(*a, **k)
    enc.write_tile = slow
"""


def _cli(args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "wavdiff_utils", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
                          **kw)


def test_cli_ray_engine_interrupted_then_resumed_with_only_its_own_output(tmp_path, long_songs):
    """SIGTERM mid-encode: exit 130, Ray shut down (no process left), finished songs kept; the
    same command again completes the set with one summary and no Ray chatter."""
    src, ref = long_songs
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_SITE)
    env = {**ENV, "PYTHONPATH": f"{site}{os.pathsep}{ENV['PYTHONPATH']}",
           "WAVDIFF_TEST_SLOW_TILES": "0.03"}
    out = tmp_path / "out"
    args = ["-i", str(src), "-o", str(out), "--size", "128", "--captioner", "none", "--no-report",
            "--engine", "ray", "--workers", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "wavdiff_utils", *args, "-q"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    end = time.monotonic() + 120
    while time.monotonic() < end and not list(out.glob(".*.partial/*.png")):
        time.sleep(0.05)
    assert list(out.glob(".*.partial/*.png")), "the run never started a song"
    family = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    deadline = time.monotonic() + 20                   # Ray's processes end with the run
    while time.monotonic() < deadline and [p for p in family if psutil.pid_exists(p)
                                           and psutil.Process(p).status() != "zombie"]:
        time.sleep(0.2)
    left = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not left, f"Ray processes left running: {left}"
    published = [p for p in out.glob("*/*.png") if not p.parent.name.startswith(".")]
    assert all((p.parent / "manifest.json").exists() for p in published)   # none half-done
    again = _cli([*args, "--shards"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert {k: v for k, v in tree(out).items() if k[:2] in ("s0", "s1", "s2")} == ref
    lines = again.stdout.splitlines()
    assert lines[0].startswith("wavdiff pipeline:") and all(ln.startswith("  ") for ln in lines[1:])
    assert "already done" in lines[1] and "0 failed" in lines[1]
    assert "engine: ray, a local Ray started here (1 node(s), 2 CPU(s)); start-up" in again.stdout
    assert "shards:" in again.stdout and "samples" in again.stdout
    # stderr: the one progress bar (its redraws), nothing from Ray
    bar = [seg for seg in again.stderr.replace("\r", "\n").splitlines() if seg.strip()]
    assert bar and all(re.match(r"^(ray start-up|encode|shards)\b.*\|", seg) for seg in bar), bar


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_unreachable_cluster_is_one_line_naming_it(tmp_path, address):
    write(tmp_path / "a.wav", music_like(0.3, seed=1), 44100)
    r = _cli(["-i", str(tmp_path / "a.wav"), "-o", str(tmp_path / "out"), "--engine", "ray",
              "--ray-address", address, "-q"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    [line] = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert address in line and "cannot reach the Ray cluster" in line


def test_ray_not_installed_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    write(tmp_path / "a.wav", music_like(0.3, seed=1), 44100)
    code = ("import sys; sys.modules['ray'] = None; from wavdiff_utils.__main__ import main; "
            "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "-i", str(tmp_path / "a.wav"), "-o",
                        str(tmp_path / "out"), "--engine", "ray"], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    [line] = r.stderr.splitlines()                         # one line: no usage text
    assert line.startswith("error: --engine ray needs Ray") and "pip install -e '.[ray]'" in line
    # the API says the same, as an error a caller can catch
    from wavdiff_utils.jobs.ray_engine import RayUnavailableError
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayUnavailableError, match=r"pip install -e '\.\[ray\]'"):
        run_pipeline(tmp_path / "a.wav", tmp_path / "out2", engine="ray", captioner="none",
                     report=False, progress=False, log=None)


def test_scaling_benchmark_options_and_clip_folders(tmp_path, capsys):
    from wavdiff_utils.bench.scaling import clip_folder, main

    with pytest.raises(SystemExit) as err:                 # not measuring nothing, exit 0
        main(["--clips", str(tmp_path), "--what", "engines,loader"])
    assert err.value.code == 2 and "invalid choice" in capsys.readouterr().err
    folders = {clip_folder(tmp_path, n=n, seconds=s) for n in (8, 48) for s in (10, 20.0)}
    assert len(folders) == 4 and clip_folder(tmp_path, n=48, seconds=20.0).name == "n48_20s"


def test_shards_without_webdataset_is_one_line_naming_the_extra(tmp_path):
    write(tmp_path / "a.wav", music_like(0.3, seed=1), 44100)
    code = ("import sys; sys.modules['webdataset'] = None; from wavdiff_utils.__main__ import main; "
            "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "-i", str(tmp_path / "a.wav"), "-o",
                        str(tmp_path / "out"), "--shards"], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    [line] = r.stderr.splitlines()                         # one line: no usage text
    assert line.startswith("error: --shards needs webdataset") and "pip install -e '.[ray]'" in line
    assert not (tmp_path / "out").exists()                 # refused before anything was written
