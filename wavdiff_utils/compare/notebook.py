"""What ``04_compare`` shows: the inputs it compares (the demo round trip when none are given),
a headline that leads with the audio and says what PSNR means, previews and players.

The round trip (:func:`round_trip_tiles`) re-encodes with the original tiles' own codec, stereo
when they have side tiles, so a stereo set comes back as mid and side tiles.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..codec.params import CodecParams
from ..io.audio import audio_info, load_audio
from ..io.tiles import find_tiles, read_tile_metadata
from ..jobs.decode import decode_batch
from ..jobs.encode import encode_batch
from ..paths import SAMPLE_AUDIO, display_path, output_dir, resolve
from ..views.plots import audio_player
from .scores import codec, fmt_db
from .stereo import find_side_tiles, mono_side_hint
from .tiles import UNPAIRED_HINT, ComparisonResult

__all__ = ["CompareInputs", "compare_inputs", "headline_markdown", "show_previews", "show_audio",
           "round_trip_tiles", "tiles_codec"]


def _psnr_words(psnr: float) -> str:
    """PSNR on the 16-bit scale in words: the typical pixel error it stands for."""
    if math.isinf(psnr):
        return "identical"
    if math.isnan(psnr):
        return "n/a"
    rms = 65535 * 10 ** (-psnr / 20)                 # RMS pixel error in 16-bit steps
    if rms < 1:
        return f"{psnr:.1f} dB: below one 16-bit step, bit-exact or nearly"
    return (f"{psnr:.1f} dB: pixels off by about {rms:,.0f} of 65,535 steps "
            f"({100 * rms / 65535:.2g}% of full scale) on average")


def _audio_lines(a) -> list[str]:
    """Headline lines of one song: the mono mix, then the channels and width when stereo."""
    mix = "" if a.mono else " (mono mix)"
    lines = [f"- **Audio `{a.song}`: SNR {fmt_db(a.snr_db)}, log-spectral distance "
             f"{a.lsd_db:.2f} dB{mix}.** SNR compares waveforms (above ~60 dB the difference "
             f"is far below hearing; 20 dB is audible); LSD compares spectra (0 = same, "
             f"under 1 dB hard to hear)."]
    st = a.stereo
    if st is not None:
        wo, wr = st.width_original, st.width_reconstructed
        lines.append(f"- **Left SNR {fmt_db(st.snr_left_db)}, right SNR {fmt_db(st.snr_right_db)}** "
                     f"(LSD {st.lsd_left_db:.2f} and {st.lsd_right_db:.2f} dB). Stereo width, "
                     f"original -> reconstructed: correlation {wo['correlation']:.4f} -> "
                     f"{wr['correlation']:.4f}, side-to-mid {wo['side_to_mid_db']:.2f} -> "
                     f"{wr['side_to_mid_db']:.2f} dB, level difference "
                     f"{wo['level_difference_db']:+.2f} -> {wr['level_difference_db']:+.2f} dB.")
    if a.note:
        lines.append(f"- `{a.song}`: {a.note}.")
    return lines


def _tile_lines(result: ComparisonResult) -> list[str]:
    """Headline lines of the tiles: magnitude PSNR in words and STFT SNR (per channel when
    stereo), then why the all-channel PSNR looks low."""
    figures = result.channel_figures()
    if result.stereo:
        lines = [f"- {'Mid (the mono tile)' if ch == 'mid' else 'Side (L-R)/2'}: magnitude PSNR "
                 f"{_psnr_words(f['psnr_magnitude'])}; STFT-domain SNR {fmt_db(f['stft_snr'])} "
                 f"over {f['pairs']} pair(s)." for ch, f in figures.items()]
        lines[-1] += " STFT SNR is what the tiles' audio loses, energy-weighted."
    else:
        lines = [f"- Magnitude (red) PSNR {_psnr_words(result.mean_psnr_magnitude)}; STFT-domain "
                 f"SNR {fmt_db(result.mean_stft_snr)} (what the tiles' audio loses, "
                 f"energy-weighted)."]
    lines.append(f"- All-channel PSNR {fmt_db(result.mean_psnr)} looks low because the phase "
                 f"(green/blue) of bins stored as silence is arbitrary: they decode to nothing, "
                 f"so a round trip may give them any value without changing the audio. "
                 f"For scale: 96 dB is one 16-bit step, 48 dB one 8-bit step, below about "
                 f"30 dB two images look different.")
    return lines


def headline_markdown(result: ComparisonResult, *, what: str = "") -> str:
    """What a reader needs first: what was compared, how the audio came back, and PSNR in words.

    A stereo comparison gives the mid and side tiles apart, and per stereo song the left and
    right channels and the stereo width of both files.

    Parameters
    ----------
    result : ComparisonResult
    what : str
        One sentence saying what the two tile sets are (e.g. the demo's round trip).
    """
    lines = [f"**What is compared:** {what}" if what else
             f"**What is compared:** tiles in `{Path(result.original).name}` (original) with those "
             f"in `{Path(result.reconstructed).name}` (reconstructed)."]
    if result.unpaired:
        lines.append(f"- **Nothing paired:** {UNPAIRED_HINT}.")
    for a in result.audio:
        lines += _audio_lines(a)
    if result.tiles:
        lines += _tile_lines(result)
    hint = mono_side_hint(result.side_counts)
    if hint:
        lines.append(f"- **Mono against stereo:** {hint}.")
    problems = len(result.only_original) + len(result.only_reconstructed) + len(result.errors)
    if problems:
        lines.append(f"- **{problems} problem(s)**: {len(result.only_original)} tile(s) only in "
                     f"original, {len(result.only_reconstructed)} only in reconstructed, "
                     f"{len(result.errors)} error(s) (see the summary).")
    return "\n".join(lines)


def show_previews(result: ComparisonResult, *, max_shown: int = 3) -> int:
    """Draw the first side-by-side previews (Original | Reconstructed | |Diff| x50); returns how many."""
    import matplotlib.pyplot as plt

    shown = [t for t in result.tiles if t.preview][:max_shown]
    for t in shown:
        img = plt.imread(t.preview)
        fig, ax = plt.subplots(figsize=(15, 15 * img.shape[0] / img.shape[1]))
        ax.imshow(img)
        ax.set_axis_off()
        ax.set_title(f"{t.key}: PSNR {t.psnr:.2f} dB, magnitude {t.psnr_magnitude:.2f} dB, "
                     f"STFT SNR {t.stft_snr:.2f} dB", fontsize=10)
        plt.show()
    return len(shown)


def show_audio(result: ComparisonResult, *, excerpt_seconds: float = 10.0, max_songs: int = 2):
    """Players for an excerpt from the middle of each song: original, then reconstructed (the
    mono mixes of stereo files)."""
    from IPython.display import Markdown, display

    for a in result.audio[:max_songs]:
        ya = load_audio(a.original, sample_rate=a.sample_rate)
        yb = load_audio(a.reconstructed, sample_rate=a.sample_rate)
        n = int(excerpt_seconds * a.sample_rate)
        start = max(0, (min(len(ya), len(yb)) - n) // 2)
        clip = slice(start, start + n)
        mix = "" if a.mono else ", the mono mixes"
        display(Markdown(f"**{a.song}**, {start / a.sample_rate:.1f}-"
                         f"{(start + n) / a.sample_rate:.1f} s: original, then reconstructed "
                         f"(SNR {fmt_db(a.snr_db)}{mix})"),
                audio_player(ya[clip], a.sample_rate), audio_player(yb[clip], a.sample_rate))


def tiles_codec(tiles, *, default: CodecParams | None = None) -> CodecParams | None:
    """The codec a tile set was made with: its first tile's metadata, ``stereo`` when it holds
    side tiles (mid tiles record the codec as mono); ``default`` (with ``stereo`` likewise) when
    no tile names its codec."""
    found = next((p for group in find_tiles(tiles).values() for p in group), None)
    params = codec(read_tile_metadata(found)) if found is not None else None
    params = params or default
    if params is not None and find_side_tiles(tiles) and not params.stereo:
        params = dataclasses.replace(params, channels="stereo")
    return params


def _warn_if_mono(decoded: Path, params: CodecParams, tiles: Path) -> None:
    """Warn when stereo tiles came back from the decoder as a mono file (silent side tiles)."""
    channels = audio_info(decoded).get("channels")
    if params.stereo and channels == 1:
        warnings.warn(f"{display_path(decoded)} was decoded as mono although "
                      f"{display_path(tiles)} holds side tiles: its re-encoded side tiles are "
                      f"silent, so the side scores say nothing of the codec", stacklevel=3)


def round_trip_tiles(audio, workdir, *, params: CodecParams | None = None,
                     original=None) -> tuple[Path, Path, Path]:
    """Make two tile sets to compare: ``audio`` encoded, then decoded to WAV and encoded again.

    Parameters
    ----------
    audio : path-like
        Audio file or folder to encode (ignored when ``original`` is given).
    workdir : path-like
        Scratch root: ``original/``, ``decoded/`` and ``reconstructed/`` are made
        below it; ``decoded/`` and ``reconstructed/`` are emptied first so no
        song of an earlier run lingers.
    params : CodecParams, optional
        Codec of the tiles made from ``audio`` (``channels="stereo"`` for mid and side tiles).
    original : path-like, optional
        Existing tiles to start from instead of encoding ``audio``.

    Returns
    -------
    (original tiles, decoded audio folder, reconstructed tiles)
        The decode of a set with side tiles is a stereo file; the re-encode uses the
        original tiles' codec (:func:`tiles_codec`), stereo when they hold side tiles.

    Raises
    ------
    BatchFailedError
        A ``RuntimeError``: a step failed for some song (the message lists them).
    """
    work = Path(workdir)
    if original is None:
        original = work / "original"
        encode_batch(audio, original, params=params, overwrite=True, progress=False).raise_if_failed()
    recode = tiles_codec(original, default=params)
    decoded, reconstructed = work / "decoded", work / "reconstructed"
    for d in (decoded, reconstructed):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    dec = decode_batch(original, decoded, progress=False)
    dec.raise_if_failed()
    for r in dec.results:
        if recode is not None:
            _warn_if_mono(r.output, recode, Path(original))
        encode_batch(r.output, reconstructed, params=recode, progress=False).raise_if_failed()
    return Path(original), decoded, reconstructed


@dataclass
class CompareInputs:
    """The two tile sets (and audio) ``04_compare`` compares, and one sentence saying what they are."""

    original: Path
    reconstructed: Path
    audio_original: Path | None
    audio_reconstructed: Path | None
    what: str

    def describe(self) -> str:
        """The inputs as lines, paths shown relative to the repository (no local folders)."""
        lines = [f"original:      {display_path(self.original)}",
                 f"reconstructed: {display_path(self.reconstructed)}"]
        if self.audio_original is not None:
            lines.append(f"audio:         {display_path(self.audio_original)} vs "
                         f"{display_path(self.audio_reconstructed)}")
        return "\n".join(lines)


def compare_inputs(original="", reconstructed="", *, audio_original="", audio_reconstructed="",
                   workdir="outputs/compare", params: CodecParams | None = None) -> CompareInputs:
    """What ``04_compare`` compares, making what is not given.

    Parameters
    ----------
    original, reconstructed : str or path-like
        Tile folders; ``""`` for the demo: the bundled sample encoded (``original``), and
        decoded to WAV and encoded again (``reconstructed``: the round trip).
    audio_original, audio_reconstructed : str or path-like
        Audio to score too; with the demo, the sample and its decoded WAV.  Scores need both.
    workdir : path-like
        Scratch folder of the demo tiles.
    params : CodecParams, optional
        Codec of the demo tiles; ``channels="stereo"`` makes mid and side tiles, and the round
        trip decodes them to a stereo WAV and encodes that as stereo again.
    """

    decoded = None
    if reconstructed:
        rec = resolve(reconstructed)
        orig = resolve(original) if original else output_dir(f"{workdir}/original")
        if not original:
            encode_batch(SAMPLE_AUDIO, orig, params=params, progress=False).raise_if_failed()
    else:
        orig, decoded, rec = round_trip_tiles(SAMPLE_AUDIO, output_dir(workdir), params=params,
                                              original=resolve(original) if original else None)
    a = resolve(audio_original) if audio_original else (None if original else SAMPLE_AUDIO)
    b = resolve(audio_reconstructed) if audio_reconstructed else decoded
    if (a is None) != (b is None):
        warnings.warn("audio scores skipped: give both audio_original and audio_reconstructed",
                      stacklevel=2)
        a = b = None
    what = ("the bundled sample's tiles with the tiles of its round trip (encoded, decoded to "
            "WAV, encoded again): how much one pass through audio changes a tile"
            if not (original or reconstructed) else "")
    if what and params is not None and params.stereo:
        what += " (stereo: the mid and the side tiles of each span)"
    return CompareInputs(orig, rec, a, b, what)
