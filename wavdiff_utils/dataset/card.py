"""The dataset cards (``README.md``): the one written beside ``metadata.jsonl`` by
:func:`wavdiff_utils.dataset.export_dataset`, and the one of a Parquet export
(:func:`wavdiff_utils.dataset.parquet.write_parquet`): how to load it with ``datasets``, stream
it, turn a row back into audio, and share it on the Hugging Face Hub."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from pathlib import Path

from ..codec.params import CodecParams
from ..paths import atomic_path, writing

__all__ = ["write_card", "hms", "PARQUET_COLUMNS", "SIDE_COLUMN", "parquet_features",
           "dataset_name", "write_parquet_card"]


def hms(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


_CARD_MARK = "<!-- wavdiff dataset card -->"


def _storage_lines(res) -> list[str]:
    """The card's "Storage" section: the tiles' bytes per second of audio, and the choice."""
    size = sum(p.stat().st_size for s in res.songs for p in (res.folder / s["song"]).glob("*.png"))
    per_s = size / res.seconds / 1000 if res.seconds else 0.0
    return [
        "## Storage",
        "",
        f"{size / 1e6:,.1f} MB of PNG tiles, {per_s:,.0f} kB per second of audio. wavdiff writes "
        "tiles with PNG compression level 0 by default (stored, no filter): the fastest to write "
        "and to read. Measured on real music (1024x1024 tiles, 2-core CPU): level 0 630 kB/s at "
        "about 16 ms per tile; `--png-compression small` (zlib level 1, run-length strategy, \"up\" "
        "filter) 495 kB/s, 21% smaller, at about 74 ms per tile; zlib levels 1-9 496-498 kB/s at "
        "129-378 ms per tile. The pixels are the same at every level.",
        "",
    ]


def write_card(res, name: str) -> None:
    """Write the dataset card ``README.md`` of an export (never over a card wavdiff did not write)."""
    path = res.card
    if path.is_file() and _CARD_MARK not in path.read_text(encoding="utf-8", errors="replace"):
        res.warnings.append(f"{path}: exists and was not written by wavdiff; left as it is")
        return
    params = [CodecParams.from_dict(c) for c in res.codecs]
    content_id = hashlib.blake2b(Path(res.metadata).read_bytes(), digest_size=8).hexdigest()
    lines = _front_matter_lines(name, content_id) + _contents_lines(res, name, params)
    lines += _layout_lines() + (_stereo_lines() if any(p.stereo for p in params) else [])
    lines += _codec_lines(res, params) + _storage_lines(res)
    lines += _usage_lines(params[0])
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")


def _front_matter_lines(name: str, content_id: str) -> list[str]:
    """The card's YAML front matter (Hugging Face metadata) and wavdiff's mark.

    ``content_id`` (a hash of ``metadata.jsonl``) goes in ``dataset_info.description``:
    ``datasets`` caches a local folder under its base name and a hash of this YAML, so without
    it a re-exported folder, or another dataset folder of the same name, loads the rows cached
    first (see :func:`_parquet_front_matter`).
    """
    return [
        "---",
        f"pretty_name: {json.dumps(name)}",
        "task_categories:",
        "- text-to-image",
        "tags:",
        "- audio",
        "- music",
        "- spectrogram",
        "- wavdiff",
        "dataset_info:",
        f"  description: \"wavdiff dataset {content_id}\"",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path:",
        "    - \"metadata.jsonl\"",
        "    - \"**/*.png\"",
        "---",
        _CARD_MARK,
    ]


def _contents_lines(res, name: str, params: list[CodecParams]) -> list[str]:
    """The card's title, summary and "Contents" section with one table row per song."""
    dims = sorted({f"{p.size}x{p.size}" for p in params})
    lines = [
        f"# {name}",
        "",
        f"Music as lossless **16-bit RGB PNG spectrogram tiles** ({', '.join(dims)}) made by "
        f"wavdiff with one caption per tile, for training image diffusion "
        f"models. Every tile decodes back to its audio (wavdiff `03_decode`).",
        "",
        "## Contents",
        "",
        f"- **{res.n_songs}** song(s), **{res.n_tiles}** tiles, **{res.n_captioned}** with a "
        f"caption; **{hms(res.seconds)}** of audio ({res.seconds:.1f} s)",
        f"- made {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}",
        "",
        "| song | source file | split | tiles | captioned | seconds |",
        "|---|---|---|---:|---:|---:|",
    ]
    for s in res.songs:
        lines.append(f"| {s['song']} | {s['source']} | {s.get('split', '')} | {s['tiles']} | "
                     f"{s['captioned']} | {s['seconds']:.2f} |")
    return lines


def _layout_lines() -> list[str]:
    """The card's paragraph on the folder layout and the columns of ``metadata.jsonl``."""
    return ["", "Layout: `<song>/<song>_<index:04d>.png`, the caption beside it as "
            "`<song>_<index:04d>.txt`, the song's `manifest.json` (exact sample span of every "
            "tile), and `metadata.jsonl` with one row per tile: `file_name`, `text`, `song`, "
            "`tile_index`, `start_seconds`, `end_seconds`, `start_sample`, `end_sample`, "
            "`sample_rate`, `caption_source` (the captioner that wrote the caption), `padding` "
            "(the share of the tile that is silence after the song's end; only a song's last "
            "tile has any) and `split` (train / validation / test, by a hash of the song's name, "
            "so one song's tiles are all in one split).", ""]


def _stereo_lines() -> list[str]:
    """The card's "Stereo" section: the mid and side tiles and how to load both."""
    return [
        "## Stereo", "",
        "This dataset is **stereo**: each span has a mid tile, (L+R)/2, at `file_name` (the very "
        "tile a mono encode makes, so mono tools read it unchanged) and a side tile, (L-R)/2, "
        "at `side_file_name` (`<song>_<index:04d>.side.png`). `datasets` reads the side tile "
        "as the `side` image column (8 bits through Pillow, like the mid). The channels come "
        "back as L = mid + side, R = mid - side (wavdiff `03_decode` does it).", "",
        "```python", "from wavdiff_utils.dataset import TileDataset, load_tile_dataset",
        "TileDataset(\"path/to/this/folder\", channels=\"stereo\")[0][\"pixel_values\"]  "
        "# (6, H, W): mid planes, then side planes",
        "load_tile_dataset(\"path/to/this/folder\", channels=\"stereo\")  # the same through "
        "datasets", "```", ""]


def _codec_lines(res, params: list[CodecParams]) -> list[str]:
    """The card's "Codec parameters" section: each parameter set, and a warning for several."""
    lines = ["## Codec parameters", ""]
    for i, p in enumerate(params):
        if len(params) > 1:
            n = sum(1 for s in res.songs if s["codec"] == i)
            lines.append(f"Set {i + 1} ({n} song(s)):")
            lines.append("")
        lines += [f"{p.describe()}.", "", "```json", json.dumps(p.to_dict(), indent=1), "```", ""]
    if len(params) > 1:
        lines += ["**Warning:** the songs use different codec parameters; train on one set.", ""]
    return lines


def _usage_lines(p0: CodecParams) -> list[str]:
    """The card's "Pixels", "Loading with all 16 bits" and "Licence" sections."""
    return [
        "## Pixels",
        "",
        f"- red: magnitude in dB re a full-scale sine's peak bin, linear from db_min "
        f"({p0.db_min:g} dB) = 0 (silence) to db_max ({p0.db_max:g} dB) = 65535",
        "- green, blue: (cos(phase) + 1) / 2 and (sin(phase) + 1) / 2 on the 16-bit scale",
        "- row 0 is the highest frequency; columns are STFT frames left to right",
        "",
        "## Loading with all 16 bits",
        "",
        "Pillow (and so `datasets`' `Image` feature and most training scripts) opens these "
        "16-bit PNGs as 8-bit without a warning, which costs most of their fidelity. Load them "
        "with OpenCV instead:",
        "",
        "```python",
        "from wavdiff_utils.dataset import load_tile_dataset   # or TileDataset(folder) for torch",
        "ds = load_tile_dataset(\"path/to/this/folder\")  "
        "# 'pixel_values': float (3, H, W) in [-1, 1]",
        "```",
        "",
        "Without wavdiff: `ds.cast_column(\"image\", datasets.Image(decode=False))`, then "
        "`cv2.imread(path, cv2.IMREAD_UNCHANGED)[:, :, ::-1]` (16-bit, BGR -> RGB).",
        "",
        "Generated tensors go back to tiles with `wavdiff_utils.dataset.write_tensor_tiles`, "
        "and to audio with `python -m wavdiff_utils.views.report notebooks/03_decode.ipynb "
        "-p input "
        "<tiles> -p output <audio>`.",
        "",
        "## Licence",
        "",
        "That of the source recordings; wavdiff sets none.",
        "",
    ]


# =========================================================================== the Parquet export

#: The Parquet export's columns, in order, and what each holds.
PARQUET_COLUMNS = {
    "tile": "uint16 (3, H, W), the PNG tile's pixels exactly: red = magnitude (dB, linear from "
            "db_min = 0 to db_max = 65535), green = (cos(phase) + 1) / 2, blue = (sin(phase) + "
            "1) / 2 on the 16-bit scale; row 0 is the highest frequency, columns are STFT frames",
    "text": "the caption (\"\" without one)",
    "caption_tags": "MuQ's tag caption, when another captioner's is `text` (else \"\")",
    "caption_prose": "Qwen2-Audio's prose caption, likewise",
    "caption_meta": "the metadata captioner's caption, likewise",
    "caption_source": "the captioner that wrote `text` (\"unknown\"; \"\" without a caption)",
    "song": "song id", "tile_index": "the tile's place in its song, from 0",
    "split": "train / validation / test, by a hash of the song's name (a song's tiles share one)",
    "start_seconds": "where the tile starts in its song", "end_seconds": "where its audio ends",
    "start_sample": "the tile's first sample", "end_sample": "one past its last real sample",
    "sample_rate": "Hz", "padding": "share of the tile that is silence after the song's end",
    "file_name": "the PNG tile in the dataset folder it was exported from",
    "codec": "the codec parameters, JSON: `CodecParams.from_dict(json.loads(row[\"codec\"]))`",
}
#: The column a stereo export adds (absent from mono exports, which stay as they were).
SIDE_COLUMN = {"side": "uint16 (3, H, W), the side tile, (L-R)/2, of a stereo song (null for a mono "
                       "song's row); it decodes with `CodecParams.from_dict(json.loads(row[\"codec\"]))"
                       ".side_codec()` (a floor 20 dB lower); L = mid + side, R = mid - side"}


def parquet_features(height: int, width: int, *, stereo: bool = False):
    """The ``datasets.Features`` of the Parquet export's rows (:data:`PARQUET_COLUMNS`, tiles of
    ``height`` x ``width``; a stereo export also :data:`SIDE_COLUMN`): the ``huggingface`` schema
    metadata ``datasets`` reads them from."""
    import datasets

    v = datasets.Value
    kinds = {"tile_index": "int32", "start_seconds": "float64", "end_seconds": "float64",
             "start_sample": "int64", "end_sample": "int64", "sample_rate": "int32",
             "padding": "float64"}
    shape = (3, int(height), int(width))
    return datasets.Features({"tile": datasets.Array3D(shape, "uint16"),
                              **{k: v(kinds.get(k, "string")) for k in PARQUET_COLUMNS
                                 if k != "tile"},
                              **({"side": datasets.Array3D(shape, "uint16")} if stereo else {})})


def dataset_name(folder) -> str:
    """A dataset name from a folder's own name: ``my_songs-v2`` -> ``My songs v2``."""
    words = re.sub(r"[_\-.]+", " ", Path(folder).resolve().name).strip()
    return (words[:1].upper() + words[1:]) if words else "wavdiff spectrogram tiles"


def write_parquet_card(folder, data: dict, name: str) -> str | None:
    """Write the card ``README.md`` of a Parquet export in ``folder`` from its index ``data``
    (``parquet.json``); a note instead when a ``README.md`` wavdiff did not write is there."""
    path = Path(folder) / "README.md"
    if path.is_file() and _CARD_MARK not in path.read_text(encoding="utf-8", errors="replace"):
        return f"{path}: exists and was not written by wavdiff; left as it is"
    params = [CodecParams.from_dict(c) for c in data["codecs"]] or [CodecParams()]
    lines = _parquet_front_matter(name, list(data["splits"]), _export_id(data))
    lines += _parquet_contents(data, name)
    lines += _parquet_loading(data) + _parquet_audio(params) + _parquet_hub()
    text = "\n".join(lines)
    if not path.is_file() or path.read_text(encoding="utf-8", errors="replace") != text:
        with writing(path), atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return None


def _export_id(data: dict) -> str:
    """A Parquet export's content id: a hash of its shards' names and checksums."""
    shards = sorted((s["name"], s["blake2b"]) for s in data["shards"])
    return hashlib.blake2b(json.dumps(shards).encode(), digest_size=8).hexdigest()


def _parquet_front_matter(name: str, splits: list, content_id: str) -> list[str]:
    """YAML the Hub reads: name, tags, and one ``data_files`` entry per split.

    ``dataset_info.description`` holds the export's content id: ``datasets`` caches a local
    folder under its base name (``parquet`` for every export) and a hash of this YAML, so two
    exports with the same YAML would share one cache entry, and ``load_dataset(folder)`` would
    give back whichever was read first.
    """
    lines = ["---", f"pretty_name: {json.dumps(name)}", "task_categories:", "- text-to-image",
             "tags:", "- audio", "- music", "- spectrogram", "- wavdiff", "dataset_info:",
             f"  description: \"wavdiff Parquet export {content_id}\"", "configs:",
             "- config_name: default", "  data_files:"]
    for split in splits:
        lines += [f"  - split: {split}", f"    path: \"data/{split}-*.parquet\""]
    return lines + ["---", _CARD_MARK]


def _parquet_contents(data: dict, name: str) -> list[str]:
    """Title, summary, contents and the columns."""
    _, h, w = data["tile_shape"]
    per_s = data["total_bytes"] / data["seconds"] / 1000 if data["seconds"] else 0.0
    splits = ", ".join(f"{k} {v['rows']}" for k, v in data["splits"].items())
    lines = [f"# {name}", "",
             f"Music as **16-bit spectrogram tiles** ({h}x{w}) with a caption each, made by "
             f"wavdiff, stored as `uint16` arrays in Parquet so that `datasets` gives back all "
             f"16 bits with no code of ours (a 16-bit PNG read through Pillow keeps 8). Every row "
             f"turns back into its audio.", "", "## Contents", "",
             f"- **{data['total_rows']}** rows ({splits}), {len(data['shards'])} shard(s) in "
             f"`data/`, {hms(data['seconds'])} of audio ({data['seconds']:.1f} s)",
             f"- {data['total_bytes'] / 1e6:,.1f} MB ({data['compression']} compression), "
             f"{per_s:,.0f} kB per second of audio; the PNG tiles were "
             f"{data.get('png_bytes', 0) / 1e6:,.1f} MB",
             f"- made {data['created']}; `parquet.json` lists every shard with its rows, bytes "
             f"and checksum", "", "## Columns", "", "| column | holds |", "|---|---|"]
    columns = {**PARQUET_COLUMNS, **(SIDE_COLUMN if data.get("stereo") else {})}
    return lines + [f"| `{k}` | {v} |" for k, v in columns.items()] + [""]


def _parquet_loading(data: dict) -> list[str]:
    """Loading with ``datasets`` (as a folder, streaming, as tensors) and with wavdiff."""
    return [
        "## Loading", "",
        "The `tile` column is a `datasets.Array3D` of `uint16`. `datasets`' numpy and torch "
        "formats widen integers to `int64` (the values stay exact); ask for `uint16`, the "
        "fastest way (then make floats yourself):", "",
        "```python", "import torch", "from datasets import load_dataset",
        "ds = load_dataset(\"path/to/this/folder\")    # or \"USER/NAME\" on the Hub: a "
        "DatasetDict of the splits",
        "# or: load_dataset(\"parquet\", data_files={\"train\": \"path/to/this/folder/data/"
        "train-*.parquet\"})",
        "train = ds[\"train\"].with_format(\"numpy\", columns=[\"tile\"], dtype=\"uint16\", "
        "output_all_columns=True)",
        "train[0][\"tile\"]          # (3, H, W) uint16: the tile's 16 bits exactly",
        "x = torch.from_numpy(train[0][\"tile\"].astype(\"float32\")) / 32767.5 - 1  "
        "# the [-1, 1] floats of wavdiff's loaders",
        "tensors = ds[\"train\"].with_format(\"torch\")   # tile: an int64 tensor of the same "
        "values (slower)", "```", "", "Streaming (nothing downloaded ahead):", "",
        "```python",
        "stream = load_dataset(\"path/to/this/folder\", split=\"train\", streaming=True)"
        ".with_format(\"numpy\")",
        "for row in stream:", "    row[\"tile\"]            # (3, H, W) int64, the exact values",
        "```", "",
        "With wavdiff (a torch dataset, the same items as its PNG loader `TileDataset`):", "",
        "```python", "from wavdiff_utils.dataset.parquet_read import ParquetTiles",
        "train = ParquetTiles(\"path/to/this/folder\", split=\"train\")  # pixel_values: float "
        "(3, H, W) in [-1, 1]", "```", "",
    ]


def _parquet_audio(params: list) -> list[str]:
    """Turning a row back into audio, and the codec parameters."""
    lines = [
        "## A row back to audio", "",
        "Each row holds its codec parameters, so it decodes alone (`pip install wavdiff`):", "",
        "```python", "import json, numpy as np, soundfile",
        "from wavdiff_utils import CodecParams, decode_array",
        "row = train[0]",
        "pixels = np.asarray(row[\"tile\"]).astype(np.uint16).transpose(1, 2, 0)   # (H, W, 3)",
        "params = CodecParams.from_dict(json.loads(row[\"codec\"]))",
        "audio = decode_array([pixels], params, n_samples=row[\"end_sample\"] - "
        "row[\"start_sample\"])",
        "soundfile.write(\"tile.wav\", audio, params.sample_rate)",
        "# the same in one call: wavdiff_utils.dataset.parquet_read.row_audio(row)", "```", "",
        "Consecutive rows of a song (`tile_index` 0, 1, ...) decode joined: "
        "`decode_array([pixels_0, pixels_1, ...], params)`.", "", "## Codec parameters", ""]
    for p in params:
        lines += [f"{p.describe()}.", "", "```json", json.dumps(p.to_dict(), indent=1), "```", ""]
    return lines


def _parquet_hub() -> list[str]:
    """Sharing the folder on the Hugging Face Hub."""
    return [
        "## On the Hugging Face Hub", "",
        "This folder is a dataset repository as it is: the YAML header above names the splits' "
        "files. After `huggingface-cli login`:", "",
        "```python", "from huggingface_hub import HfApi",
        "api = HfApi()",
        "api.create_repo(\"USER/NAME\", repo_type=\"dataset\", exist_ok=True)",
        "api.upload_folder(repo_id=\"USER/NAME\", repo_type=\"dataset\", "
        "folder_path=\"path/to/this/folder\")",
        "```", "",
        "or `huggingface-cli upload USER/NAME path/to/this/folder . --repo-type dataset`. "
        "`datasets`' own `load_dataset(\"path/to/this/folder\").push_to_hub(\"USER/NAME\")` "
        "works too: it writes its own shards, with the same features (the `uint16` tiles), "
        "and its own card in place of this one.", "",
        "## Licence", "", "That of the source recordings; wavdiff sets none.", "",
    ]
