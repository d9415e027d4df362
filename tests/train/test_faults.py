"""Training under faults and hostile settings (issue 20): every one a one-line error, never a
traceback, and nothing lost.

- damaged checkpoints: a cut ``model.safetensors``, a damaged optimizer state, an unpicklable
  file, an empty checkpoint folder; the newest one damaged -> said in one line naming it and
  the run resumes from the previous intact one (which it names); none intact -> one line
  saying how to start afresh; ``resume`` naming a file, an empty folder, a dataset -> one line;
  the same through ``python -m wavdiff_utils.train`` (exit 2, one line on stderr);
- checkpoints written whole or not at all: kill -9 while one is saved, a full disk (a patched
  writer everywhere, a real tmpfs where ``mount`` works), a read-only output;
- settings that multiply memory or time refused in one line, before torch loads (under 5 s,
  under 500 MB), with the estimate and the limit;
- damaged shards: one line naming the ``.tar``, from the main process and from loader workers.

The runs are tiny (32x32 tiles, a two-level UNet of widths 8 and 16, 4 steps) and share one
trained run folder (checkpoints at steps 2 and 4) that each test copies and damages.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wavdiff_utils.errors import (BadParameterError, BadShardError, MissingInputError,
                                  UnwritableOutputError, WavdiffError)
from wavdiff_utils.train import guards
from wavdiff_utils.train.checkpoints import (CHECKPOINT_MANIFEST, BadCheckpointError,
                                             check_checkpoint, checkpoint_folders)
from wavdiff_utils.train.config import TrainConfig
from wavdiff_utils.train.data import TrainDataError
from wavdiff_utils.train.guards import Memory, check_training
from wavdiff_utils.train.loaders import batches
from wavdiff_utils.train.loop import main, train

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
SMALL = dict(channels=(8, 16), crop_frames=16, batch_size=8, eval_timesteps=2, probe_every=0,
             val_max_tiles=8, device="cpu", checkpoint_every=2)
#: Words of the foreign errors the old code let through.
FOREIGN = ("Traceback", "SafetensorError", "KeyError", "UnpicklingError", "FileNotFoundError",
           "ReadError", "RuntimeError", "pytorch_model.bin")


def one_line(text: str, *words):
    """``text`` is one line, names every one of ``words`` and no foreign error."""
    text = str(text)
    assert "\n" not in text.strip(), text
    assert not any(w in text for w in FOREIGN), text
    missing = [w for w in words if w not in text]
    assert not missing, f"{missing} not in {text!r}"


@pytest.fixture(scope="module")
def base(tiny, tmp_path_factory):
    """A finished run of 4 steps with checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("faults") / "run"
    cfg = TrainConfig(data=str(tiny.root), output=str(out), steps=4, **SMALL)
    train(cfg, progress=False)
    assert [p.name for p in checkpoint_folders(out)] == ["checkpoint-000002", "checkpoint-000004"]
    return cfg


def copy_run(base: TrainConfig, tmp_path, *, manifests: bool = True) -> TrainConfig:
    """A copy of the base run (without the checkpoints' manifests: as written before them)."""
    out = tmp_path / "run"
    shutil.copytree(base.output, out)
    if not manifests:
        for m in out.glob(f"checkpoints/*/{CHECKPOINT_MANIFEST}"):
            m.unlink()
    return base.replace(output=str(out))


def ckpt(cfg: TrainConfig, step: int) -> Path:
    return Path(cfg.output) / "checkpoints" / f"checkpoint-{step:06d}"


# =========================================================================== damage

def cut(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def optimizer_key(path: Path):
    """Rename the state of parameter 0 to 255 (one byte), which the zip container does not notice."""
    data = path.read_bytes()
    bad = data.replace(b"}q\x02(K\x00}", b"}q\x02(K\xff}", 1)
    assert bad != data
    path.write_bytes(bad)


def garbage(path: Path):
    path.write_bytes(b"not a pickle" * 7)


def scribble(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = b"o" * 64         # same size, other bytes
    path.write_bytes(bytes(data))


def bad_header(path: Path):
    data = bytearray(path.read_bytes())
    data[8:24] = b"\x00not json header"
    path.write_bytes(bytes(data))


DAMAGE = {
    # id: (file, damage, words the line holds)
    "cut-safetensors": ("model.safetensors", cut, ["model.safetensors", "cut short"]),
    "optimizer-key-111": ("optimizer.bin", optimizer_key, ["optimizer.bin", "damaged"]),
    "unpicklable": ("random_states_0.pkl", garbage, ["random_states_0.pkl"]),
    "scribbled-ema": ("custom_checkpoint_2.pkl", scribble, ["custom_checkpoint_2.pkl", "damaged"]),
    "bad-header": ("model.safetensors", bad_header, ["model.safetensors", "damaged"]),
    "missing-scheduler": ("scheduler.bin", Path.unlink, ["scheduler.bin", "missing"]),
}


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "no-manifest"])
@pytest.mark.parametrize("kind", list(DAMAGE))
def test_check_checkpoint_names_the_file_and_the_damage(base, tmp_path, kind, manifest):
    """Every kind of damage, found by the checksums and, for checkpoints written before them,
    by reading the files themselves."""
    cfg = copy_run(base, tmp_path, manifests=manifest)
    name, damage, words = DAMAGE[kind]
    if not manifest and kind == "scribbled-ema":
        pytest.skip("the same size and a loadable pickle: only a checksum can tell")
    check_checkpoint(ckpt(cfg, 4), custom_states=3)              # intact before
    damage(ckpt(cfg, 4) / name)
    with pytest.raises(BadCheckpointError) as e:
        check_checkpoint(ckpt(cfg, 4), custom_states=3)
    one_line(e.value, str(ckpt(cfg, 4)), *words)


def test_defect_cut_model_safetensors_resumes_from_the_previous_checkpoint(base, tmp_path):
    """Was ``SafetensorError``; now one note naming both checkpoints, and the same weights as
    the run that was never damaged (the resume from step 2 is exact)."""
    cfg = copy_run(base, tmp_path)
    cut(ckpt(cfg, 4) / "model.safetensors")
    said = []
    r = train(cfg, progress=False, log=said.append)
    assert r.resumed_from == "checkpoint-000002" and r.start_step == 2 and r.steps == 4
    notes = [n for n in r.notes if "checkpoint-000004" in n]
    assert len(notes) == 1 and notes[0] in said
    one_line(notes[0], "model.safetensors", "cut short", "checkpoint-000002",
             "damaged-checkpoint-000004")
    assert notes[0] in json.loads((Path(cfg.output) / "train_summary.json").read_text())["notes"]
    check_checkpoint(ckpt(cfg, 4), custom_states=3)              # written again, intact
    kept = Path(cfg.output) / "checkpoints" / "damaged-checkpoint-000004"
    assert (kept / "model.safetensors").is_file()                # kept for a look
    weights = "model/unet/diffusion_pytorch_model.safetensors"
    assert (Path(cfg.output) / weights).read_bytes() == (Path(base.output) / weights).read_bytes()


@pytest.mark.parametrize("kind", ["optimizer-key-111", "unpicklable", "empty-folder"])
def test_defect_damaged_newest_checkpoint_falls_back(base, tmp_path, kind):
    """Was ``KeyError: 111`` (a damaged optimizer state), ``UnpicklingError``,
    ``FileNotFoundError ... pytorch_model.bin`` (an empty checkpoint folder); checkpoints
    written before the manifests, so the files themselves are read."""
    cfg = copy_run(base, tmp_path, manifests=False).replace(steps=2)
    if kind == "empty-folder":
        shutil.rmtree(ckpt(cfg, 4))
        ckpt(cfg, 4).mkdir()
        words = ["is empty"]
    else:
        name, damage, words = DAMAGE[kind]
        damage(ckpt(cfg, 4) / name)
    r = train(cfg, progress=False, log=None)
    assert r.resumed_from == "checkpoint-000002" and r.steps == 2
    one_line(r.notes[0], "checkpoint-000004", "checkpoint-000002", *words)
    assert not ckpt(cfg, 4).exists()


def test_no_intact_checkpoint_is_one_line_saying_how_to_start_afresh(base, tmp_path, capsys):
    cfg = copy_run(base, tmp_path)
    cut(ckpt(cfg, 4) / "model.safetensors")
    garbage(ckpt(cfg, 2) / "optimizer.bin")
    with pytest.raises(BadCheckpointError) as e:
        train(cfg, progress=False)
    one_line(e.value, "checkpoint-000004", "model.safetensors", "no intact checkpoint",
             "resume='restart'")
    assert [p.name for p in checkpoint_folders(cfg.output)] == ["checkpoint-000002",
                                                                "checkpoint-000004"]
    rc = main(cli_args(cfg) + ["--samples", "0"])                  # the command line: exit 2
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1
    one_line(err, "checkpoint-000004", "resume='restart'")
    fresh = train(cfg.replace(resume="restart", steps=2), progress=False)
    assert fresh.resumed_from is None and fresh.steps == 2
    assert not (Path(cfg.output) / "checkpoints" / "damaged-checkpoint-000004").exists()


def cli_args(cfg: TrainConfig) -> list:
    args = []
    for key in ("data", "output", "steps", "crop_frames", "batch_size", "eval_timesteps",
                "probe_every", "val_max_tiles", "device", "checkpoint_every", "resume"):
        args += ["--set", key, str(getattr(cfg, key))]
    return args + ["--set", "channels", json.dumps(list(cfg.channels))]


@pytest.mark.parametrize("target", ["empty-folder", "dataset", "file", "run-folder", "nothing"])
def test_defect_resume_that_is_no_checkpoint_is_one_line(base, tiny, tmp_path, target):
    """Was ``FileNotFoundError ... pytorch_model.bin`` for an empty folder or a dataset."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    path = {"empty-folder": empty, "dataset": tiny.root, "file": tmp_path / "notes.txt",
            "run-folder": Path(base.output), "nothing": tmp_path / "nope"}[target]
    cfg = base.replace(output=str(tmp_path / "run"), resume=str(path))
    kind = MissingInputError if target == "nothing" else BadParameterError
    with pytest.raises(kind) as e:
        train(cfg, progress=False)
    one_line(e.value, "resume=", str(path))
    if target == "run-folder":
        assert "checkpoint-000004" in str(e.value)
    assert not (tmp_path / "run" / "model").exists()


def test_a_damaged_checkpoint_named_by_resume_is_one_line(base, tmp_path):
    cfg = copy_run(base, tmp_path)
    garbage(ckpt(cfg, 2) / "scheduler.bin")
    with pytest.raises(BadCheckpointError) as e:
        train(cfg.replace(resume=str(ckpt(cfg, 2))), progress=False)
    one_line(e.value, str(ckpt(cfg, 2)), "scheduler.bin", "resume='auto'")
    r = train(cfg.replace(resume=str(ckpt(cfg, 4))), progress=False)   # an intact one: used
    assert r.resumed_from == "checkpoint-000004"


def test_python_m_train_with_a_damaged_checkpoint_exits_2_with_one_line(base, tmp_path):
    cfg = copy_run(base, tmp_path)
    for step in (2, 4):
        cut(ckpt(cfg, step) / "model.safetensors")
    r = subprocess.run([sys.executable, "-m", "wavdiff_utils.train", *cli_args(cfg),
                        "--samples", "0"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                       timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    one_line(errors[0], "model.safetensors", "resume='restart'")


# =========================================================================== writing

SLOW_SAVE = """
import sys, time
import accelerate
_save = accelerate.Accelerator.save_state
def slow(self, output_dir=None, **kw):
    done = _save(self, output_dir, **kw)
    if "000006" in str(output_dir):
        open(sys.argv[2], "w").close()          # its files are written, its manifest is not
        time.sleep(120)
    return done
accelerate.Accelerator.save_state = slow
from wavdiff_utils.train.loop import main
sys.exit(main(sys.argv[3:]))
"""


def test_kill_9_while_a_checkpoint_is_saved_leaves_the_earlier_ones(base, tmp_path):
    """The run goes on from step 4 to 6 and is killed while checkpoint-000006 is saved."""
    script, flag = tmp_path / "slow_save.py", tmp_path / "saving"
    script.write_text(SLOW_SAVE)
    cfg = copy_run(base, tmp_path).replace(steps=6)
    p = subprocess.Popen([sys.executable, str(script), "x", str(flag), *cli_args(cfg),
                          "--samples", "0"], cwd=tmp_path, env=ENV, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 240
        while not flag.exists() and p.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        assert flag.exists(), "the run never reached checkpoint-000006"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    root = Path(cfg.output) / "checkpoints"
    assert sorted(q.name for q in root.iterdir()) == [".checkpoint-000006.partial",
                                                      "checkpoint-000002", "checkpoint-000004"]
    said = []
    r = train(cfg.replace(steps=4), progress=False, log=said.append)   # resumes, cleans up
    assert r.resumed_from == "checkpoint-000004" and not any("damaged" in s for s in said)
    assert sorted(q.name for q in root.iterdir()) == ["checkpoint-000002", "checkpoint-000004"]


def test_a_full_disk_while_saving_names_the_checkpoint_and_leaves_nothing(base, tmp_path,
                                                                         monkeypatch):
    import accelerate

    def full(self, output_dir=None, **kw):       # what safetensors says on a full disk
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "model.safetensors").write_bytes(b"\0" * 100)
        raise RuntimeError("Error while serializing: I/O error: No space left on device "
                           "(os error 28)")

    monkeypatch.setattr(accelerate.Accelerator, "save_state", full)
    cfg = base.replace(output=str(tmp_path / "run"))
    with pytest.raises(UnwritableOutputError) as e:
        train(cfg, progress=False)
    one_line(e.value, str(ckpt(cfg, 2)), "disk is full")
    assert ".partial" not in str(e.value)
    assert not any((Path(cfg.output) / "checkpoints").iterdir())


def can_mount(tmp) -> bool:
    d = tmp / "probe"
    d.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(d)], capture_output=True)
    return ok


@pytest.fixture
def mounted(tmp_path):
    """``mount(folder, opts)``: a tmpfs on ``folder``; every mount is undone afterwards."""
    if shutil.which("mount") is None or not can_mount(tmp_path):
        pytest.skip("cannot mount a tmpfs here; the patched-writer test covers the same fault")
    done = []

    def mount(folder, opts):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], check=True)
        done.append(folder)
        return folder
    yield mount
    for f in reversed(done):
        subprocess.run(["umount", "-l", str(f)], capture_output=True)


def test_a_real_full_disk_then_more_space_and_one_rerun(base, tmp_path, mounted):
    out = mounted(tmp_path / "small", "size=400k")             # a checkpoint is about 830 KB
    cfg = base.replace(output=str(out))
    with pytest.raises(UnwritableOutputError) as e:
        train(cfg, progress=False)
    one_line(e.value, str(ckpt(cfg, 2)), "disk is full")
    assert not list((out / "checkpoints").iterdir())            # nothing partial
    subprocess.run(["mount", "-o", "remount,size=40m", str(out)], check=True)
    r = train(cfg.replace(steps=2), progress=False)
    assert r.steps == 2 and check_checkpoint(ckpt(cfg, 2), custom_states=3) is None


def test_a_read_only_output_is_one_line(base, tmp_path, mounted):
    out = mounted(tmp_path / "ro", "ro,size=64k")
    with pytest.raises(UnwritableOutputError) as e:
        train(base.replace(output=str(out / "run")), progress=False)
    one_line(e.value, str(out / "run"), "read-only")


# =========================================================================== resources

MEASURED = """
import runpy, sys
report, sys.argv = sys.argv[1], ["wavdiff_utils.train"] + sys.argv[2:]
try:
    runpy.run_module("wavdiff_utils.train", run_name="__main__")
finally:
    try:                                      # this process's peak resident memory, in kB
        with open("/proc/self/status") as fh:
            peak = next(ln.split()[1] for ln in fh if ln.startswith("VmHWM"))
    except (OSError, StopIteration):
        peak = "0"
    with open(report, "w") as fh:
        fh.write(peak)
"""


def run_measured(args, cwd) -> tuple[int, str, float, float]:
    """``python -m wavdiff_utils.train ARGS``: exit status, stderr, seconds and peak MB (0 where
    ``/proc`` does not say; measured by the process itself, as a fork's pages would count)."""
    report = cwd / "peak.txt"
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", MEASURED, str(report), *args], cwd=cwd, env=ENV,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return r.returncode, r.stderr, time.monotonic() - t0, int(report.read_text()) / 1024


@pytest.mark.parametrize("name, value, words", [
    ("batch_size", "100000000", ["batch_size 100000000", "needs about", "available", "at most"]),
    ("num_workers", "100000", ["num_workers 100000", "at most", "core"]),
    ("channels", "[8, 1000000]", ["channels 1000000", "at most 4096"]),
    ("grad_accum", "10000000", ["grad_accum 10000000", "at most 1024"]),
    ("crop_frames", "1000000", ["crop_frames=1000000", "wider than the tiles"]),
])
def test_absurd_settings_are_refused_fast_and_small(tiny, tmp_path, name, value, words):
    """Refused in one line, in under 5 s and 500 MB (before torch is imported)."""
    args = ["--set", "data", str(tiny.root), "--set", "output", str(tmp_path / "run"),
            "--set", "device", "cpu", "--set", name, value]
    rc, err, seconds, mb = run_measured(args, tmp_path)
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    one_line(err, *words)
    assert seconds < 5 and mb < 500, (seconds, mb)
    assert not (tmp_path / "run").exists()


def test_a_batch_that_does_not_fit_the_gpu_is_refused_before_torch(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(guards, "gpu_free_memory", lambda: 1 << 30)
    cfg = TrainConfig(data=str(tiny.root), output=str(tmp_path / "run"), **{
        **SMALL, "device": "auto", "batch_size": 100000})
    with pytest.raises(BadParameterError) as e:
        train(cfg, progress=False)
    one_line(e.value, "batch_size 100000", "1.1 GB available", "free on the GPU", "grad_accum")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change, name", [
    ({"crop_frames": 4096}, "crop_frames 4096 frames"),
    ({"crop_frames": 0}, "crop_frames 0: whole tiles of 8192 frames"),
    ({"channels": (64, 128, 256, 512, 1024, 2048)}, "channels (widest block) 2048"),
    ({"batch_size": 64}, "batch_size 64"),
])
def test_settings_that_do_not_fit_name_the_setting_the_estimate_and_the_limit(change, name):
    """The GPU run of ``params/train_gpu.yaml`` on 1024-px tiles, on a card with 16 GB free."""
    from wavdiff_utils.codec.params import load_yaml_params

    gpu = TrainConfig.from_mapping(load_yaml_params(REPO / "params" / "train_gpu.yaml"))
    card = Memory(16 << 30, 0.9, "free on the GPU", 2)
    check_training(gpu, 1024, 256, card)                         # as shipped: fits
    cfg = gpu.replace(**change)
    width = cfg.crop_frames or 8192
    with pytest.raises(BadParameterError) as e:
        check_training(cfg, 1024, width, card)
    one_line(e.value, name, "needs about", "17.2 GB available", "at most", "free on the GPU")
    assert "1024 px high" in str(e.value) if "crop" in name else True


@pytest.mark.parametrize("change", [{"train_timesteps": 10 ** 9}, {"eval_timesteps": 5000},
                                    {"max_text_tokens": 10 ** 6}])
def test_hard_maxima_where_no_estimate_fits(change):
    with pytest.raises(BadParameterError) as e:
        TrainConfig(**change)
    key, value = next(iter(change.items()))
    one_line(e.value, f"{key} {value}", "at most")


def test_running_out_of_memory_anyway_is_one_line_naming_batch_size(base, tmp_path):
    def oom(step, record):
        raise MemoryError

    with pytest.raises(BadParameterError) as e:
        train(base.replace(output=str(tmp_path / "run")), progress=False, callback=oom)
    one_line(e.value, "batch_size 8", "out of memory", "grad_accum")


@pytest.mark.parametrize("change, words", [({"n": 10 ** 9}, ["n 1000000000", "needs about"]),
                                           ({"steps": 10 ** 6}, ["steps 1000000", "at most 1000"])])
def test_absurd_sampling_settings_are_one_line(base, tmp_path, capsys, change, words):
    from wavdiff_utils.train.sample import sample_tiles

    with pytest.raises(BadParameterError) as e:
        sample_tiles(Path(base.output) / "model", tmp_path / "samples", progress=False, **change)
    one_line(e.value, *words)
    assert not (tmp_path / "samples").exists()
    if "n" in change:                             # the command line's --samples: exit 2
        cfg = copy_run(base, tmp_path)
        assert main(cli_args(cfg) + ["--samples", str(change["n"])]) == 2
        err = capsys.readouterr().err               # after the training's progress bar
        errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in err, err
        one_line(errors[0], *words)


# =========================================================================== damaged data

@pytest.fixture(scope="module")
def shards(tiny, tmp_path_factory):
    pytest.importorskip("webdataset")
    from wavdiff_utils.jobs.shard_writer import write_shards

    dest = tmp_path_factory.mktemp("shards") / "sh"
    write_shards(tiny.root, dest, shard_size=8, progress=False)
    return dest


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("damage", [cut, scribble], ids=["cut", "garbage"])
def test_training_on_a_damaged_shard_is_one_line_naming_the_tar(shards, tmp_path, capsys,
                                                                damage, workers):
    """The last training shard cut in half, or overwritten in place; read in the main process
    or in loader workers (whose errors torch re-raises with their traceback as the message)."""
    sh = tmp_path / "sh"
    shutil.copytree(shards, sh)
    bad = sorted(sh.glob("train-*.tar"))[-1]
    damage(bad)
    cfg = TrainConfig(data=str(sh), output=str(tmp_path / "run"), steps=20,
                      **{**SMALL, "num_workers": workers, "checkpoint_every": 0})
    with pytest.raises(WavdiffError) as e:
        train(cfg, progress=False)
    one_line(e.value, str(bad))
    rc = main(cli_args(cfg) + ["--set", "num_workers", str(workers), "--samples", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    one_line(err, bad.name)


class _Failing:
    """An iterable dataset whose reading fails the way ``exc`` says (in a loader worker)."""

    def __init__(self, exc):
        self.exc = exc

    def __iter__(self):
        raise self.exc


@pytest.mark.parametrize("exc, kind, words", [
    (BadShardError("/d/train-000003.tar: damaged shard (member a_0001.png): cut short"),
     BadShardError, ["/d/train-000003.tar: damaged shard (member a_0001.png): cut short"]),
    (OSError(5, "Input/output error", "/d/train-000001.tar"), TrainDataError,
     ["/d: reading the training data failed", "Input/output error"]),
], ids=["wavdiff-error", "foreign-error"])
def test_an_error_in_a_loader_worker_is_its_one_line(exc, kind, words):
    from torch.utils.data import DataLoader, IterableDataset

    data = type("Failing", (_Failing, IterableDataset), {})(exc)
    with pytest.raises(kind) as e:
        list(batches(DataLoader(data, num_workers=1), data="/d"))
    one_line(e.value, *words)
    assert "worker" not in str(e.value) or kind is TrainDataError
