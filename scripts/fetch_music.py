"""Fetch freely licensed real music from Debian game data packages and build fixtures.

What and from where
    Six Ogg Vorbis tracks (44.1 kHz stereo, 3.2-6.8 min) are taken from two Debian
    ``games`` packages, fetched with ``apt-get download`` and unpacked with ``dpkg -x``:

    - ``frozen-bubble-data`` (22 MB): ``frozen-mainzik-1p``, ``introzik`` (synth game music).
    - ``wesnoth-1.16-music`` (153 MB): ``battle`` (orchestral), ``traveling_minstrels``
      (folk), ``elvish-theme`` (quiet, -24 dB RMS) and ``knolls`` (calm, 6.8 min).

    Several already decode to peaks above 1.0 (Vorbis overshoot), as real files do.

    Copies are checked against ``scripts/music.sha256`` (``sha256sum`` format; after a
    deliberate package upgrade: ``cd outputs/music && sha256sum *.ogg``).

Licence
    GPL-2 (Frozen-Bubble) and GPL-2-or-later (Wesnoth) per their Debian copyright files;
    package names, versions and the licence lines go to ``<dest>/LICENSES.txt``.  The audio
    stays under the git-ignored ``outputs/`` and is never committed.

Derived fixtures (``<dest>/derived/``, deterministic, rebuilt only when missing)
    - ``loud_stereo_44k.mp3``: ``frozen-mainzik-1p`` +4 dB, decoded peak > 1.0.
    - ``stereo_22k.wav``: ``elvish-theme`` resampled to 22.05 kHz, 16-bit PCM.
    - ``long_60min_mono_44k.flac`` (only with ``--long``): the tracks, downmixed to mono
      and repeated in order up to exactly 60 minutes, 16-bit.

Usage::

    python scripts/fetch_music.py [--dest outputs/music] [--long] [--list]

Benchmarks can call :func:`music_files` (load this file with ``runpy``/``importlib``).
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHECKSUMS = REPO / "scripts" / "music.sha256"
DEFAULT_DEST = "outputs/music"
#: package -> (folder inside the .deb, track file names)
PACKAGES = {
    "frozen-bubble-data": ("usr/share/games/frozen-bubble/snd",
                           ["frozen-mainzik-1p.ogg", "introzik.ogg"]),
    "wesnoth-1.16-music": ("usr/share/games/wesnoth/1.16/data/core/music",
                           ["battle.ogg", "traveling_minstrels.ogg", "elvish-theme.ogg",
                            "knolls.ogg"]),
}
TRACKS = sorted(name for _, names in PACKAGES.values() for name in names)
LOUD_GAIN_DB = 4.0
LONG_SECONDS = 3600


class FetchError(Exception):
    """A failure with a one-line message that says what went wrong."""


def music_files(dest: str | os.PathLike = DEFAULT_DEST) -> list[Path]:
    """Return the fetched tracks, sorted, or an empty list when they were not fetched.

    Parameters
    ----------
    dest : str or path-like
        Folder the tracks were fetched into; a relative path is taken from the repo root.

    Returns
    -------
    list of Path
        Existing track files (derived fixtures excluded).
    """
    dest = Path(dest) if Path(dest).is_absolute() else REPO / dest
    return [dest / name for name in TRACKS if (dest / name).is_file()]


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _expected() -> dict[str, str]:
    sums = dict(line.split()[::-1] for line in CHECKSUMS.read_text().splitlines() if line.strip())
    missing = [name for name in TRACKS if name not in sums]
    if missing:
        raise FetchError(f"{CHECKSUMS} has no checksum for {', '.join(missing)}")
    return sums


def _run(cmd: list[str], cwd: Path) -> str:
    if shutil.which(cmd[0]) is None:
        raise FetchError(f"'{cmd[0]}' not found: this needs a Debian/Ubuntu system with apt and dpkg")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("E:")] or [proc.stderr.strip()]
        hint = " (try 'apt-get update')" if "Unable to locate" in errors[-1] else ""
        raise FetchError(f"'{' '.join(cmd)}' failed: {errors[-1]}{hint}")
    return proc.stdout


def _licence_lines(text: str, member: str) -> list[str]:
    """Pick the licence lines of a Debian copyright file that cover ``member``."""
    if text.startswith("Format:"):  # machine-readable (DEP-5): the last matching stanza wins
        parts = member.split("/")
        suffixes = ["/".join(parts[i:]) for i in range(len(parts))]
        hit = ""
        for stanza in text.split("\n\n"):
            globs = stanza.split("\n")[0].removeprefix("Files:").split()
            if stanza.startswith("Files:") and any(
                    fnmatch.fnmatch(s, g) for s in suffixes for g in globs):
                hit = stanza
        return hit.splitlines()
    lines = text.splitlines()  # free-form: the first License: block up to a "-----" rule
    start = next((i for i, ln in enumerate(lines) if ln.startswith("License:")), len(lines))
    block = itertools.takewhile(lambda ln: ln.strip() != "-----", lines[start:])
    return [ln for ln in block if ln.strip()]


def fetch(dest: Path) -> None:
    """Download, verify and copy the tracks into ``dest`` and write ``LICENSES.txt``."""
    expected = _expected()
    dest.mkdir(parents=True, exist_ok=True)
    licences = dest / "LICENSES.txt"
    todo = [pkg for pkg, (_, names) in PACKAGES.items()
            if any(not (dest / n).is_file() or _sha256(dest / n) != expected[n] for n in names)]
    if not todo and licences.is_file():
        print(f"tracks: all {len(TRACKS)} present with the right checksums in {dest}")
        return
    notes = []
    with tempfile.TemporaryDirectory(prefix="fetch_music_") as tmp:
        tmp = Path(tmp)
        for pkg, (folder, names) in PACKAGES.items():
            print(f"apt-get download {pkg} ...", flush=True)
            _run(["apt-get", "download", pkg], tmp)
            deb = next(tmp.glob(f"{pkg}_*.deb"))
            version = _run(["dpkg-deb", "-f", str(deb), "Version"], tmp).strip()
            root = tmp / pkg
            _run(["dpkg", "-x", str(deb), str(root)], tmp)
            for name in names:
                src = root / folder / name
                if not src.is_file():
                    raise FetchError(f"{pkg} {version} has no {folder}/{name}")
                if pkg in todo:
                    shutil.copyfile(src, dest / name)
                    if (got := _sha256(dest / name)) != expected[name]:
                        raise FetchError(f"checksum mismatch for {name} from {pkg} {version}: "
                                         f"got {got}, {CHECKSUMS.name} says {expected[name]}")
                print(f"  {name}: {'ok' if pkg in todo else 'already present'}")
            copyright_file = root / "usr/share/doc" / pkg / "copyright"
            lines = _licence_lines(copyright_file.read_text(errors="replace"), f"{folder}/{names[0]}")
            notes += [f"Package: {pkg}", f"Version: {version}",
                      f"Source: Debian archive via 'apt-get download {pkg}'",
                      f"Tracks: {', '.join(names)} (from /{folder}/)",
                      f"Licence lines from /usr/share/doc/{pkg}/copyright:",
                      *(f"    {ln}" for ln in lines), ""]
    licences.write_text("\n".join(notes))
    print(f"wrote {licences}")


def _atomic_write(path: Path, write) -> None:
    part = path.with_name(path.name + ".part")
    write(part)
    os.replace(part, path)


def _audio_libs():
    try:
        import librosa
        import numpy
        import soundfile
    except ImportError as exc:
        raise FetchError(f"{exc}: the audio part needs numpy, soundfile and librosa; "
                         "run with the project venv") from None
    return librosa, numpy, soundfile


def derive(dest: Path, long: bool) -> None:
    """Build the derived fixtures under ``dest/derived`` (skips existing ones)."""
    librosa, np, sf = _audio_libs()
    out = dest / "derived"
    out.mkdir(exist_ok=True)
    loud = out / "loud_stereo_44k.mp3"
    if not loud.is_file():
        y, sr = sf.read(dest / "frozen-mainzik-1p.ogg", dtype="float32")
        y *= np.float32(10 ** (LOUD_GAIN_DB / 20))  # float in, so libsndfile's LAME does not clip
        _atomic_write(loud, lambda p: sf.write(p, y, sr, format="MP3"))
    peak = float(np.abs(sf.read(loud, dtype="float32")[0]).max())
    if peak <= 1.0:
        raise FetchError(f"{loud.name}: decoded peak {peak:.3f} <= 1.0, the MP3 encoder clipped")
    print(f"{loud.relative_to(dest)}: decoded peak {peak:.3f}")
    low = out / "stereo_22k.wav"
    if not low.is_file():
        y, sr = sf.read(dest / "elvish-theme.ogg", dtype="float32")
        y = librosa.resample(y.T, orig_sr=sr, target_sr=22050, res_type="soxr_hq").T
        y = np.clip(y, -1.0, 1.0)  # 16-bit PCM: clip explicitly rather than in libsndfile
        _atomic_write(low, lambda p: sf.write(p, y, 22050, subtype="PCM_16", format="WAV"))
    print(f"{low.relative_to(dest)}: {sf.info(low).samplerate} Hz, {sf.info(low).channels} ch")
    longf = out / "long_60min_mono_44k.flac"
    if long and not longf.is_file():
        def write_long(part: Path) -> None:  # streamed: one track in memory at a time
            left = LONG_SECONDS * 44100
            with sf.SoundFile(part, "w", 44100, 1, subtype="PCM_16", format="FLAC") as fh:
                while left > 0:
                    for track in (dest / name for name in TRACKS):
                        y, sr = sf.read(track, dtype="float32", frames=left)
                        fh.write(np.clip(y.mean(axis=1), -1.0, 1.0))
                        left -= len(y)
                        if left <= 0:
                            break
        print(f"writing {longf.relative_to(dest)} ({LONG_SECONDS // 60} min) ...", flush=True)
        _atomic_write(longf, write_long)
    if longf.is_file():
        print(f"{longf.relative_to(dest)}: {sf.info(longf).duration / 60:.1f} min")


def list_audio(dest: Path) -> None:
    """Print path, duration, sample rate, channels and peak of every audio file in ``dest``."""
    _, np, sf = _audio_libs()
    files = sorted(p for p in dest.rglob("*") if p.suffix in {".ogg", ".mp3", ".wav", ".flac"})
    if not files:
        raise FetchError(f"no audio in {dest}; run 'python scripts/fetch_music.py' first")
    print(f"{'path':42} {'duration':>9} {'rate':>6} {'ch':>3} {'peak':>6}")
    for path in files:
        info = sf.info(path)
        peak = max(float(np.abs(b).max()) for b in sf.blocks(path, blocksize=1 << 20, dtype="float32"))
        mins, secs = divmod(info.duration, 60)
        print(f"{str(path.relative_to(dest)):42} {int(mins):>4}:{secs:04.1f} {info.samplerate:>6} "
              f"{info.channels:>3} {peak:6.3f}")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", type=Path, default=REPO / DEFAULT_DEST,
                    help=f"destination folder (default: {DEFAULT_DEST} in the repo)")
    ap.add_argument("--long", action="store_true", help="also build the 60-minute FLAC")
    ap.add_argument("--list", action="store_true", help="only list what is in --dest")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        if args.list:
            list_audio(args.dest)
            return 0
        fetch(args.dest)
        derive(args.dest, args.long)
    except (FetchError, OSError, RuntimeError) as exc:  # RuntimeError: libsndfile
        print(f"fetch_music: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
