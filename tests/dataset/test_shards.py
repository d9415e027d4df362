"""WebDataset shards (issue 11): a round trip at 16 bits, the index, a DataLoader with several
workers, atomic per-shard writes, and re-runs that rewrite only what changed."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.audio_fixtures import music_like, write
from wavdiff_utils.io.png16 import decode_png16
from wavdiff_utils.dataset.tensors import pixels_to_tensor
from wavdiff_utils.dataset.export import read_metadata
from wavdiff_utils.errors import BadParameterError, BadShardError, MissingInputError, WavdiffError
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.jobs.pipeline import run_pipeline

wds = pytest.importorskip("webdataset")
from wavdiff_utils.dataset.shards import (SHARD_INDEX, iter_shard_raw, iter_shard_samples,
                                          parse_shard_size, read_shard_index, sample_key,
                                          shard_paths)
from wavdiff_utils.jobs.shard_writer import ShardWriteError, write_shards

P = CodecParams(size=128)
# song names whose hash puts them in each split (dataset.song_split): train, validation, test
SONGS = {"song0": 1.2, "song1": 0.9, "song20": 0.7, "song7": 0.5, "my.song": 0.6}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small dataset (metadata captions) with a second captioner's caption on one tile."""
    root = tmp_path_factory.mktemp("shards")
    src = root / "in"
    src.mkdir()
    for k, (name, seconds) in enumerate(SONGS.items()):
        write(src / f"{name}.wav", music_like(seconds, seed=k), 44100)
    out = root / "ds"
    res = run_pipeline(src, out, params=P, captioner="metadata", report=False, progress=False,
                       log=None)
    assert res.ok
    (out / "song1" / "song1_0002.tags.txt").write_text("A Rock track featuring Drums.\n")
    return out


def test_round_trip_is_bit_exact_at_16_bits(dataset, tmp_path):
    idx = write_shards(dataset, tmp_path / "sh", shard_size=4, progress=False)
    rows = read_metadata(dataset)
    data = read_shard_index(tmp_path / "sh")
    assert data["total_samples"] == len(rows) == sum(s["samples"] for s in data["shards"])
    assert {k: v["samples"] for k, v in data["splits"].items()} == \
        {s: sum(r["split"] == s for r in rows) for s in ("train", "validation", "test")}
    assert all(s["samples"] <= 4 for s in data["shards"]) and len(data["shards"]) == idx.written
    assert data["codec"] == P.to_dict() and data["total_bytes"] == sum(
        (tmp_path / "sh" / s["name"]).stat().st_size for s in data["shards"])
    samples = list(iter_shard_samples(tmp_path / "sh"))
    by_file = {r["file_name"]: r for r in rows}
    assert sorted(s["meta"]["file_name"] for s in samples) == sorted(by_file)
    assert len({s["key"] for s in samples}) == len(rows)
    deep = 0
    for s in samples:
        png = dataset / s["meta"]["file_name"]
        px = decode_png16(png)
        assert s["pixels"].dtype == np.uint16 and s["pixels"].shape == (128, 128, 3)
        assert np.array_equal(s["pixels"], px)                    # all 16 bits
        deep += int(np.any(px % 257))                             # not 8-bit data scaled up
        row = by_file[s["meta"]["file_name"]]
        assert s["caption"] == row["text"] and s["caption"]
        assert s["split"] == row["split"] and s["meta"]["codec"] == P.to_dict()
        assert s["meta"]["tile_index"] == row["tile_index"] and s["meta"]["song"] == row["song"]
    assert deep == len(samples)
    raw = {r["__key__"]: r for r in iter_shard_raw(shard_paths(tmp_path / "sh"))}
    for key, r in raw.items():                                    # the file's bytes, as written
        assert r["png"] == (dataset / json.loads(r["json"])["file_name"]).read_bytes()
    assert raw["song1_0002"]["tags.txt"] == b"A Rock track featuring Drums."
    assert "my_song-" in sample_key("my.song", 0) and "." not in sample_key("my.song", 3)


def test_split_filter_and_one_split_only(dataset, tmp_path):
    write_shards(dataset, tmp_path / "sh", progress=False)           # 1GB: one shard per split
    data = read_shard_index(tmp_path / "sh")
    assert [s["name"] for s in data["shards"]] == ["train-000000.tar", "validation-000000.tar",
                                                   "test-000000.tar"]
    for split in ("train", "validation", "test"):
        got = list(iter_shard_samples(tmp_path / "sh", split=split))
        assert got and {s["split"] for s in got} == {split}
        assert len(got) == data["splits"][split]["samples"]
    with pytest.raises(BadParameterError, match="'dev'"):
        list(iter_shard_samples(tmp_path / "sh", split="dev"))
    with tarfile.open(tmp_path / "sh" / "train-000000.tar") as tar:   # a plain tar, fixed times
        assert {m.mtime for m in tar.getmembers()} == {0}
        assert tar.getnames()[:3] == ["song0_0000.json", "song0_0000.png", "song0_0000.txt"]


def _shares(ds, readers: int, monkeypatch) -> list:
    """What ``ds._share()`` gives each of ``readers`` DataLoader workers."""
    import torch

    out = []
    for wid in range(readers):
        info = type("Info", (), {"id": wid, "num_workers": readers})()
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda info=info: info)
        out.append(ds._share())
    monkeypatch.undo()
    return out


@pytest.mark.parametrize("shard_size,split,whole", [(3, None, True), ("1GB", "train", False)],
                         ids=["whole-shards-per-worker", "one-shard-two-workers"])
def test_dataloader_with_two_workers_gives_every_sample_once(dataset, tmp_path, shard_size, split,
                                                             whole, monkeypatch):
    torch = pytest.importorskip("torch")
    from wavdiff_utils.dataset.loader import ShardDataset

    write_shards(dataset, tmp_path / "sh", shard_size=shard_size, progress=False)
    ds = ShardDataset(tmp_path / "sh", split=split)
    rows = [r for r in read_metadata(dataset) if split is None or r["split"] == split]
    assert len(ds) == len(rows) and (len(ds.paths) == 1) == (split == "train")
    shares = _shares(ds, 2, monkeypatch)           # the sharing mode this case is about
    if whole:                                      # each reads its own whole shards
        assert all(keep is None for _, keep in shares)
        mine = [p for paths, _ in shares for p in paths]
        assert sorted(mine) == sorted(ds.paths) and all(paths for paths, _ in shares)
    else:                                          # both read the one shard, each keeps half
        assert all(paths == ds.paths and keep is not None for paths, keep in shares)
        assert [shares[0][1](i) for i in range(4)] == [True, False, True, False]
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    seen = {}
    for batch in loader:
        assert batch["pixel_values"].dtype == torch.float32
        for i, name in enumerate(batch["file_name"]):
            assert name not in seen
            seen[name] = batch["pixel_values"][i]
    assert sorted(seen) == sorted(r["file_name"] for r in rows)
    for name, x in seen.items():
        assert torch.equal(x, pixels_to_tensor(decode_png16(dataset / name)))
    assert {item["split"] for item in ShardDataset(tmp_path / "sh")} == {"train"}   # the default


def test_rerun_rewrites_only_changed_shards_and_sweeps_leftovers(dataset, tmp_path):
    sh = tmp_path / "sh"
    first = write_shards(dataset, sh, shard_size=3, progress=False)
    times = {p.name: p.stat().st_mtime_ns for p in sh.glob("*.tar")}
    again = write_shards(dataset, sh, shard_size=3, progress=False)
    assert (again.written, again.kept) == (0, first.written)
    (sh / ".train-000000.tar.k1ll3d.tar").write_bytes(b"half a shard")   # a killed writer's
    cap = dataset / "song20" / "song20_0001.txt"
    old = cap.read_text()
    try:
        cap.write_text("an edited caption\n")
        from wavdiff_utils.dataset.export import export_dataset
        export_dataset(dataset)
        third = write_shards(dataset, sh, shard_size=3, progress=False)
        assert third.written == 1 and third.kept == first.written - 1
        assert third.data["codec"] == P.to_dict()          # kept shards' codecs carried over
        assert {tuple(x["codecs"]) for x in third.shards} == {(0,)}
        changed = [p.name for p in sh.glob("*.tar") if p.stat().st_mtime_ns != times[p.name]]
        assert changed == ["validation-000000.tar"]
        assert not list(sh.glob(".*"))
        assert any(s["caption"] == "an edited caption"
                   for s in iter_shard_samples(sh, split="validation"))
    finally:
        cap.write_text(old)
        export_dataset(dataset)


def test_a_failed_shard_leaves_no_index_and_no_partial_file(dataset, tmp_path, monkeypatch):
    sh = tmp_path / "sh"
    write_shards(dataset, sh, shard_size=4, progress=False)
    reference = {p.name: p.read_bytes() for p in sh.glob("*.tar")}
    for p in sh.glob("*.tar"):
        p.unlink()
    real = wds.TarWriter.write
    calls = {"n": 0}

    def dying(self, obj):
        calls["n"] += 1
        if calls["n"] == 6:                       # in the middle of the second shard
            raise OSError(28, "No space left on device")
        return real(self, obj)

    monkeypatch.setattr(wds.TarWriter, "write", dying)
    with pytest.raises(ShardWriteError, match="train-000001.tar") as err:
        write_shards(dataset, sh, shard_size=4, progress=False)
    assert "run again" in str(err.value)
    assert not (sh / SHARD_INDEX).exists()                     # no index over a partial set
    assert not (sh / "train-000001.tar").exists() and not list(sh.glob(".*"))
    monkeypatch.setattr(wds.TarWriter, "write", real)
    write_shards(dataset, sh, shard_size=4, progress=False)
    assert {p.name: p.read_bytes() for p in sh.glob("*.tar")} == reference


@pytest.mark.parametrize("value,expected", [("1GB", (10 ** 9, None)), ("500MB", (5 * 10 ** 8, None)),
                                            ("2GiB", (2 * 2 ** 30, None)), ("1.5 gb", (15 * 10 ** 8, None)),
                                            (2000, (None, 2000)), ("2000", (None, 2000))])
def test_shard_size_is_bytes_with_a_unit_or_samples(value, expected):
    assert parse_shard_size(value) == expected


@pytest.mark.parametrize("value", [0, -3, "0", "1.5", "12XB", "GB", True, None, "1 G B"])
def test_bad_shard_size_names_the_value(value):
    with pytest.raises(BadParameterError, match="shard_size .* got"):
        parse_shard_size(value)


def _one_line_error(kind, match, call):
    with pytest.raises(kind, match=match) as err:
        call()
    assert isinstance(err.value, WavdiffError) and "\n" not in str(err.value)
    return str(err.value)


def test_missing_index_and_missing_metadata_are_one_line(dataset, tmp_path):
    msg = _one_line_error(MissingInputError, "shards.json does not exist",
                          lambda: list(iter_shard_samples(tmp_path)))
    assert str(tmp_path / SHARD_INDEX) in msg
    assert isinstance(MissingInputError(msg), FileNotFoundError)      # except FileNotFoundError
    msg = _one_line_error(MissingInputError, "metadata.jsonl",
                          lambda: write_shards(tmp_path, progress=False))
    assert str(tmp_path) in msg


@pytest.mark.parametrize("content,match", [("{not json", "unreadable shard index"),
                                           ('{"format": "other"}', "not a wavdiff shard index")])
def test_a_bad_index_is_one_line_naming_it(tmp_path, content, match):
    (tmp_path / SHARD_INDEX).write_text(content)
    msg = _one_line_error(BadShardError, match, lambda: read_shard_index(tmp_path))
    assert str(tmp_path / SHARD_INDEX) in msg


def test_a_missing_shard_and_an_unseen_folder_name_the_file(dataset, tmp_path):
    from wavdiff_utils.jobs.shard_writer import write_shard

    sh = tmp_path / "sh"
    write_shards(dataset, sh, shard_size=4, progress=False)
    gone = shard_paths(sh)[1]
    gone.unlink()
    msg = _one_line_error(MissingInputError, "shard listed in shards.json is missing",
                          lambda: list(iter_shard_samples(sh)))
    assert str(gone) in msg
    msg = _one_line_error(MissingInputError, "not found on node",
                          lambda: write_shard(tmp_path / "nowhere", sh / "x.tar", []))
    assert str(tmp_path / "nowhere") in msg and "every node" in msg


def test_cli_shards_into_a_folder_of_its_own(dataset, tmp_path):
    import subprocess
    import sys
    import os
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    src = tmp_path / "in"
    src.mkdir()
    write(src / "x.wav", music_like(0.8, seed=3), 44100)
    r = subprocess.run([sys.executable, "-m", "wavdiff_utils", "-i", str(src), "-o",
                        str(tmp_path / "out"), "--size", "128", "--captioner", "metadata",
                        "--no-report", "-q", "--shards", str(tmp_path / "shards"),
                        "--shard-size", "2"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("shards:")]
    assert line and f"in {tmp_path / 'shards'}" in line[0] and "5 samples" in line[0]
    assert len(read_shard_index(tmp_path / "shards")["shards"]) == 3
    record = json.loads((tmp_path / "out" / "wavdiff_batch.json").read_text())
    assert record["shards"]["samples"] == 5 and record["shards"]["written"] == 3
