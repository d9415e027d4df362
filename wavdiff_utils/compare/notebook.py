"""What ``04_compare`` shows: the inputs it compares (the demo round trip when none are given),
a headline that leads with the audio and says what PSNR means, previews and players.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..codec.params import CodecParams
from ..io.audio import load_audio
from ..jobs.encode import encode_batch
from ..paths import SAMPLE_AUDIO, display_path, output_dir, resolve
from ..views.plots import audio_player
from .scores import fmt_db
from .tiles import UNPAIRED_HINT, ComparisonResult, round_trip_tiles

__all__ = ["CompareInputs", "compare_inputs", "headline_markdown", "show_previews", "show_audio"]


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


def headline_markdown(result: ComparisonResult, *, what: str = "") -> str:
    """What a reader needs first: what was compared, how the audio came back, and PSNR in words.

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
        lines.append(f"- **Audio `{a.song}`: SNR {fmt_db(a.snr_db)}, log-spectral distance "
                     f"{a.lsd_db:.2f} dB.** SNR compares waveforms (above ~60 dB the difference "
                     f"is far below hearing; 20 dB is audible); LSD compares spectra (0 = same, "
                     f"under 1 dB hard to hear).")
    if result.tiles:
        mag = result.mean_psnr_magnitude
        lines.append(f"- Magnitude (red) PSNR {_psnr_words(mag)}; STFT-domain SNR "
                     f"{fmt_db(result.mean_stft_snr)} (what the tiles' audio loses, energy-weighted).")
        lines.append(f"- All-channel PSNR {fmt_db(result.mean_psnr)} looks low because the phase "
                     f"(green/blue) of bins stored as silence is arbitrary: they decode to nothing, "
                     f"so a round trip may give them any value without changing the audio. "
                     f"For scale: 96 dB is one 16-bit step, 48 dB one 8-bit step, below about "
                     f"30 dB two images look different.")
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
    """Players for an excerpt from the middle of each song: original, then reconstructed."""
    from IPython.display import Markdown, display

    for a in result.audio[:max_songs]:
        ya = load_audio(a.original, sample_rate=a.sample_rate)
        yb = load_audio(a.reconstructed, sample_rate=a.sample_rate)
        n = int(excerpt_seconds * a.sample_rate)
        start = max(0, (min(len(ya), len(yb)) - n) // 2)
        clip = slice(start, start + n)
        display(Markdown(f"**{a.song}**, {start / a.sample_rate:.1f}-"
                         f"{(start + n) / a.sample_rate:.1f} s: original, then reconstructed "
                         f"(SNR {fmt_db(a.snr_db)})"),
                audio_player(ya[clip], a.sample_rate), audio_player(yb[clip], a.sample_rate))


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
        Codec of the demo tiles.
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
    return CompareInputs(orig, rec, a, b, what)
