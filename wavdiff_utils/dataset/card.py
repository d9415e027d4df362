"""The dataset card (``README.md``) written beside ``metadata.jsonl`` by :func:`wavdiff_utils.dataset.export_dataset`."""
from __future__ import annotations

import datetime as _dt
import json

from ..codec.params import CodecParams
from ..paths import atomic_path

__all__ = ["write_card", "hms"]


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
    lines = _front_matter_lines(name) + _contents_lines(res, name, params)
    lines += _layout_lines() + _codec_lines(res, params)
    lines += _storage_lines(res)
    lines += _usage_lines(params[0])
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")


def _front_matter_lines(name: str) -> list[str]:
    """The card's YAML front matter (Hugging Face metadata) and wavdiff's mark."""
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
