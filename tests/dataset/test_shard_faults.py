"""Damaged shards and faults while writing them (issue 20, item 3 and the shards' share of 4
and 7): every error is one ``WavdiffError`` line naming the ``.tar`` file and the member, no
duplicate or stale sample trains silently, and a failed write leaves no index and no partial
file, then one re-run writes what is missing.

How the faults are made: shards cut short, emptied, filled with garbage, replaced by a copy of
another, or changed in place (same size); a tar written by hand with one key twice; an index as
an older version wrote it (no checksums); full disk and read-only through a patched writer
(``ENOSPC``, ``EROFS``, ``EACCES``), and for real on a tmpfs mounted on the shard folder when
``mount`` works (tests run as root, where permissions are not checked), else skipped.
"""
from __future__ import annotations

import errno
import io
import json
import shutil
import subprocess
import tarfile
import warnings
from pathlib import Path

import pytest

from tests.audio_fixtures import music_like, write
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.errors import (BadShardError, MissingInputError, UnwritableOutputError,
                                  WavdiffError)
from wavdiff_utils.jobs.pipeline import run_pipeline

wds = pytest.importorskip("webdataset")
from wavdiff_utils.dataset.shards import (SHARD_INDEX, decode_sample, iter_shard_raw,  # noqa: E402
                                          iter_shard_samples, read_shard_index, shard_paths)
from wavdiff_utils.jobs.shard_writer import ShardWriteError, write_shards  # noqa: E402

P = CodecParams(size=64)
SONGS = {"song0": 0.4, "song7": 0.25}          # song0 in train, song7 in test (dataset.song_split)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shard_faults")
    src = root / "in"
    src.mkdir()
    for k, (name, seconds) in enumerate(SONGS.items()):
        write(src / f"{name}.wav", music_like(seconds, seed=k), 44100)
    out = root / "ds"
    assert run_pipeline(src, out, params=P, captioner="metadata", report=False, progress=False,
                        log=None).ok
    return out


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """Shards of three samples, as an uninterrupted run writes them: name -> bytes."""
    sh = tmp_path_factory.mktemp("ref") / "sh"
    write_shards(dataset, sh, shard_size=3, progress=False)
    assert len(shard_paths(sh, split="train")) >= 3
    return {p.name: p.read_bytes() for p in sh.glob("*.tar")}


@pytest.fixture
def shards(dataset, reference, tmp_path):
    sh = tmp_path / "sh"
    write_shards(dataset, sh, shard_size=3, progress=False)
    return sh


def _one_line(kind, call, *names) -> str:
    """``call()`` raises ``kind``: a WavdiffError of one line naming each of ``names``."""
    with pytest.raises(kind) as err:
        call()
    msg = str(err.value)
    assert isinstance(err.value, WavdiffError) and "\n" not in msg and "Traceback" not in msg
    for name in names:
        assert str(name) in msg, msg
    for word in ("KeyError", "ReadError", "tarfile", "JSONDecodeError", "UnicodeDecodeError"):
        assert word not in msg, msg
    return msg


def _train(sh) -> list[Path]:
    return shard_paths(sh, split="train")


def _flip(path: Path, member: str) -> None:
    """Change one byte inside ``member``'s data, in place (the shard keeps its size)."""
    with tarfile.open(path) as tar:
        m = tar.getmember(member)
    with open(path, "r+b") as fh:
        fh.seek(m.offset_data + m.size // 2)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0x5A]))


def _old_index(sh: Path) -> None:
    """Make ``sh``'s index as a version without checksums wrote it."""
    data = read_shard_index(sh)
    data["version"] = 1
    data.pop("checksum", None)
    for s in data["shards"]:
        s.pop("checksums", None)
    (sh / SHARD_INDEX).write_text(json.dumps(data, indent=1))


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# =========================================================================== reading


@pytest.mark.parametrize("damage", ["cut-in-half", "cut-at-a-member", "zero-bytes", "garbage"])
def test_defect_3a_damaged_tar_is_one_line_naming_the_shard(shards, damage):
    """Was ``KeyError: 'png'`` (cut) or ``tarfile.ReadError`` (empty, garbage), no file named."""
    victim = _train(shards)[1]
    data = victim.read_bytes()
    with tarfile.open(victim) as tar:
        second = tar.getmembers()[3]                # the second sample's first member
    damaged = {"cut-in-half": data[:len(data) // 2], "cut-at-a-member": data[:second.offset],
               "zero-bytes": b"", "garbage": bytes(range(256)) * (len(data) // 256)}[damage]
    victim.write_bytes(damaged)
    msg = _one_line(BadShardError, lambda: list(iter_shard_samples(shards)), victim)
    assert "write the shards again" in msg


@pytest.mark.parametrize("damage", ["cut-in-half", "zero-bytes", "garbage"])
def test_damaged_tar_without_an_index_still_names_the_shard_and_member(tmp_path, shards, damage):
    """``iter_shard_raw`` on tars outside a shard folder: the tar itself is checked."""
    loose = tmp_path / "loose"
    loose.mkdir()
    victim = loose / "x-000000.tar"
    data = _train(shards)[0].read_bytes()
    victim.write_bytes({"cut-in-half": data[:len(data) // 2 - 700], "zero-bytes": b"",
                        "garbage": b"\x07" * 4096}[damage])
    msg = _one_line(BadShardError, lambda: [decode_sample(r) for r in iter_shard_raw([victim])],
                    victim)
    if damage == "cut-in-half":
        assert "member song0_" in msg


def test_defect_3b_a_changed_sample_of_the_same_size_names_its_member(shards):
    victim = _train(shards)[1]
    key = read_shard_index(shards)["shards"][1]["first_key"]
    _flip(victim, f"{key}.png")
    msg = _one_line(BadShardError, lambda: list(iter_shard_samples(shards)), victim,
                    f"{key}.png")
    assert "checksum" in msg


def test_a_reader_skipping_other_samples_checks_its_own(shards):
    """Sample checks need no extra pass: a reader that skips sample 4 reads the rest."""
    paths = _train(shards)
    key = read_shard_index(shards)["shards"][1]["first_key"]      # sample 3 of the split
    _flip(paths[1], f"{key}.json")
    kept = [r["__key__"] for r in iter_shard_raw(paths, lambda i: i != 3)]
    total = read_shard_index(shards)["splits"]["train"]["samples"]
    assert key not in kept and len(kept) == total - 1
    _one_line(BadShardError, lambda: list(iter_shard_raw(paths, lambda i: i % 2 == 1)),
              paths[1], f"{key}.json")


@pytest.mark.parametrize("old_index", [False, True], ids=["checksums", "old-index"])
def test_defect_3c_a_shard_replaced_by_a_copy_of_another_is_refused(shards, old_index):
    """Was read silently: the copy has the same size, so its samples trained twice."""
    paths = _train(shards)
    assert paths[0].stat().st_size == paths[1].stat().st_size
    shutil.copyfile(paths[0], paths[1])
    if old_index:
        _old_index(shards)
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        _one_line(BadShardError, lambda: list(iter_shard_samples(shards)), paths[1])
    assert len([n for n in notes if "checksums" in str(n.message)]) == old_index
    # each worker alone (one shard each) is refused too, not only a reader of both
    _one_line(BadShardError, lambda: list(iter_shard_raw([paths[1]])), paths[1])


def test_duplicate_keys_are_refused_within_and_across_shards(tmp_path, shards):
    raw = next(iter_shard_raw(_train(shards)[:1]))
    members = [(f"{raw['__key__']}.{e}", raw[e]) for e in ("json", "png", "txt")]
    twice = _tar(tmp_path / "twice-000000.tar", members + members[:1] + members)
    msg = _one_line(BadShardError, lambda: list(iter_shard_raw([twice])), twice,
                    raw["__key__"])
    assert "twice" in msg
    once = _tar(tmp_path / "once-000000.tar", members)
    assert len(list(iter_shard_raw([once]))) == 1
    _one_line(BadShardError, lambda: list(iter_shard_raw([once, once])), once, raw["__key__"])


def test_defect_3d_len_agrees_with_what_is_read(shards):
    """``len()`` said 9 and 6 were read: a shard that differs from the index is refused."""
    pytest.importorskip("torch")
    from wavdiff_utils.dataset.loader import ShardDataset

    ds = ShardDataset(shards)
    assert len(ds) == len(list(ds)) == read_shard_index(shards)["splits"]["train"]["samples"]
    victim = _train(shards)[2]
    victim.write_bytes(victim.read_bytes()[:10240])
    _one_line(BadShardError, lambda: ShardDataset(shards), victim)
    victim.unlink()
    _one_line(MissingInputError, lambda: ShardDataset(shards), victim)


def test_a_sample_count_that_differs_from_the_index_names_the_shard(shards):
    data = read_shard_index(shards)
    data["shards"][0]["samples"] += 1                   # an index that promises one more
    data["shards"][0].pop("checksums", None)
    (shards / SHARD_INDEX).write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        msg = _one_line(BadShardError, lambda: list(iter_shard_samples(shards)),
                        _train(shards)[0])
    assert "holds 3 samples" in msg and "says 4" in msg


def test_shard_dataset_iteration_gives_bad_shard_error_not_a_library_error(shards):
    pytest.importorskip("torch")
    from wavdiff_utils.dataset.loader import ShardDataset

    victim = _train(shards)[0]
    key = read_shard_index(shards)["shards"][0]["last_key"]
    _flip(victim, f"{key}.png")
    ds = ShardDataset(shards)
    _one_line(BadShardError, lambda: list(ds), victim, f"{key}.png")


def test_old_index_reads_with_size_checks_and_one_note(shards, recwarn):
    _old_index(shards)
    n = len(list(iter_shard_samples(shards)))
    list(iter_shard_samples(shards))
    notes = [w for w in recwarn if "checksums" in str(w.message)]
    assert n == read_shard_index(shards)["total_samples"] and len(notes) == 1
    assert str(shards / SHARD_INDEX) in str(notes[0].message)
    victim = _train(shards)[0]
    victim.write_bytes(victim.read_bytes() + b"\0" * 512)          # sizes are still checked
    _one_line(BadShardError, lambda: list(iter_shard_samples(shards)), victim, "bytes")


@pytest.mark.parametrize("member,content,words", [
    ("png", None, "missing"), ("json", b"{not json", "not valid JSON"),
    ("json", b"[1, 2]", "not an object"), ("txt", b"\xff\xfe caption", "not UTF-8"),
    ("png", b"\x89PNG\r\n\x1a\n garbage", "png")],
    ids=["no-png", "bad-json", "json-list", "txt-not-utf8", "png-garbage"])
def test_a_bad_member_names_the_shard_and_the_member(shards, member, content, words):
    raw = next(iter_shard_raw(_train(shards)[:1]))
    if content is None:
        raw.pop(member)
    else:
        raw[member] = content
    msg = _one_line(BadShardError, lambda: decode_sample(raw), raw["__url__"],
                    f"{raw['__key__']}.{member}")
    assert words in msg


# =========================================================================== writing


def test_defect_3e_a_same_size_corrupted_shard_is_rewritten_on_a_rerun(dataset, shards,
                                                                       reference):
    """Was reported "up to date": the size alone matched."""
    victim = _train(shards)[1]
    _flip(victim, f"{read_shard_index(shards)['shards'][1]['last_key']}.png")
    again = write_shards(dataset, shards, shard_size=3, progress=False)
    assert (again.written, again.kept) == (1, len(reference) - 1)
    assert victim.read_bytes() == reference[victim.name]
    assert len(list(iter_shard_samples(shards))) == again.total_samples


def test_a_copied_shard_is_rewritten_and_an_old_index_gains_checksums(dataset, shards,
                                                                      reference):
    paths = _train(shards)
    shutil.copyfile(paths[0], paths[2])
    assert write_shards(dataset, shards, shard_size=3, progress=False).written == 1
    _old_index(shards)
    _flip(paths[1], f"{read_shard_index(shards)['shards'][1]['first_key']}.json")
    again = write_shards(dataset, shards, shard_size=3, progress=False)   # checked against tiles
    assert (again.written, again.kept) == (1, len(reference) - 1)
    assert any("checksums" in n for n in again.notes)
    assert all(s["checksums"] for s in read_shard_index(shards)["shards"])
    assert {p.name: p.read_bytes() for p in shards.glob("*.tar")} == reference


def test_duplicate_rows_in_metadata_are_refused_before_writing(dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    meta = ds / "metadata.jsonl"
    lines = meta.read_text().splitlines()
    meta.write_text("\n".join(lines + lines[:1]) + "\n")
    _one_line(BadShardError, lambda: write_shards(ds, tmp_path / "sh", progress=False),
              meta, "twice")
    assert not (tmp_path / "sh" / SHARD_INDEX).exists()


def _deny(monkeypatch, err, where):
    """Writes fail with ``err``: every shard's temporary file (``where="create"``, as a
    read-only folder or no permission does), or the second sample written (``"write"``, as a
    disk that fills up in the middle of a shard)."""
    import wavdiff_utils.paths as paths

    if where == "create":
        real = paths.tempfile.mkstemp

        def refuse(*a, dir=None, prefix="", **k):
            if prefix.endswith(".tar."):
                raise OSError(err, __import__("os").strerror(err), f"{dir}/{prefix}x1y2.tar")
            return real(*a, dir=dir, prefix=prefix, **k)
        monkeypatch.setattr(paths.tempfile, "mkstemp", refuse)
    else:
        real = wds.TarWriter.write
        calls = {"n": 0}

        def full(self, obj):
            calls["n"] += 1
            if calls["n"] == 5:                       # the second sample of the second shard
                raise OSError(err, __import__("os").strerror(err))
            return real(self, obj)
        monkeypatch.setattr(wds.TarWriter, "write", full)


@pytest.mark.parametrize("err,where,words", [(errno.ENOSPC, "write", "disk is full"),
                                             (errno.EROFS, "create", "read-only"),
                                             (errno.EACCES, "create", "no permission")],
                         ids=["ENOSPC", "EROFS", "EACCES"])
def test_unwritable_shard_names_the_final_tar_and_a_rerun_writes_what_is_missing(
        dataset, reference, tmp_path, monkeypatch, err, where, words):
    sh = tmp_path / "sh"
    _deny(monkeypatch, err, where)
    with pytest.raises(UnwritableOutputError) as e:
        write_shards(dataset, sh, shard_size=3, progress=False)
    msg = str(e.value)
    first = "train-000001.tar" if where == "write" else "train-000000.tar"
    assert isinstance(e.value, ShardWriteError) and e.value.errno == err
    assert msg.startswith(str(sh / first)) and "cannot be written" in msg and words in msg
    assert "x1y2" not in msg and "/." not in msg and "\n" not in msg     # not a temporary name
    assert not (sh / SHARD_INDEX).exists() and not list(sh.glob(".*"))
    assert sorted(p.name for p in sh.glob("*.tar")) == (["train-000000.tar"]
                                                         if where == "write" else [])
    monkeypatch.undo()
    again = write_shards(dataset, sh, shard_size=3, progress=False)
    assert again.written == len(reference) - (where == "write")
    assert {p.name: p.read_bytes() for p in sh.glob("*.tar")} == reference


def test_an_index_that_cannot_be_written_is_named_and_left_out(dataset, reference, tmp_path,
                                                               monkeypatch):
    import wavdiff_utils.jobs.shard_writer as writer

    sh = tmp_path / "sh"
    real = writer.atomic_path

    def no_index(final, **k):
        if Path(final).name == SHARD_INDEX:
            raise OSError(errno.ENOSPC, "No space left on device", str(final) + ".tmp")
        return real(final, **k)
    monkeypatch.setattr(writer, "atomic_path", no_index)
    msg = _one_line(UnwritableOutputError,
                    lambda: write_shards(dataset, sh, shard_size=3, progress=False),
                    sh / SHARD_INDEX, "disk is full")
    assert ".tmp" not in msg and not (sh / SHARD_INDEX).exists()
    monkeypatch.undo()
    again = write_shards(dataset, sh, shard_size=3, progress=False)
    assert (again.written, again.kept) == (0, len(reference))    # shards checked, index written
    assert {p.name: p.read_bytes() for p in sh.glob("*.tar")} == reference
    assert len(list(iter_shard_samples(sh))) == again.total_samples


KILLED_WRITER = """
import os, signal, sys
import webdataset as wds
from wavdiff_utils.jobs.shard_writer import write_shards
real, calls = wds.TarWriter.write, [0]
def dying(self, obj):
    calls[0] += 1
    if calls[0] == 5:                        # in the middle of the second shard
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, obj)
wds.TarWriter.write = dying
write_shards(sys.argv[1], sys.argv[2], shard_size=3, progress=False)
"""


def test_kill_9_mid_shard_then_a_rerun_writes_only_what_is_missing(dataset, reference,
                                                                    tmp_path):
    import os
    import sys

    script = tmp_path / "killed.py"
    script.write_text(KILLED_WRITER)
    sh = tmp_path / "sh"
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, str(script), str(dataset), str(sh)], env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == -9, r.stderr
    assert not (sh / SHARD_INDEX).exists() and list(sh.glob(".train-000001.tar.*"))
    assert sorted(p.name for p in sh.glob("[!.]*.tar")) == ["train-000000.tar"]
    again = write_shards(dataset, sh, shard_size=3, progress=False)
    assert (again.written, again.kept) == (len(reference) - 1, 1)
    assert not list(sh.glob(".*.tar"))
    assert {p.name: p.read_bytes() for p in sh.glob("*.tar")} == reference


# --------------------------------------------------------------------------- real faults


@pytest.fixture
def mounted(tmp_path):
    """``mount(folder, opts)``: a tmpfs on ``folder``; every mount is undone afterwards."""
    probe = tmp_path / "probe"
    probe.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the patched-writer tests cover the same fault")
    subprocess.run(["umount", str(probe)], capture_output=True)
    done = []

    def mount(folder, opts):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], check=True)
        done.append(folder)
        return folder
    yield mount
    for f in reversed(done):
        subprocess.run(["umount", "-l", str(f)], capture_output=True)


def test_full_disk_for_real_then_a_rerun_with_space(dataset, reference, tmp_path, mounted):
    sh = mounted(tmp_path / "small", "size=200k")
    with pytest.raises(UnwritableOutputError) as e:
        write_shards(dataset, sh, shard_size=3, progress=False)
    msg = str(e.value)
    assert e.value.errno == errno.ENOSPC and "disk is full" in msg and "\n" not in msg
    assert msg.startswith(str(sh)) and msg.split(":")[0].endswith(".tar") and "/." not in msg
    assert not (sh / SHARD_INDEX).exists() and not list(sh.glob(".*.tar"))
    done = {p.name for p in sh.glob("*.tar")}
    subprocess.run(["mount", "-o", "remount,size=40m", str(sh)], check=True)
    again = write_shards(dataset, sh, shard_size=3, progress=False)
    assert again.written == len(reference) - len(done) and again.kept == len(done)
    assert {p.name: p.read_bytes() for p in sh.glob("*.tar")} == reference


def test_read_only_shard_folder_for_real(dataset, tmp_path, mounted):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    sh = mounted(ds / "shards", "ro,size=64k")           # inside the dataset: its lock is there
    msg = _one_line(UnwritableOutputError, lambda: write_shards(ds, progress=False),
                    sh / "train-000000.tar", "read-only")
    assert "/." not in msg
