"""Music embeddings for the distribution metrics: MuQ (from MuQ-MuLan) or a weights-free fallback.

Every clip becomes a few *window* embeddings, one per second of audio (``n = floor(seconds)``
windows of 1 s spread evenly over the clip; a clip shorter than 1 s, down to 0.25 s, is one
window), as fadtk and kadtk take frame embeddings rather than one vector per file: a set of 100
clips gives over a thousand windows, enough to estimate a covariance.

``muq``
    The audio tower of MuQ-MuLan (``OpenMuQ/MuQ-MuLan-large``, loaded through the captioners'
    weight lookup: :func:`wavdiff_utils.captioning.muq.load_muq_mulan`, ``$WAVDIFF_MUQ_MODEL``,
    local cache, ``local_files_only``, a local folder, one line when missing).  The FAD/KAD
    embedding is the hidden state of the MuQ layer that MuQ-MuLan itself reads (its config's
    ``audio_model.use_layer_idx``: the last of MuQ-large's 12 layers, 1024 wide, 25 frames per
    second), averaged over each 1 s window.  Why that layer: it is the representation the
    released music-text model was trained on, so one forward pass gives both the FAD embedding
    and the text-comparable latent; and MuQ's last layer is trained to predict Mel-RVQ tokens of
    masked audio, so it stays close to the acoustics that generation artefacts change (other
    layers were not compared: no real weights were available to this work).  The same pass
    gives each clip's MuQ-MuLan latent (the 512-wide joint audio-text space, L2-normalised; the
    whole clip at once, where the captioner averages 10 s pieces) for the text-audio score.
    Clips are resampled to 24 kHz, batched by length, on the GPU when there is one.
``fallback``
    :class:`SpectralStatsEmbedder`: log-mel band statistics and fine-texture statistics, no
    weights.  It is named as what it is in every report and never called FAD on MuQ.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from ..errors import BadAudioError, BadParameterError, WeightsMissingError, one_line

__all__ = ["EMBEDDINGS", "WINDOW_SECONDS", "MIN_CLIP_SECONDS", "ClipEmbedding", "Embedder", "SpectralStatsEmbedder",
           "MuQEmbedder", "make_embedder", "window_starts"]

#: ``embedding`` choices.
EMBEDDINGS = ("auto", "muq", "fallback")
#: Length of one window embedding.
WINDOW_SECONDS = 1.0
#: Shortest clip that can be embedded (one window of its own length).
MIN_CLIP_SECONDS = 0.25


def _too_short(n: int, rate: int) -> BadAudioError:
    return BadAudioError(f"a clip of {n / rate:.2f} s is shorter than the {MIN_CLIP_SECONDS:g} s "
                         f"an embedding needs")


@dataclass
class ClipEmbedding:
    """One clip's embeddings: ``windows`` ``(n_windows, dim)``; ``joint`` the L2-normalised
    audio-text latent (MuQ-MuLan) or None."""

    windows: np.ndarray
    joint: np.ndarray | None = None


def window_starts(n: int, window: int) -> np.ndarray:
    """Starts of ``floor(n / window)`` (at least 1) windows of ``window`` spread evenly over ``n``."""
    if n < window:
        raise BadParameterError(f"a clip of {n} samples is shorter than one window ({window})")
    k = max(1, n // window)
    return np.round(np.linspace(0, n - window, k)).astype(np.int64)


class Embedder:
    """What the evaluation needs of an embedding: a name, a label for reports, an identity for
    cache keys, window embeddings of clips and (optionally) text embeddings."""

    name = ""
    label = ""
    notice = ""             # set when "auto" fell back: why

    def identity(self) -> dict:
        raise NotImplementedError

    def key(self) -> str:
        """Short hash of :meth:`identity`: the cache folder of this embedding."""
        text = json.dumps(self.identity(), sort_keys=True)
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    @property
    def has_text(self) -> bool:
        return False

    def embed(self, clips: list[np.ndarray], sample_rate: int) -> list[ClipEmbedding]:
        raise NotImplementedError

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        raise BadParameterError(f"the {self.name} embedding has no text tower")

# --------------------------------------------------------------------------- the fallback


def _mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters on the HTK mel scale, peak 1 (levels are compared in dB, so the
    filters' scale does not matter)."""
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)
    hz = lambda m: 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs[None]) / np.maximum(hi - mid, 1e-9)
    return np.clip(np.minimum(up, down), 0.0, None)


class SpectralStatsEmbedder(Embedder):
    """Weights-free window embeddings of log-mel and fine-texture statistics (128 values).

    Audio is resampled to 32 kHz.  Per 1 s window:

    - log-mel: 40 bands (HTK mel, 30 Hz - 15 kHz) of a 1024-point STFT (hop 256, Hann) in dB;
      each band's mean (divided by 10) and standard deviation over time (divided by 3):
      spectral balance and dynamics;
    - fine texture: 8 bands from 1 to 15 kHz (log-spaced, 4th-order Butterworth-shaped,
      zero-phase), cut into blocks of 1.5, 3 and 6 ms; per band and block size the mean over
      blocks of the crest factor and of the kurtosis, both in dB (times 5).  How peaky or
      noise-like sound is below the 10 ms that an STFT of the codec resolves: transients and
      cymbals, which a phase rebuilt from a magnitude smears (measured on real music: the
      strongest weights-free sign of it; the spectra themselves come back within 0.1-0.7 dB).

    The divisors put each group's spread across real music at about one unit per value, so no
    group drowns the others.  It measures spectral shape and texture, not musical content: it
    cannot tell a good song from a bad one with the same sound.
    """

    name = "fallback"
    label = "log-mel and fine-texture statistics (weights-free fallback)"
    VERSION = 1
    RATE = 32000
    N_MELS, N_FFT, HOP = 40, 1024, 256
    BAND_EDGES = tuple(float(f) for f in np.geomspace(1000.0, 15000.0, 9))
    BLOCKS_MS = (1.5, 3.0, 6.0)
    MEL_SCALE, STD_SCALE, TEXTURE_SCALE = 0.1, 1 / 3, 5.0

    def __init__(self):
        self._mel = _mel_filters(self.RATE, self.N_FFT, self.N_MELS, 30.0, 15000.0)
        self._window = np.hanning(self.N_FFT + 1)[:-1].astype(np.float32)
        self._gain_memo: tuple = (0, [])

    @property
    def dim(self) -> int:
        return 2 * self.N_MELS + 2 * len(self.BLOCKS_MS) * (len(self.BAND_EDGES) - 1)

    def identity(self) -> dict:
        return {"embedding": "spectral-stats", "version": self.VERSION, "rate": self.RATE,
                "window_seconds": WINDOW_SECONDS, "mels": self.N_MELS, "n_fft": self.N_FFT,
                "hop": self.HOP, "bands": list(self.BAND_EDGES), "blocks_ms": list(self.BLOCKS_MS)}

    def embed(self, clips: list[np.ndarray], sample_rate: int) -> list[ClipEmbedding]:
        return [ClipEmbedding(self._embed_one(c, sample_rate)) for c in clips]

    def _embed_one(self, clip: np.ndarray, sample_rate: int) -> np.ndarray:
        y = np.asarray(clip, dtype=np.float32).reshape(-1)
        if sample_rate != self.RATE:
            import soxr
            y = soxr.resample(y, sample_rate, self.RATE, quality="HQ").astype(np.float32)
        if len(y) < MIN_CLIP_SECONDS * self.RATE:
            raise _too_short(len(y), self.RATE)
        w = min(int(round(WINDOW_SECONDS * self.RATE)), len(y))
        starts = window_starts(len(y), w)
        return np.concatenate([self._mel_stats(y, starts, w), self._texture(y, starts, w)], axis=1)

    def _mel_stats(self, y: np.ndarray, starts: np.ndarray, w: int) -> np.ndarray:
        n_frames = 1 + (len(y) - self.N_FFT) // self.HOP
        frames = np.lib.stride_tricks.sliding_window_view(y, self.N_FFT)[::self.HOP][:n_frames]
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        db = 10.0 * np.log10(power @ self._mel.T + 1e-10)             # (frames, mels)
        per = max(1, (w - self.N_FFT) // self.HOP + 1)
        out = []
        for s in starts:
            f0 = min(int(s) // self.HOP, max(0, len(db) - per))
            seg = db[f0:f0 + per]
            out.append(np.concatenate([seg.mean(axis=0) * self.MEL_SCALE,
                                       seg.std(axis=0) * self.STD_SCALE]))
        return np.asarray(out, dtype=np.float64)

    def _gains(self, n: int) -> list[np.ndarray]:
        """The texture bands' zero-phase gains for clips of ``n`` samples (kept for the next)."""
        if self._gain_memo[0] != n:
            f = np.maximum(np.fft.rfftfreq(n, 1.0 / self.RATE), 1e-3)
            e = self.BAND_EDGES
            self._gain_memo = (n, [(1.0 / np.sqrt((1.0 + (lo / f) ** 8) * (1.0 + (f / hi) ** 8)))
                                   .astype(np.float32) for lo, hi in zip(e[:-1], e[1:])])
        return self._gain_memo[1]

    def _texture(self, y: np.ndarray, starts: np.ndarray, w: int) -> np.ndarray:
        from scipy import fft as sfft

        n = sfft.next_fast_len(len(y), real=True)                    # zero-padded to a fast size
        spec = sfft.rfft(y, n=n)                                      # float32 in, complex64 out
        edges = self.BAND_EDGES
        feats = np.zeros((len(starts), len(self.BLOCKS_MS), len(edges) - 1, 2))
        for b, gain in enumerate(self._gains(n)):
            sq = sfft.irfft(spec * gain, n=n)[:len(y)] ** 2
            floor = 1e-6 * float(np.mean(sq)) + 1e-20                    # -60 dB of the band's power
            for k, ms in enumerate(self.BLOCKS_MS):
                size = max(4, int(round(ms * self.RATE / 1000)))
                feats[:, k, b] = _block_stats(sq, size, starts, w, floor)
        return feats.reshape(len(starts), -1) * self.TEXTURE_SCALE


def _block_stats(sq: np.ndarray, size: int, starts: np.ndarray, w: int, floor: float) -> np.ndarray:
    """Per window: the mean over its active blocks of the crest factor and the kurtosis (dB) of
    a band signal given squared (``sq``); blocks of ``size`` tile the whole clip, and a window
    takes the blocks that start inside it."""
    n = len(sq) // size
    blocks = sq[:n * size].reshape(n, size)
    p2 = blocks.mean(axis=1, dtype=np.float64)
    active = p2 > floor
    safe = np.where(active, p2, 1.0)
    crest = np.where(active, 10 * np.log10(blocks.max(axis=1) / safe), 0.0)
    kurt = np.where(active, 10 * np.log10(np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64)
                                          / size / safe ** 2), 0.0)
    cum = np.vstack([np.zeros(3), np.cumsum(np.stack([active, crest, kurt], axis=1), axis=0)])
    first = -(-starts // size)                                   # first block starting in the window
    last = np.minimum((starts + w) // size, n)
    sums = cum[last] - cum[first]
    count = np.maximum(sums[:, 0], 1.0)
    return np.stack([sums[:, 1] / count, sums[:, 2] / count], axis=1)

# --------------------------------------------------------------------------- MuQ


class MuQEmbedder(Embedder):
    """MuQ layer embeddings per 1 s window and MuQ-MuLan latents per clip (module notes).

    Parameters
    ----------
    model : str or path-like
        Hub id or local folder of MuQ-MuLan (default ``OpenMuQ/MuQ-MuLan-large``, replaced by
        ``$WAVDIFF_MUQ_MODEL`` when set), or a loaded ``MuQMuLanModel``.
    device : str
        ``"auto"`` (the GPU when there is one), ``"cpu"``, ``"cuda[:N]"``, ``"mps"``.
    batch_size : int
        Clips per forward pass.
    """

    name = "muq"

    def __init__(self, model=None, *, device: str = "auto", batch_size: int = 8,
                 cache_dir=None, local_files_only: bool | None = None):
        from ..captioning.interface import positive_int
        from ..captioning.muq import DEFAULT_MODEL, MuQMuLanModel, load_muq_mulan
        from ..captioning.weights import looks_local

        self.batch_size = positive_int("batch_size", batch_size)
        if isinstance(model, MuQMuLanModel):
            self.mulan = model
        else:
            self.mulan = load_muq_mulan(model or DEFAULT_MODEL, device=device, cache_dir=cache_dir,
                                        local_files_only=local_files_only)
        audio = self.mulan.model.mulan_module.audio
        self._layer = int(getattr(audio, "use_layer_idx", -1))
        n_layers = int(getattr(audio.model.config, "encoder_depth", 0) or 0) if hasattr(audio.model, "config") else 0
        shown = (n_layers + 1 + self._layer if self._layer < 0 else self._layer) if n_layers else self._layer
        self.layer_label = f"layer {shown} of {n_layers}" if n_layers else f"layer index {self._layer}"
        shown_name = self.mulan.name.rstrip("/").split("/")[-1] if looks_local(self.mulan.name) \
            else self.mulan.name
        self.label = f"MuQ ({shown_name}: {self.layer_label}, mean per {WINDOW_SECONDS:g} s window)"

    @property
    def has_text(self) -> bool:
        return True

    def identity(self) -> dict:
        return {"embedding": "muq-layer", "version": 1, "weights": self.mulan.key,
                "layer": self._layer, "window_seconds": WINDOW_SECONDS,
                "rate": self.mulan.sample_rate}

    def embed(self, clips: list[np.ndarray], sample_rate: int) -> list[ClipEmbedding]:
        import soxr

        rate = self.mulan.sample_rate
        ys = [np.asarray(c, dtype=np.float32).reshape(-1) for c in clips]
        if sample_rate != rate:
            ys = [soxr.resample(y, sample_rate, rate, quality="HQ").astype(np.float32) for y in ys]
        out: list = [None] * len(ys)
        by_len: dict[int, list[int]] = {}
        for i, y in enumerate(ys):
            if len(y) < MIN_CLIP_SECONDS * rate:
                raise _too_short(len(y), rate)
            by_len.setdefault(len(y), []).append(i)
        for idx in by_len.values():
            for b in range(0, len(idx), self.batch_size):
                part = idx[b:b + self.batch_size]
                for i, emb in zip(part, self._forward(np.stack([ys[i] for i in part]))):
                    out[i] = emb
        return out

    def _forward(self, batch: np.ndarray) -> list[ClipEmbedding]:
        """One pass of the audio tower: the chosen MuQ layer per window, the MuQ-MuLan latent."""
        import torch

        mulan = self.mulan.model.mulan_module
        audio = mulan.audio
        x = torch.as_tensor(batch, device=self.mulan.device)
        with torch.inference_mode():
            hidden = audio._forward_pretrained_model(x)[self._layer]          # (B, T, D)
            head = audio.proj(hidden)
            head, _ = audio.transformer(head, return_all_layers=True)
            latent = mulan.audio_to_latents(head.mean(dim=-2))
            latent = torch.nn.functional.normalize(latent, dim=-1)
        hidden = hidden.float().cpu().numpy()
        latent = latent.float().cpu().numpy()
        frames = hidden.shape[1]
        per = max(1, int(round(frames * WINDOW_SECONDS * self.mulan.sample_rate / batch.shape[1])))
        starts = window_starts(frames, min(per, frames))
        return [ClipEmbedding(np.stack([h[s:s + per].mean(axis=0) for s in starts]).astype(np.float64),
                              lat.astype(np.float64)) for h, lat in zip(hidden, latent)]

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return self.mulan.embed_texts(list(texts)).astype(np.float64)


def make_embedder(embedding: str = "auto", *, model=None, device: str = "auto", batch_size: int = 8,
                  local_files_only: bool | None = None) -> Embedder:
    """The embedding asked for.

    ``"auto"``: MuQ when its weights (and torch, muq) are there, else the fallback, with the
    reason in its ``notice``; ``"muq"``: MuQ or a one-line error (weights missing: what to
    download and where to point ``model``); ``"fallback"``: :class:`SpectralStatsEmbedder`.
    """
    if embedding not in EMBEDDINGS:
        raise BadParameterError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    if embedding == "fallback":
        return SpectralStatsEmbedder()
    try:
        return MuQEmbedder(model, device=device, batch_size=batch_size,
                           local_files_only=local_files_only)
    except WeightsMissingError as exc:
        if embedding == "muq":
            raise
        why = one_line(exc)
    except ImportError as exc:
        if embedding == "muq":
            raise BadParameterError(f"embedding='muq' needs torch and the muq package ({exc}); "
                                    f"install them with pip install -e '.[muq]', or use "
                                    f"embedding='fallback'") from None
        why = f"torch or muq is not installed ({exc})"
    except RuntimeError as exc:               # the installed transformers cannot run muq
        if embedding == "muq":
            raise BadParameterError(one_line(exc)) from None
        why = one_line(exc)
    fallback = SpectralStatsEmbedder()
    fallback.notice = f"MuQ is not available, so the evaluation uses the {fallback.label}: {why}"
    return fallback
