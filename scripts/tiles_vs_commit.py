"""Tiles of this checkout against those of an earlier commit, on real music.

For each file: the largest pixel difference (LSB), the share of pixels that differ, and the
round-trip SNR (tiles decoded back against the decoded source) of both.  The earlier commit is
checked out into a temporary git worktree and imported from there.

    python scripts/tiles_vs_commit.py COMMIT FILE [FILE ...]
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _codec_of(root: Path):
    for name in [m for m in sys.modules if m == "wavdiff_utils" or m.startswith("wavdiff_utils.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        if (root / "wavdiff_utils" / "codec" / "transform.py").is_file():     # the subpackages
            names = ("codec.transform", "io.audio", "codec.params")
        else:                                                              # the flat layout
            names = ("codec", "audio_io", "params")
        codec, audio_io, params = (importlib.import_module(f"wavdiff_utils.{n}") for n in names)
        params = params.CodecParams()
    finally:
        sys.path.pop(0)
    return codec, audio_io, params


def _tiles_and_snr(root: Path, files):
    codec, audio_io, p = _codec_of(root)
    out = {}
    for f in files:
        y = audio_io.load_audio(f, sample_rate=p.sample_rate)
        tiles = [t.pixels.copy() for t in codec.encode_stream([y], p)]
        back = codec.decode_array(tiles, p, n_samples=len(y))
        err = np.sum((y - back).astype(np.float64) ** 2)
        out[f] = tiles, 10 * np.log10(np.sum(y.astype(np.float64) ** 2) / err)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("commit")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wavdiff-old-") as tmp:
        old_root = Path(tmp) / "old"
        made = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach",
                               str(old_root), args.commit], capture_output=True, text=True)
        if made.returncode:
            print(f"error: cannot check out {args.commit!r}: {made.stderr.strip()}", file=sys.stderr)
            return 2
        try:
            old = _tiles_and_snr(old_root, args.files)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_root)],
                           capture_output=True)
    new = _tiles_and_snr(REPO, args.files)
    for f in args.files:
        (a, snr_a), (b, snr_b) = old[f], new[f]
        if len(a) != len(b):
            print(f"{Path(f).name}: {len(a)} tiles before, {len(b)} now")
            continue
        diff = [np.abs(x.astype(np.int32) - y.astype(np.int32)) for x, y in zip(a, b)]
        share = sum(int((d > 0).sum()) for d in diff) / sum(d.size for d in diff)
        print(f"{Path(f).name:28s} {len(b):3d} tiles  max diff {max(int(d.max()) for d in diff)} LSB  "
              f"differing {100 * share:.3f}%  SNR {snr_a:.2f} -> {snr_b:.2f} dB "
              f"({snr_b - snr_a:+.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
