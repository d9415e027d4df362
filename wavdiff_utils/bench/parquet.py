"""The Parquet export against the PNG folder: size per second of audio and rows read per second.

::

    python -m wavdiff_utils.bench.parquet --sources outputs/music --songs 6 --work /tmp/pq_bench

encodes the first ``--songs`` audio files in ``--sources`` (``scripts/fetch_music.py``
fetches six freely licensed tracks into ``outputs/music``) into ``--work``/``dataset`` (1024x1024
tiles, no captions; an existing dataset is reused, or pass one with ``--data``), then, in one run:

1. **size**: the PNG tiles' bytes and the Parquet export's, with ``zstd`` and with no
   compression, in kB per second of audio, and each against the PNG folder;
2. **reading**: rows per second of our PNG loader
   (:class:`~wavdiff_utils.dataset.TileDataset`: float tensors in [-1, 1]) against
   ``datasets.load_dataset("parquet", data_files=...)`` (not streaming) read the card's way
   (``with_format("numpy", columns=["tile"], dtype="uint16", ...)``) and as torch tensors made
   into the same floats, against our Parquet reader
   (:class:`~wavdiff_utils.dataset.parquet_read.ParquetTiles`), and one pass of ``datasets``
   streaming; one warm-up pass each, then ``--repeats`` passes alternating, median.  The
   one-time conversion ``load_dataset`` makes into its Arrow cache is timed apart.

Every row read through ``datasets`` is checked bit-exact against its PNG tile.  The ratios are
measured in one run on the same machine; absolute figures vary with its load.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..codec.params import CodecParams
from ..dataset.export import METADATA_NAME, read_metadata
from ..dataset.parquet import COMPRESSIONS, write_parquet
from ..dataset.parquet_read import ParquetTiles, parquet_paths, row_pixels
from ..errors import BadParameterError, MissingInputError
from ..io.audio import find_audio_files
from ..io.png16 import decode_png16
from ..jobs.pipeline import run_pipeline
from ..paths import resolve

__all__ = ["build_dataset", "parquet_sizes", "read_rates", "main"]


def build_dataset(sources, dest, *, songs: int = 2, size: int = 1024) -> Path:
    """The first ``songs`` audio files under ``sources`` encoded into ``dest`` (no captions);
    a finished dataset there is reused."""
    dest = Path(dest)
    if (dest / METADATA_NAME).is_file():
        return dest
    root = resolve(sources, must_exist=True)
    files = find_audio_files(root)
    files = sorted([f for f in files if f.parent == root] or files)[:songs]   # not derived/
    if not files:
        raise MissingInputError(f"no audio files under {sources!r}; run scripts/fetch_music.py")
    src = dest.parent / "sources"
    src.mkdir(parents=True, exist_ok=True)
    for f in files:
        if not (src / f.name).exists():
            (src / f.name).symlink_to(f.resolve())
    res = run_pipeline(src, dest, params=CodecParams(size=size), captioner="none", report=False,
                       progress=False, log=None)
    if not res.ok:
        raise BadParameterError(f"{dest}: the dataset could not be built")
    return dest


def parquet_sizes(data: Path, work: Path) -> dict:
    """Bytes per second of audio of the PNG tiles and of the export with each compression."""
    rows = read_metadata(data)
    seconds = sum((r["end_sample"] - r["start_sample"]) / r["sample_rate"] for r in rows)
    png = sum((data / r["file_name"]).stat().st_size for r in rows)
    out = {"rows": len(rows), "seconds": seconds, "png_bytes": png, "exports": {}}
    for c in COMPRESSIONS:
        dest = work / f"parquet_{c}"
        shutil.rmtree(dest, ignore_errors=True)
        t0 = time.perf_counter()
        ex = write_parquet(data, dest, compression=c, progress=False)
        out["exports"][c] = {"folder": dest, "bytes": ex.data["total_bytes"],
                             "write_s": time.perf_counter() - t0}
    return out


def _drain(items) -> int:
    """Make every item of ``items`` (each dropped at once); how many."""
    n = 0
    for _ in items:
        n += 1
    return n


def _rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def _readers(data: Path, export: Path, cache: Path) -> tuple[dict, float, int]:
    """The timed readers (each reads every row once), the ``load_dataset`` conversion time, and
    the rows checked bit-exact."""
    import datasets
    import torch

    from ..dataset.loader import TileDataset

    files = [str(p) for p in parquet_paths(export)]
    t0 = time.perf_counter()
    hf = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(cache))
    convert = time.perf_counter() - t0
    exact = hf.with_format("numpy", columns=["tile"], dtype="uint16", output_all_columns=True)
    checked = 0
    for row in exact:
        if not np.array_equal(row_pixels(row), decode_png16(data / row["file_name"])):
            raise BadParameterError(f"{export}: row {row['file_name']} differs from its PNG")
        checked += 1
    tensors = hf.with_format("torch", columns=["tile"])
    png, ours = TileDataset(data), ParquetTiles(export, split=None)

    def each(ds):                           # every item made, none kept
        return lambda: _drain(ds[i]["pixel_values"] for i in range(len(ds)))

    def floats(rows):                       # the card's way to the loaders' [-1, 1] floats
        return _drain(torch.from_numpy(r["tile"].astype("float32")) / 32767.5 - 1 for r in rows)
    readers = {"PNG folder: TileDataset (ours), float tensors": each(png),
               "datasets: numpy uint16 arrays (the card's way)":
                   lambda: _drain(r["tile"] for r in exact),
               "datasets: numpy uint16 -> float tensors": lambda: floats(exact),
               "datasets: with_format(\"torch\") -> float tensors":
                   lambda: _drain(r["tile"].float() / 32767.5 - 1 for r in tensors),
               "Parquet: ParquetTiles (ours), float tensors": each(ours)}
    return readers, convert, checked


def read_rates(data: Path, export: Path, cache: Path, *, repeats: int = 3,
               streaming: bool = True) -> dict:
    """Rows per second of each reader: a warm-up pass, then ``repeats`` passes alternating."""
    import datasets

    n = len(read_metadata(data))
    readers, convert, checked = _readers(data, export, cache)
    for fn in readers.values():
        fn()
    rates: dict = {k: [] for k in readers}
    for _ in range(repeats):
        for k, fn in readers.items():
            rates[k].append(_rate(fn, n))
    out = {"rows": n, "convert_s": convert, "checked": checked,
           "rates": {k: statistics.median(v) for k, v in rates.items()}}
    if streaming:
        files = [str(p) for p in parquet_paths(export)]
        stream = datasets.load_dataset("parquet", data_files=files, split="train",
                                       streaming=True).with_format("numpy")
        out["rates"]["datasets streaming: numpy int64 arrays (one pass)"] = _rate(
            lambda: _drain(r["tile"] for r in stream), n)
    return out


def report_lines(sizes: dict, reads: dict) -> list[str]:
    """The figures as printed lines."""
    sec, png = sizes["seconds"], sizes["png_bytes"]
    lines = [f"{sizes['rows']} tiles, {sec:.1f} s of audio", "",
             "| storage | MB | kB per s of audio | vs PNG folder | write s |",
             "|---|---:|---:|---:|---:|",
             f"| PNG folder (level 0) | {png / 1e6:,.1f} | {png / sec / 1e3:,.0f} | 1.00 | |"]
    for c, e in sizes["exports"].items():
        lines.append(f"| Parquet, {c} | {e['bytes'] / 1e6:,.1f} | {e['bytes'] / sec / 1e3:,.0f} "
                     f"| {e['bytes'] / png:.2f} | {e['write_s']:.1f} |")
    base = next(iter(reads["rates"].values()))
    lines += ["", f"load_dataset's one-time conversion into its Arrow cache: "
              f"{reads['convert_s']:.1f} s ({reads['rows'] / reads['convert_s']:.1f} rows/s); "
              f"{reads['checked']} rows checked bit-exact against their PNG tiles", "",
              "| reader | rows/s | vs PNG loader |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:,.1f} | {v / base:.2f} |" for k, v in reads["rates"].items()]
    return lines


def main(argv=None) -> int:
    """Command line: ``python -m wavdiff_utils.bench.parquet --help``."""
    ap = argparse.ArgumentParser(prog="python -m wavdiff_utils.bench.parquet",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", default="outputs/music", help="folder of audio files")
    ap.add_argument("--songs", type=int, default=2, help="how many of them (default 2)")
    ap.add_argument("--size", type=int, default=1024, help="tile size (default 1024)")
    ap.add_argument("--data", help="an existing dataset folder instead (with metadata.jsonl)")
    ap.add_argument("--work", help="working folder (default: a temporary one, removed)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per reader")
    ap.add_argument("--no-streaming", action="store_true", help="skip the streaming pass")
    a = ap.parse_args(argv)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="wavdiff_pq_bench_"))
    try:
        data = (resolve(a.data, must_exist=True) if a.data else
                build_dataset(a.sources, work / "dataset", songs=a.songs, size=a.size))
        sizes = parquet_sizes(data, work)
        reads = read_rates(data, sizes["exports"]["zstd"]["folder"], work / "hf_cache",
                           repeats=a.repeats, streaming=not a.no_streaming)
        print("\n".join(report_lines(sizes, reads)))
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
