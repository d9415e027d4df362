"""A killed driver leaves nothing behind (issue 20, item 8): the Ray engine under ``kill -9``.

An embedded Ray's processes are Ray's children, not the run's: after ``kill -9`` of a
``--engine ray`` run, two Ray agents (which clear their environment and rename
themselves) lived on for 20 to 100 s.  :func:`wavdiff_utils.jobs.workers.die_with_this_process`
starts a watcher that kills every process of the run when the driver dies; these tests
check it

- without Ray (runs everywhere on Linux): a driver script starts marked processes, a
  grandchild, an "agent" with an empty environment holding a file in a claimed folder,
  one holding a file in a Ray-style session folder named after the driver, and one
  process outside the block; after ``kill -9`` of the driver, or at the normal end of its
  block, all but the last are gone within seconds, and the watcher too;
- with Ray: the CLI with ``--engine ray`` on a clip, killed with ``kill -9`` once Ray is up
  and a song is being encoded: 10 s later no process of that run is alive (found by its
  environment, its command line, its open files, or as the driver's descendants).
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.audio_fixtures import music_like, write
from wavdiff_utils.jobs import workers
from wavdiff_utils.jobs.workers import RUN_MARK, die_with_this_process, sweep

psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the watcher finds processes through /proc")

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}

DRIVER = r"""
import json, os, subprocess, sys, time
from pathlib import Path
from wavdiff_utils.jobs.ray_engine import _session_pattern
from wavdiff_utils.jobs.workers import die_with_this_process

tmp, how = Path(sys.argv[1]), sys.argv[2]
sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
holder = "import sys, time; f = open(sys.argv[1], 'w'); f.write('x'); f.flush(); time.sleep(300)"
claimed = tmp / "claimed"
session = tmp / f"session_2026-01-01_00-00-00_000000_{os.getpid()}"   # as Ray names it
claimed.mkdir()
session.mkdir()
with die_with_this_process(patterns=[_session_pattern()]) as run:
    with run.mark():
        marked = subprocess.Popen(sleeper, **quiet)
        parent = subprocess.Popen([sys.executable, "-c",
            "import subprocess, sys, time; p = subprocess.Popen(sys.argv[1:]); "
            "print(p.pid, flush=True); time.sleep(300)", *sleeper],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)
        grandchild = int(parent.stdout.readline())
    free = subprocess.Popen(sleeper, **quiet)
    agent = subprocess.Popen([sys.executable, "-c", holder, str(claimed / "agent.log")], env={},
                             **quiet)
    early = subprocess.Popen([sys.executable, "-c", holder, str(session / "raylet.out")], env={},
                             **quiet)
    run.claim(claimed)
    while not ((claimed / "agent.log").exists() and (session / "raylet.out").exists()):
        time.sleep(0.02)
    time.sleep(0.2)
    print(json.dumps({"marked": marked.pid, "parent": parent.pid, "grandchild": grandchild,
                      "agent": agent.pid, "early": early.pid, "free": free.pid,
                      "watcher": run.watcher.pid}), flush=True)
    if how == "kill":
        time.sleep(300)
print("block ended", flush=True)
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids, seconds: float) -> list:
    """The pids still alive after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and [p for p in pids if alive(p)]:
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def _kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def driver(tmp_path):
    """Start the driver script; yields ``(process, pids)`` and kills whatever is left."""
    started = []

    def start(how: str):
        (tmp_path / "driver.py").write_text(DRIVER)
        proc = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(tmp_path), how],
                                env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        started.append(proc)
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        pids = json.loads(line)
        started.extend(pids.values())
        return proc, pids

    yield start
    _kill([item for item in started if isinstance(item, int)])
    for item in started:
        if not isinstance(item, int):
            item.kill()
            item.communicate(timeout=30)


THEIRS = ["marked", "grandchild", "parent", "agent", "early"]


@pytest.mark.parametrize("how", ["kill", "end"], ids=["driver-kill-9", "block-ends"])
def test_processes_of_the_block_end_with_the_driver(driver, how):
    proc, pids = driver(how)
    assert all(alive(pids[k]) for k in (*THEIRS, "free", "watcher"))
    if how == "kill":
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    else:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "block ended" in out, err
    left = wait_gone([pids[k] for k in THEIRS], 5)
    assert not left, {k: pids[k] for k in THEIRS if pids[k] in left}
    assert not wait_gone([pids["watcher"]], 5), "the watcher outlived its sweep"
    assert alive(pids["free"]), "a process started outside the block was killed"


@pytest.mark.parametrize("kind", ["agent", "early"], ids=["claimed-folder", "session-named"])
def test_defect_a_process_with_a_cleared_environment_is_found_by_its_folder(driver, kind):
    """Ray's agents clear their environment (``setproctitle``): the mark cannot find them,
    their open log files in the session folder do."""
    proc, pids = driver("kill")
    env = Path(f"/proc/{pids[kind]}/environ").read_bytes()
    assert RUN_MARK.encode() not in env
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not wait_gone([pids[kind]], 5)


def test_the_watcher_is_out_of_reach_of_ctrl_c_and_the_mark_is_scoped(monkeypatch):
    monkeypatch.delenv(RUN_MARK, raising=False)
    with die_with_this_process() as run:
        watcher = run.watcher
        assert os.getsid(watcher.pid) != os.getsid(0)      # Ctrl-C's group does not reach it
        with run.mark():
            assert os.environ[RUN_MARK] == run.token and str(os.getpid()) in run.token
        assert RUN_MARK not in os.environ
    assert watcher.returncode is not None                   # gone with the block


def test_a_block_without_patterns_spares_a_ray_session_of_this_process(tmp_path):
    """Only the Ray engine claims this process's Ray session folders: another block (or one
    in a process whose Ray was started elsewhere, as the test session's) leaves them."""
    session = tmp_path / f"session_2026-01-01_00-00-00_000000_{os.getpid()}"
    session.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], "
                               "'w'); f.write('x'); f.flush(); time.sleep(300)",
                               str(session / "raylet.out")], env={})
    try:
        while not (session / "raylet.out").exists():
            time.sleep(0.02)
        with die_with_this_process() as run:
            assert run.watcher is not None
        assert run.watcher.returncode == 0
        time.sleep(0.3)
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()


def test_sweep_spares_what_it_is_told_and_ignores_other_tokens(tmp_path):
    token = uuid.uuid4().hex
    sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
    ours = [subprocess.Popen(sleeper, env={**os.environ, RUN_MARK: token}) for _ in range(2)]
    other = subprocess.Popen(sleeper, env={**os.environ, RUN_MARK: "another-run"})
    try:
        time.sleep(0.3)
        killed = sweep(token, spare=(ours[1].pid,))
        assert killed == [ours[0].pid]
        assert ours[0].wait(timeout=5) == -signal.SIGKILL
        assert ours[1].poll() is None and other.poll() is None
    finally:
        for p in (*ours, other):
            p.kill()
            p.wait()


def test_no_python_to_start_the_watcher_runs_unwatched(monkeypatch):
    monkeypatch.setattr(workers.sys, "executable", "")
    with die_with_this_process() as run:
        assert run.watcher is None
        with run.mark():
            assert os.environ[RUN_MARK] == run.token
        run.claim("/nowhere")                                 # no watcher: nothing to tell


# =========================================================================== with Ray

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


def run_processes(driver_pid: int, tag: str, family) -> list:
    """The processes of the run of ``driver_pid``: its descendants seen before the kill, and
    any process whose environment holds ``tag``, or whose command line or open files name
    a Ray session folder of that driver (``session_..._<pid>``)."""
    session = f"_{driver_pid}"
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid == os.getpid() or p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p in family:
                found.append(p)
                continue
            paths = p.cmdline() + [f.path for f in p.open_files()]
            if any("/session_" in x and (session + "/" in x or x.endswith(session))
                   for x in paths):
                found.append(p)
                continue
            if p.environ().get("WAVDIFF_TEST_RUN_TAG") == tag:
                found.append(p)
        except psutil.Error:                 # ended meanwhile, or another user's
            continue
    return found


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_defect_kill_9_of_a_ray_run_leaves_no_ray_process_after_10_s(tmp_path):
    """Old: the raylet's two agents lived 20 to 100 s after the driver was killed."""
    src = tmp_path / "in"
    src.mkdir()
    write(src / "clip.wav", music_like(6.0, 44100, seed=4), 44100)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_SITE)
    tag = uuid.uuid4().hex
    env = {**ENV, "PYTHONPATH": f"{site}{os.pathsep}{ENV['PYTHONPATH']}",
           "WAVDIFF_TEST_SLOW_TILES": "0.2", "WAVDIFF_TEST_RUN_TAG": tag}
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "wavdiff_utils", "-i", str(src), "-o", str(out),
                             "--size", "128", "--captioner", "none", "--no-report", "-q",
                             "--engine", "ray", "--workers", "1"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    family = []
    try:
        end = time.monotonic() + 150
        while time.monotonic() < end and proc.poll() is None \
                and not list(out.glob(".*.partial/*.png")):
            time.sleep(0.1)
        assert list(out.glob(".*.partial/*.png")), "Ray never started the song"
        time.sleep(1.0)                            # the agents are up by now
        family = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(p.name() for p in family if p.is_running())
        assert "raylet" in names and "gcs_server" in names, names
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        left = run_processes(proc.pid, tag, family)
        while left and time.monotonic() - killed_at < 10:
            time.sleep(0.2)
            left = run_processes(proc.pid, tag, family)
        assert not left, [(p.pid, p.name()) for p in left]
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill([p.pid for p in run_processes(proc.pid, tag, family)])
        proc.communicate()


def test_the_drivers_own_forks_survive_the_sweep_of_its_run(tmp_path):
    """A torch DataLoader's workers are forks of the driver: they inherit its open files (Ray's
    session logs among them) but are not Ray's; the sweep at the block's end leaves them (it
    killed them once, and torch then raised 'DataLoader worker is killed' in the driver), while
    a process of the run holding the same folder is killed."""
    import multiprocessing as mp

    folder = tmp_path / "session"
    folder.mkdir()
    log = open(folder / "driver.log", "w")                    # the driver's own file there
    ctx = mp.get_context("fork")
    fork = ctx.Process(target=time.sleep, args=(300,))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], "
                               "'w'); f.flush(); time.sleep(300)", str(folder / "raylet.out")])
    try:
        with die_with_this_process() as run:
            run.claim(folder)
            fork.start()                                      # inherits driver.log
            while not (folder / "raylet.out").exists():
                time.sleep(0.02)
            time.sleep(0.2)
            assert fork.pid in workers.forks_of(os.getpid())
            assert holder.pid not in workers.forks_of(os.getpid())
        assert holder.wait(timeout=10) == -signal.SIGKILL     # the run's: swept
        assert fork.is_alive()                                # ours: left to us
    finally:
        log.close()
        fork.kill()
        fork.join()
        holder.kill()
        holder.wait()
