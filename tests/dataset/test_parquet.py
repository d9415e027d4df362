"""The Parquet export (issue 24): rows bit-identical with the PNG tiles through ``datasets``
(a folder, ``data_files``, streaming, torch), our own loader, a row back to audio, the card,
resume and a changed source, and hostile input (a missing folder, damaged files, a read-only
output), each one line naming the file."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.audio_fixtures import music_like, write
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.codec.transform import decode_array
from wavdiff_utils.dataset.export import export_dataset, read_metadata
from wavdiff_utils.errors import (BadShardError, MissingInputError, UnwritableOutputError,
                                  WavdiffError, one_line)
from wavdiff_utils.io.png16 import decode_png16
from wavdiff_utils.jobs.pipeline import run_pipeline
from wavdiff_utils.paths import SAMPLE_AUDIO

datasets = pytest.importorskip("datasets")
torch = pytest.importorskip("torch")
from wavdiff_utils.dataset.parquet import write_parquet  # noqa: E402
from wavdiff_utils.dataset.parquet_read import (PARQUET_INDEX, ParquetTiles,  # noqa: E402
                                                iter_parquet_rows, parquet_paths,
                                                read_parquet_index, row_audio, row_pixels)

P = CodecParams(size=256)
REPO = Path(__file__).resolve().parents[2]


def _make(src: Path, out: Path):
    res = run_pipeline(src, out, params=P, captioner="metadata", report=False, progress=False,
                       log=None)
    assert res.ok
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """6 s of the bundled song (real music: 9 tiles, train) and two short songs that fall in
    validation and test; a second captioner's caption on one tile."""
    root = tmp_path_factory.mktemp("parquet")
    src = root / "in"
    src.mkdir()
    y, sr = sf.read(str(SAMPLE_AUDIO), frames=6 * 44100, dtype="float32")
    write(src / "wavdiff_demo.wav", y, sr)
    write(src / "song20.wav", music_like(0.7, seed=1), 44100)
    write(src / "song7.wav", music_like(0.5, seed=2), 44100)
    out = _make(src, root / "ds")
    (out / "wavdiff_demo" / "wavdiff_demo_0002.tags.txt").write_text("A Rock track.\n")
    return out


@pytest.fixture(scope="module")
def export(dataset, tmp_path_factory):
    dest = tmp_path_factory.mktemp("export") / "pq"
    ex = write_parquet(dataset, dest, shard_size=4, progress=False)
    return dest, ex


def _pngs(dataset):
    return {r["file_name"]: decode_png16(dataset / r["file_name"]) for r in read_metadata(dataset)}


def _one_line(kind, fn, path, *words):
    with pytest.raises(kind) as e:
        fn()
    msg = one_line(e.value)
    assert isinstance(e.value, WavdiffError) and "\n" not in str(e.value)
    assert str(path) in msg and all(w in msg for w in words), msg
    return msg


def test_datasets_reads_every_row_bit_identical(dataset, export, tmp_path):
    dest, ex = export
    pngs = _pngs(dataset)
    assert ex.written == len(ex.data["shards"]) >= 4 and ex.data["total_rows"] == len(pngs)
    files = {s: [str(p) for p in parquet_paths(dest, s)] for s in ex.data["splits"]}
    ds = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "c"))
    assert set(ds) == {"train", "validation", "test"}
    assert ds["train"].features["tile"] == datasets.Array3D((3, 256, 256), "uint16")
    seen, deep = 0, 0
    for split in ds:
        rows = ds[split].with_format("numpy", columns=["tile"], dtype="uint16",
                                     output_all_columns=True)
        for row in rows:
            px = pngs[row["file_name"]]
            assert row["tile"].dtype == np.uint16 and row["tile"].shape == (3, 256, 256)
            assert np.array_equal(row["tile"].transpose(1, 2, 0), px)        # all 16 bits
            deep += int(np.any(px % 257))
            assert row["split"] == split and CodecParams.from_dict(json.loads(row["codec"])) == P
            seen += 1
    assert seen == deep == len(pngs)
    meta = {r["file_name"]: r for r in read_metadata(dataset)}
    rows = list(ds["train"].select_columns([c for c in ds["train"].column_names if c != "tile"]))
    for row in rows:
        want = meta[row["file_name"]]
        assert {k: row[k] for k in want} == want
    tagged = [r for r in rows if r["file_name"].endswith("_0002.png")][0]
    assert tagged["caption_tags"] == "A Rock track." and tagged["text"]
    assert tagged["caption_source"] == "metadata"


def test_streaming_and_torch_give_the_same_16_bits(dataset, export, tmp_path):
    dest, _ = export
    pngs = _pngs(dataset)
    files = [str(p) for p in parquet_paths(dest, "train")]
    stream = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    n = 0
    for row in stream.with_format("numpy"):
        assert np.array_equal(row_pixels(row), pngs[row["file_name"]])
        n += 1
    assert n == sum(f.startswith("wavdiff_demo/") for f in pngs)
    first = next(iter(stream))                                  # plain python: nested lists
    assert np.array_equal(row_pixels(first), pngs[first["file_name"]])
    ds = datasets.load_dataset("parquet", data_files=files, split="train",
                               cache_dir=str(tmp_path / "c")).with_format("torch")
    t = ds[3]["tile"]
    assert isinstance(t, torch.Tensor) and t.shape == (3, 256, 256)
    want = torch.from_numpy(pngs[ds[3]["file_name"]].transpose(2, 0, 1).astype(np.int64))
    assert torch.equal(t.long(), want)
    ours = ParquetTiles(dest)[3]["pixel_values"]
    assert torch.equal(t.float() / 32767.5 - 1, ours)
    u16 = ds.with_format("numpy", columns=["tile"], dtype="uint16", output_all_columns=True)
    assert torch.equal(torch.from_numpy(u16[3]["tile"].astype("float32")) / 32767.5 - 1, ours)


def test_the_folder_loads_as_a_hub_repo_by_its_card(export, tmp_path):
    dest, ex = export
    card = (dest / "README.md").read_text()
    head = card.split("---")[1]
    assert 'path: "data/validation-*.parquet"' in head and "- split: test" in head
    for words in ("streaming=True", "with_format(\"torch\")", "decode_array", "push_to_hub",
                  "upload_folder", "CodecParams.from_dict(json.loads(row[\"codec\"]))"):
        assert words in card
    ds = datasets.load_dataset(str(dest), cache_dir=str(tmp_path / "c"))
    assert {s: len(ds[s]) for s in ds} == {k: v["rows"] for k, v in ex.data["splits"].items()}
    index = read_parquet_index(dest)
    assert index["tile_shape"] == [3, 256, 256] and index["codec"] == P.to_dict()
    assert index["total_bytes"] == sum(p.stat().st_size for p in parquet_paths(dest))
    assert abs(index["seconds"] - (6 + 0.7 + 0.5)) < 0.01


def test_two_exports_in_one_datasets_cache_each_load_their_own_rows(dataset, tmp_path):
    """``datasets`` caches a local folder by its base name (``parquet`` for every export) and a
    hash of its card's YAML: two exports with the same splits shared one cache entry, and
    ``load_dataset(folder)`` gave the second the first one's rows.  The card's content id
    keeps them apart."""
    small = tmp_path / "small"
    shutil.copytree(dataset, small, ignore=shutil.ignore_patterns("parquet", "shards"))
    rows = (small / "metadata.jsonl").read_text().splitlines()
    kept = [r for r in rows if json.loads(r)["song"] != "wavdiff_demo"][:2] + \
        [r for r in rows if json.loads(r)["song"] == "wavdiff_demo"][:3]
    (small / "metadata.jsonl").write_text("".join(r + "\n" for r in kept))
    big = write_parquet(dataset, tmp_path / "big" / "parquet", progress=False)
    little = write_parquet(small, tmp_path / "little" / "parquet", progress=False)
    assert list(big.data["splits"]) == list(little.data["splits"])      # the same YAML but ...
    cache = str(tmp_path / "cache")
    for ex, want in ((big, len(read_metadata(dataset))), (little, 5), (big, None)):
        ds = datasets.load_dataset(str(ex.folder), cache_dir=cache)
        assert sum(len(ds[s]) for s in ds) == (want or len(read_metadata(dataset)))
    head = (tmp_path / "little" / "parquet" / "README.md").read_text().split("---")[1]
    assert "description: \"wavdiff Parquet export " in head


def test_our_loader_gives_the_png_loaders_items(dataset, export):
    from wavdiff_utils.dataset.loader import TileDataset

    dest, _ = export
    png = {it["file_name"]: it for it in TileDataset(dataset)}
    ours = ParquetTiles(dest, split=None)
    assert len(ours) == len(png)
    for i in range(len(ours)):
        it = ours[i]
        assert torch.equal(it["pixel_values"], png[it["file_name"]]["pixel_values"])
        assert it["text"] == png[it["file_name"]]["text"]
    loader = torch.utils.data.DataLoader(ParquetTiles(dest, split="train"), batch_size=4,
                                         num_workers=2)
    batches = list(loader)
    assert sum(len(b["pixel_values"]) for b in batches) == len(ParquetTiles(dest))
    assert all(b["pixel_values"].dtype == torch.float32 for b in batches)


def test_a_row_alone_turns_back_into_audio(dataset, export, tmp_path):
    dest, _ = export
    rows = [r for r in iter_parquet_rows(dest, "train")]
    last = rows[-1]                                              # the song's padded last tile
    audio = row_audio(last)
    want = decode_array([decode_png16(dataset / last["file_name"])], P,
                        n_samples=last["end_sample"] - last["start_sample"])
    assert audio.dtype == np.float32 and np.array_equal(audio, want)
    assert len(audio) == last["end_sample"] - last["start_sample"] < 256 * 128
    files = [str(p) for p in parquet_paths(dest, "train")]
    hf = datasets.load_dataset("parquet", data_files=files, split="train",
                               cache_dir=str(tmp_path / "c")).with_format("torch")
    assert np.array_equal(row_audio(hf[len(hf) - 1]), audio)     # an int64 tensor row too


def test_rerun_keeps_what_is_up_to_date_and_a_changed_source_is_rewritten(dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    first = write_parquet(ds, shard_size=4, progress=False)
    dest = ds / "parquet"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (dest / "data").iterdir()}
    again = write_parquet(ds, shard_size=4, progress=False)
    assert (again.written, again.kept) == (0, len(first.data["shards"]))
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes())
            for p in (dest / "data").iterdir()} == before
    cap = ds / "song20" / "song20_0000.txt"                       # a caption edited
    cap.write_text("A new caption.\n")
    export_dataset(ds)
    third = write_parquet(ds, shard_size=4, progress=False)
    assert third.written == 1
    assert [r["text"] for r in iter_parquet_rows(dest, "validation")] == ["A new caption."]
    src = tmp_path / "in"                                         # the source song changed
    src.mkdir()
    write(src / "song7.wav", music_like(0.5, seed=9), 44100)
    _make(src, ds)
    fourth = write_parquet(ds, shard_size=4, progress=False)
    assert fourth.written == 1 and fourth.kept == len(first.data["shards"]) - 1
    (row,) = list(iter_parquet_rows(dest, "test"))
    px = decode_png16(ds / row["file_name"])
    assert np.array_equal(row_pixels(row), px)
    assert not np.array_equal(px, decode_png16(dataset / row["file_name"]))
    names = {p.name for p in (dest / "data").iterdir()}
    assert {n: b for n, (_, b) in before.items() if n.startswith("train")} == \
        {p.name: p.read_bytes() for p in (dest / "data").glob("train-*")} and not \
        [n for n in names if n.startswith(".")]


KILLED = """
import os, signal, sys
import wavdiff_utils.dataset.parquet as pq
real, calls = pq._table, [0]
def dying(*a, **k):
    calls[0] += 1
    if calls[0] == 2:                         # the second shard (one row group a shard)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
pq._table = dying
pq.write_parquet(sys.argv[1], sys.argv[2], shard_size=4, progress=False)
"""


def test_kill_9_mid_shard_then_a_rerun_writes_only_what_is_missing(dataset, export, tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    dest = tmp_path / "pq"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, str(script), str(dataset), str(dest)], env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == -9, r.stderr
    assert not (dest / PARQUET_INDEX).exists()
    assert [p.name for p in (dest / "data").glob("[!.]*")] == ["train-000000.parquet"]
    assert list((dest / "data").glob(".train-000001.parquet.*"))          # the temporary
    again = write_parquet(dataset, dest, shard_size=4, progress=False)
    n = len(export[1].data["shards"])
    assert (again.written, again.kept) == (n - 1, 1) and not list((dest / "data").glob(".*"))
    ref = export[0] / "data"
    assert {p.name: p.read_bytes() for p in (dest / "data").iterdir()} == \
        {p.name: p.read_bytes() for p in ref.iterdir()}                   # the same bytes


def test_damaged_shards_are_one_line_and_a_rerun_repairs_them(dataset, export, tmp_path):
    dest = tmp_path / "pq"
    shutil.copytree(export[0], dest)
    shard = dest / "data" / "train-000001.parquet"
    good = shard.read_bytes()
    data = bytearray(good)
    for k in range(len(data) // 3, len(data) // 3 + 64):                   # same size, bits flipped
        data[k] ^= 0xFF
    shard.write_bytes(bytes(data))
    rows = ParquetTiles(dest)
    _one_line(BadShardError, lambda: [rows[i] for i in range(len(rows))], shard, "damaged")
    _one_line(BadShardError, lambda: list(iter_parquet_rows(dest)), shard)
    shard.write_bytes(good[: len(good) // 2])                               # cut short
    _one_line(BadShardError, lambda: ParquetTiles(dest), shard, "bytes")
    shard.write_bytes(b"not parquet at all" * 10)
    again = write_parquet(dataset, dest, shard_size=4, progress=False)
    assert again.written == 1 and shard.read_bytes() == good
    (dest / PARQUET_INDEX).write_text("{garbage")
    _one_line(BadShardError, lambda: ParquetTiles(dest), dest / PARQUET_INDEX, "index")
    shard.unlink()
    write_parquet(dataset, dest, shard_size=4, progress=False)             # index and shard back
    (dest / "data" / "test-000000.parquet").unlink()
    _one_line(MissingInputError, lambda: ParquetTiles(dest, split=None),
              dest / "data" / "test-000000.parquet", "missing")


def test_missing_folders_are_one_line(dataset, tmp_path):
    _one_line(MissingInputError, lambda: write_parquet(tmp_path / "nope", progress=False),
              tmp_path / "nope", "does not exist")
    (tmp_path / "empty").mkdir()
    _one_line(MissingInputError, lambda: write_parquet(tmp_path / "empty", progress=False),
              tmp_path / "empty" / "metadata.jsonl")
    _one_line(MissingInputError, lambda: ParquetTiles(tmp_path / "nope"), tmp_path / "nope")
    _one_line(MissingInputError, lambda: ParquetTiles(tmp_path / "empty"),
              tmp_path / "empty" / PARQUET_INDEX)
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds, ignore=shutil.ignore_patterns("parquet"))
    (ds / "song7" / "song7_0000.png").unlink()                               # a listed tile gone
    _one_line(BadShardError, lambda: write_parquet(ds, progress=False),
              ds / "song7" / "song7_0000.png", "run the pipeline again")


def test_read_only_output_names_the_final_shard_and_a_rerun_completes(dataset, export, tmp_path,
                                                                       monkeypatch):
    import wavdiff_utils.paths as paths

    real = paths.tempfile.mkstemp

    def refuse(*a, dir=None, prefix="", **k):
        if prefix.endswith(".parquet."):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), f"{dir}/{prefix}x1y2.parquet")
        return real(*a, dir=dir, prefix=prefix, **k)
    monkeypatch.setattr(paths.tempfile, "mkstemp", refuse)
    dest = tmp_path / "pq"
    msg = _one_line(UnwritableOutputError,
                    lambda: write_parquet(dataset, dest, shard_size=4, progress=False),
                    dest / "data" / "train-000000.parquet", "read-only")
    assert msg.startswith(str(dest / "data" / "train-000000.parquet")) and "x1y2" not in msg
    assert not (dest / PARQUET_INDEX).exists() and not list((dest / "data").iterdir())
    monkeypatch.undo()
    again = write_parquet(dataset, dest, shard_size=4, progress=False)
    assert again.written == len(export[1].data["shards"])


def test_read_only_folder_for_real(dataset, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the patched test covers the same fault")
    try:
        _one_line(UnwritableOutputError, lambda: write_parquet(dataset, ro, progress=False),
                  ro, "read-only")
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_bad_options_are_one_line(dataset, tmp_path):
    from wavdiff_utils.errors import BadParameterError

    for kw, words in (({"compression": "gzip"}, "zstd, none"), ({"shard_size": "0MB"}, "500MB"),
                      ({"shard_size": "1.5"}, "rows"), ({"shard_size": True}, "True")):
        _one_line(BadParameterError,
                  lambda: write_parquet(dataset, tmp_path / "pq", progress=False, **kw), "", words)
    assert not (tmp_path / "pq").exists()


def test_the_benchmark_runs_and_prints_ratios(dataset, tmp_path, capsys):
    from wavdiff_utils.bench.parquet import main

    assert main(["--data", str(dataset), "--work", str(tmp_path), "--repeats", "1",
                 "--no-streaming"]) == 0
    out = capsys.readouterr().out
    assert "| Parquet, zstd |" in out and "| Parquet, none |" in out
    assert "TileDataset" in out and "numpy uint16" in out and "rows checked bit-exact" in out


def test_the_pipeline_and_export_dataset_write_parquet_on_request(tmp_path):
    """--format parquet on the command line, and export_dataset(format="parquet")."""
    import json as _json

    from tests.audio_fixtures import music_like, write
    from wavdiff_utils.dataset.export import export_dataset
    from wavdiff_utils.jobs.cli import main

    src = write(tmp_path / "a.wav", music_like(2.0, 44100), 44100)
    out = tmp_path / "out"
    assert main(["-i", str(src), "-o", str(out), "--size", "64", "--captioner", "metadata",
                 "--no-report", "-q", "--format", "parquet"]) == 0
    record = _json.loads((out / "wavdiff_batch.json").read_text())
    assert record["parquet"]["rows"] > 0 and not record["missing"]
    assert export_dataset(out, format="parquet").parquet.data["shards"]
    assert main(["-i", str(src), "-o", str(out), "--format", "feather", "-q"]) == 2
