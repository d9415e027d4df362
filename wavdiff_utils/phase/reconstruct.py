"""Phase for tiles whose green/blue planes cannot be trusted: generated, 8-bit or grey images.

Our own tiles carry an exact phase, and decoding them is one inverse STFT
(``method="image"``).  Tiles made by a diffusion model carry a magnitude that
is roughly right and phase planes that are partly coherent at best.  This
module rebuilds a phase that is consistent with the magnitude:

``"image"``
    The phase of the green/blue planes as it is (exact for our own tiles).
``"fgla"``
    Fast Griffin-Lim (Perraudin, Balazs & Sondergaard, 2013; momentum 0.99)
    started from the image phase.
``"griffinlim"``
    The same iteration started from random phase (what most spectrogram
    tool sets do).
``"pghi"``
    Phase-gradient heuristic integration (Prusa, Balazs & Sondergaard, 2017):
    a phase computed from the magnitude alone, then refined by fast
    Griffin-Lim (``n_iter=0`` keeps plain PGHI).  The bins at zero frequency
    and Nyquist are the real-valued edges of a real signal's spectrum: their
    magnitude is even across the edge (so its slope there is zero, not the
    one-sided difference) and their phase is 0 or pi.  Music with much of its
    energy below 20 Hz (DC offset, rumble) stalled Griffin-Lim at -10 to -18 dB
    SC without this (``real_edges=False`` keeps the earlier estimate).
``"auto"``
    Scores how consistent the image phase is with the magnitude (the
    spectral convergence, SC, of the image phase itself) and picks: the image
    phase as it is when it is clean, fast Griffin-Lim from it when it is
    partly coherent, and when it is close to noise both starts (image and
    PGHI) raced for a few iterations, the better one kept.  Iterations stop
    early once the SC no longer improves.

Grey images have no phase planes.  Every method runs as named on them:
``auto`` starts from PGHI, ``fgla`` from zero phase (its report says
``fgla (zero phase start)``; ``auto`` is usually better), ``griffinlim`` from
random phase and ``pghi`` from PGHI.

Seams and memory
----------------
A song is processed tile by tile, each tile together with the last frames of
the previous tile (held fixed: their phase is final) and the first frames of
the next one (free, thrown away).  The iteration thus runs on the song's STFT
across every join, so there are no clicks at seams, while memory holds about
two tiles whatever the song's length.  The STFT runs in torch when it is
installed and a GPU is there, else in numpy (faster than torch on a small CPU).

Spectral convergence
--------------------
``SC = 20 log10(|| |STFT(y)| - M || / || M ||)`` in dB for audio ``y`` and
target magnitude ``M``: how far the audio's spectrogram is from what the
image asks for.  Lower is better; our own clean tiles score about -83 dB.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator

import numpy as np

from ..errors import BadParameterError
from ..codec.params import CodecParams
from .stft_engine import NumpyEngine, TorchEngine, stft_engine

__all__ = ["METHODS", "PhaseSettings", "TileReport", "reconstruct_tiles", "pghi",
           "spectral_convergence", "signal_sc", "hann_gamma"]

#: Phase methods, by name.
METHODS = ("image", "fgla", "griffinlim", "pghi", "auto")

#: Gaussian-equivalent time-frequency spread of a Hann window of length L: gamma = 0.25645 L^2.
HANN_GAMMA_FACTOR = 0.25645


def hann_gamma(n_fft: int) -> float:
    """PGHI's ``gamma`` (in samples squared) for a Hann window of ``n_fft`` samples."""
    return HANN_GAMMA_FACTOR * float(n_fft) ** 2


@dataclass(frozen=True)
class PhaseSettings:
    """How a phase is rebuilt.

    Parameters
    ----------
    method : {"auto", "image", "fgla", "griffinlim", "pghi"}
    n_iter : int
        Most fast Griffin-Lim iterations per tile (``auto`` may stop earlier).
    momentum : float
        Fast Griffin-Lim momentum (0 gives plain Griffin-Lim).
    clean_db : float
        ``auto``: an image phase whose SC is below this is used as it is.
    race_db, pghi_db : float
        ``auto``: an image phase whose SC lies between these two is raced
        against a PGHI start: both run ``race_iter`` iterations, the SC each
        would reach after ``n_iter`` is extrapolated (the gain per doubling of
        iterations stays about constant), and the better one goes on.  Above
        ``pghi_db`` (random phase scores about -4 dB) PGHI starts alone.
    race_iter : int
        Iterations each start runs in a race.
    stop_db, patience : float, int
        Stop when the best SC improved by less than ``stop_db`` over the last
        ``patience`` iterations (``auto`` only; other methods run ``n_iter``).
    context, lookahead : int
        Frames of the previous tile held fixed, and of the next tile iterated
        along, around each tile.
    pghi_floor_db : float
        PGHI leaves bins more than this far below the tile's loudest bin alone.
    backend : {"auto", "torch", "numpy"}
        Where the STFTs run; ``auto`` takes torch on a GPU, else numpy.
    device : str
        Torch device, ``"auto"`` for the GPU when there is one.
    seed : int
        Seed of the random phase (``griffinlim``).
    real_edges : bool
        PGHI treats the zero-frequency and Nyquist bins as real (see :func:`pghi`);
        False keeps the one-sided estimate of earlier versions, for comparisons.
    """

    method: str = "auto"
    n_iter: int = 64
    momentum: float = 0.99
    clean_db: float = -50.0
    race_db: float = -6.5
    pghi_db: float = -4.4
    race_iter: int = 16
    stop_db: float = 0.2
    patience: int = 16
    context: int = 16
    lookahead: int = 32
    pghi_floor_db: float = -70.0
    backend: str = "auto"
    device: str = "auto"
    seed: int = 0
    real_edges: bool = True

    def __post_init__(self):
        if self.method not in METHODS:
            raise BadParameterError(f"phase method must be one of {METHODS}, got {self.method!r}")
        for name in ("n_iter", "race_iter", "patience", "context", "lookahead"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise BadParameterError(f"{name} must be an integer >= 0, got {v!r}")
        if not 0.0 <= float(self.momentum) < 1.5:
            raise BadParameterError(f"momentum must be in [0, 1.5), got {self.momentum!r}")
        if self.backend not in ("auto", "torch", "numpy"):
            raise BadParameterError(f"backend must be 'auto', 'torch' or 'numpy', got {self.backend!r}")
        if not isinstance(self.real_edges, (bool, np.bool_)):
            raise BadParameterError(f"real_edges must be True or False, got {self.real_edges!r}")
        if self.context < 4 and self.method != "image":
            raise BadParameterError(f"context must be at least 4 frames to join tiles, got {self.context}")


@dataclass
class TileReport:
    """What the phase step did to one tile.

    Attributes
    ----------
    index : int
        Position of the tile in its clip or song.
    method : str
        What ran: ``image``, ``fgla``, ``griffinlim``, ``pghi``, ``fgla (zero phase
        start)`` (``fgla`` on a grey image), or for ``auto`` one of ``image``,
        ``fgla (image start)``, ``fgla (pghi start)``.
    coherence_db : float or None
        SC of the image phase itself (None for grey images, which have none).
    sc_db : float
        SC of the phase kept, over this tile's frames: how consistent the audio
        is with the image's own magnitude, not how close it is to any true audio
        (a resized or noisy magnitude can be matched well and still be far from
        the source).
    iterations : int
        Fast Griffin-Lim iterations run (both starts of a race included).
    seconds : float
        Wall time.
    peak, clipped : float, int
        Largest absolute sample of the tile's audio and its samples beyond full
        scale (filled in by the decoder, which makes the audio).
    """

    index: int
    method: str
    coherence_db: float | None
    sc_db: float
    iterations: int = 0
    seconds: float = 0.0
    peak: float = 0.0
    clipped: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _db(ratio: float) -> float:
    return float(20.0 * math.log10(max(float(ratio), 1e-12)))


def spectral_convergence(estimate: np.ndarray, target: np.ndarray) -> float:
    """SC in dB between two magnitude arrays of the same shape: ``20 log10(||E - T|| / ||T||)``."""
    estimate = np.asarray(estimate, np.float64)
    target = np.asarray(target, np.float64)
    if estimate.shape != target.shape:
        raise BadParameterError(f"magnitudes differ in shape: {estimate.shape} vs {target.shape}")
    ref = np.linalg.norm(target)
    if ref == 0:
        raise BadParameterError("target magnitude is all zero; spectral convergence is undefined")
    return _db(np.linalg.norm(estimate - target) / ref)


def signal_sc(y: np.ndarray, target: np.ndarray, *, n_fft: int, hop_length: int,
              skip_edges: int = 2) -> float:
    """SC in dB of audio ``y`` against a target magnitude ``(bins, frames)`` of a centred STFT.

    ``skip_edges`` frames at each end are left out: those of a standalone clip
    lack overlap, so no audio can match them exactly.  Bins the target lacks
    (the Nyquist bin of the "exact" layout) are left out too.
    """
    import librosa

    S = np.abs(librosa.stft(np.asarray(y, np.float32), n_fft=n_fft, hop_length=hop_length,
                            window="hann", center=True, pad_mode="constant"))
    bins, frames = target.shape
    n = min(frames, S.shape[1])
    sl = slice(skip_edges, n - skip_edges) if n > 2 * skip_edges + 1 else slice(0, n)
    return spectral_convergence(S[:bins, sl], target[:, sl])


# --------------------------------------------------------------------------- PGHI


def pghi(mag: np.ndarray, *, n_fft: int, hop_length: int, known: np.ndarray | None = None,
         n_known: int = 0, floor_db: float = -70.0, gamma: float | None = None,
         real_edges: bool = True) -> np.ndarray:
    """Phase from magnitude alone by phase-gradient heuristic integration.

    Parameters
    ----------
    mag : ndarray (frames, bins)
        STFT magnitude, frames-major, ``bins = n_fft//2 + 1`` (librosa's
        STFT convention: phase measured from each frame's first sample).
    n_fft, hop_length : int
        STFT of ``mag`` (Hann window of ``n_fft`` samples).
    known : ndarray (n_known, bins), optional
        Phases of the first ``n_known`` frames, already fixed (the end of the
        previous tile); integration continues from them.
    floor_db : float
        Bins more than this below the loudest bin get phase 0.
    gamma : float, optional
        Window spread; default :func:`hann_gamma` of ``n_fft``.
    real_edges : bool
        The first and last bins (zero frequency and Nyquist) are the edges of a
        real signal's spectrum: the magnitude's slope across them is taken from
        its mirror image (zero), and their phase is set to 0 or pi, the nearer
        one (an inverse real FFT keeps only their real part).  False: the
        one-sided slope and a free phase, as in earlier versions.

    Returns
    -------
    ndarray (frames, bins) float64
        Phase in radians.
    """
    from . import kernels

    mag = np.asarray(mag, np.float64)
    if mag.ndim != 2 or mag.shape[1] != n_fft // 2 + 1:
        raise BadParameterError(f"magnitude must be (frames, {n_fft // 2 + 1}), got {mag.shape}")
    gamma = hann_gamma(n_fft) if gamma is None else float(gamma)
    a, M = float(hop_length), float(n_fft)
    logm = np.log(np.maximum(mag, 1e-30))
    # phase gradients of the window-centred convention (Gaussian-window relations)
    dfreq = _freq_slope(logm, real_edges)
    dtime = np.gradient(logm, axis=0) if mag.shape[0] > 1 else np.zeros_like(logm)
    bins = np.arange(mag.shape[1])
    dphi_time = a * (M / gamma) * dfreq + 2 * np.pi * a * bins / M
    dphi_freq = -(gamma / (a * M)) * dtime
    phase = np.zeros_like(logm)
    done = np.zeros(logm.shape, np.bool_)
    centre = np.pi * bins                       # librosa phase = centred phase - pi * bin
    if known is not None and n_known:
        phase[:n_known] = np.asarray(known, np.float64)[:n_known] + centre
        done[:n_known] = True
    floor = logm.max() + floor_db / 20.0 * np.log(10.0)
    kernels.integrate(logm, dphi_time, dphi_freq, phase, done, floor)
    phase -= centre
    if real_edges:                  # bins 0 and n_fft/2 of a real signal: phase 0 or pi
        edge = phase[n_known:, ::mag.shape[1] - 1] if mag.shape[1] > 1 else phase[n_known:]
        edge[...] = np.where(np.cos(edge) >= 0, 0.0, np.pi)
    return phase


def _freq_slope(logm: np.ndarray, real_edges: bool) -> np.ndarray:
    """d log|X| / d bin: central differences; at the edges one-sided, or zero (``real_edges``:
    a real signal's magnitude is even around zero frequency and around Nyquist)."""
    if logm.shape[1] < 2:
        return np.zeros_like(logm)
    slope = np.gradient(logm, axis=1)
    if real_edges:
        slope[:, 0] = 0.0
        slope[:, -1] = 0.0
    return slope


# --------------------------------------------------------------------------- fast Griffin-Lim


class _FGLA:
    """Fast Griffin-Lim on one block, its first ``n_fixed`` frames held at given values.

    ``sc`` values are measured over ``frames`` (a slice of the block) and
    belong to the audio of the best magnitude-projected estimate so far.
    """

    def __init__(self, engine, M, X0, *, n_fixed: int, momentum: float, frames: slice):
        self.e, self.M, self.n_fixed, self.alpha, self.frames = engine, M, n_fixed, momentum, frames
        self.fixed = X0[:n_fixed] if n_fixed else None
        self.t = X0
        self.c_prev = None
        self.ref = engine.norm(M[frames])
        self.best_sc = float("inf")
        self.best = X0
        self.history: list[float] = []

    def step(self, n: int = 1):
        e = self.e
        fused = isinstance(e, NumpyEngine) and not isinstance(e, TorchEngine)
        if fused:
            from .kernels import fgla_update
        for _ in range(n):
            p = self.p if fused and getattr(self, "p", None) is not None else e.project(self.t, self.M)
            if self.n_fixed:
                p[:self.n_fixed] = self.fixed
            c = e.stft(e.istft(p))
            if fused:                # error, momentum and magnitude projection in one pass
                nxt = np.empty_like(c)
                prev = c if self.c_prev is None else self.c_prev
                err = fgla_update(c, prev, self.M, np.float32(self.alpha), self.frames.start,
                                  self.frames.stop, nxt)
                sc = _db(math.sqrt(err) / max(self.ref, 1e-30))
                self.p = nxt
            else:
                sc = _db(e.norm(e.abs(c[self.frames]) - self.M[self.frames]) / max(self.ref, 1e-30))
                self.t = c if self.c_prev is None else e.extrapolate(self.c_prev, c, 1.0 + self.alpha)
            self.history.append(sc)
            if sc < self.best_sc:
                self.best_sc, self.best = sc, p
            self.c_prev = c
        return self

    @property
    def iterations(self) -> int:
        return len(self.history)

    def stalled(self, stop_db: float, patience: int) -> bool:
        h = self.history
        if len(h) <= patience:
            return False
        return min(h[:-patience]) - min(h) < stop_db


# --------------------------------------------------------------------------- the song loop


def _frames_major(S: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(S.T)


def reconstruct_tiles(tiles: Iterable[tuple[np.ndarray, bool]], params: CodecParams,
                      settings: PhaseSettings | None = None) -> Iterator[tuple[np.ndarray, TileReport]]:
    """Rebuild the phase of a sequence of tiles that form one piece of audio.

    Parameters
    ----------
    tiles : iterable of (S, has_phase)
        Each tile's complex STFT ``(n_fft//2 + 1, frames_per_tile)`` as
        :func:`wavdiff_utils.codec.transform.pixels_to_stft` returns it, and whether its
        image had phase planes (False for grey images: their phase is ignored).
    params : CodecParams
    settings : PhaseSettings, optional

    Yields
    ------
    (S, TileReport)
        The tile's STFT with the rebuilt phase (same shape), in order; feed
        them to :func:`wavdiff_utils.codec.transform.istft_stream` for audio.
    """
    s = settings or PhaseSettings()
    it = iter(tiles)
    nxt = next(it, None)
    if s.method == "image":
        yield from _pass_image(it, nxt)
        return
    engine = stft_engine(params.n_fft, params.hop_length, backend=s.backend, device=s.device)
    ctx = None                                   # final frames of the previous tile (frames-major)
    index = 0
    while nxt is not None:
        t0 = time.perf_counter()
        S, has_phase = nxt
        nxt = next(it, None)
        block = _make_block(engine, ctx, S, has_phase, nxt, s)
        runs, label, coherence = _run_phase(engine, block, s, params, index)
        out, sc = _pick_result(engine, block, runs, label)
        ctx = out
        report = TileReport(index, label, coherence, sc, sum(r.iterations for r in runs) if
                            label != "image" else 0, time.perf_counter() - t0)
        yield np.ascontiguousarray(out.T), report
        index += 1


def _pass_image(it: Iterator, nxt) -> Iterator[tuple[np.ndarray, TileReport]]:
    """Yield each tile with its image phase as it is (``method="image"``)."""
    index = 0
    while nxt is not None:
        S, _ = nxt
        yield S, TileReport(index, "image", None, float("nan"))
        nxt, index = next(it, None), index + 1


@dataclass(frozen=True)
class _Block:
    """One tile's block of frames: the previous tile's context, the tile, the lookahead.

    ``cur`` is the tile (frames-major), ``X_img`` the block's image STFT (grey
    parts given zero phase), ``M`` its magnitude and ``Mt`` that on the engine,
    ``C`` the context frames held fixed and ``frames`` the tile's frames.
    """

    cur: np.ndarray
    X_img: np.ndarray
    M: np.ndarray
    Mt: object
    C: int
    frames: slice
    has_phase: bool


def _make_block(engine, ctx, S: np.ndarray, has_phase: bool, nxt,
                s: PhaseSettings) -> _Block:
    """Join the context, the tile and the next tile's first frames into one block."""
    cur = _frames_major(S)
    F = len(cur)
    look = _frames_major(nxt[0][:, :s.lookahead]) if nxt is not None else cur[:0]
    look_has_phase = nxt[1] if nxt is not None else True
    C = 0 if ctx is None else min(len(ctx), s.context)
    parts = ([ctx[-C:]] if C else []) + [cur, look]
    X_img = np.concatenate(parts, axis=0)
    M = np.abs(X_img)
    if not has_phase or not look_has_phase:
        X_img = X_img.copy()
        if not has_phase:
            X_img[C:C + F] = M[C:C + F]
        if not look_has_phase:
            X_img[C + F:] = M[C + F:]
    return _Block(cur, X_img, M, engine.asarray(M), C, slice(C, C + F), has_phase)


def _new_run(engine, b: _Block, X0: np.ndarray, s: PhaseSettings) -> _FGLA:
    """A fast Griffin-Lim run on block ``b`` started from ``X0``, its context held fixed."""
    return _FGLA(engine, b.Mt, engine.asarray(X0, True), n_fixed=b.C, momentum=s.momentum,
                 frames=b.frames)


def _run_phase(engine, b: _Block, s: PhaseSettings, params: CodecParams,
               index: int) -> tuple[list[_FGLA], str, float | None]:
    """Run the method of ``s`` on one block: its runs, the label to report, the coherence."""
    if s.method == "griffinlim":
        X0 = b.X_img.copy()
        rng = np.random.default_rng([s.seed, index])
        X0[b.C:] = b.M[b.C:] * np.exp(2j * np.pi * rng.random(X0[b.C:].shape))
        return [_new_run(engine, b, X0, s).step(s.n_iter)], s.method, None
    if s.method == "fgla" or (s.method == "auto" and b.has_phase):
        return _image_start(engine, b, s, params)
    run = _pghi_start(engine, b, s, params)      # "pghi", or "auto" on a grey image
    _iterate(run, s, auto=s.method == "auto")
    return [run], ("pghi" if s.method == "pghi" else "fgla (pghi start)"), None


def _image_start(engine, b: _Block, s: PhaseSettings,
                 params: CodecParams) -> tuple[list[_FGLA], str, float | None]:
    """``fgla``, or ``auto`` with an image phase: score it, then keep, refine or race it."""
    img = _new_run(engine, b, b.X_img, s).step(1)
    coherence = img.history[0] if b.has_phase else None
    runs = [img]
    if s.method == "fgla":
        img.step(max(s.n_iter - 1, 0))
        return runs, "fgla" if b.has_phase else "fgla (zero phase start)", coherence
    if coherence < s.clean_db:
        return runs, "image", coherence
    if coherence >= s.pghi_db:                   # no usable phase: PGHI alone
        runs = [_pghi_start(engine, b, s, params)]
        _iterate(runs[0], s, auto=True)
        return runs, "fgla (pghi start)", coherence
    label = "fgla (image start)"
    if coherence >= s.race_db:
        runs.append(_pghi_start(engine, b, s, params))
        for r in runs:
            r.step(max(min(s.race_iter, s.n_iter) - r.iterations, 0))
        runs.sort(key=lambda r: _predict(r, s.n_iter))
        if runs[0] is not img:
            label = "fgla (pghi start)"
    _iterate(runs[0], s, auto=True)
    return runs, label, coherence


def _pick_result(engine, b: _Block, runs: list[_FGLA], label: str) -> tuple[np.ndarray, float]:
    """The tile's frames (frames-major) of the best run, and their SC."""
    best = min(runs, key=lambda r: r.best_sc)
    if label == "image":
        return b.cur, best.history[0]
    return engine.numpy(best.best)[b.frames], best.best_sc


def _predict(run: _FGLA, n_total: int) -> float:
    """SC a run would reach after ``n_total`` iterations, extrapolated per doubling of iterations."""
    best = np.minimum.accumulate(run.history)
    k = len(best)
    if k < 4 or n_total <= k:
        return float(best[-1])
    per_doubling = best[-1] - best[k // 2 - 1]
    return float(best[-1] + per_doubling * math.log2(n_total / k))


def _iterate(run: _FGLA, s: PhaseSettings, *, auto: bool):
    """Run ``run`` up to ``s.n_iter`` iterations, stopping early (``auto``) once SC stalls."""
    while run.iterations < s.n_iter:
        run.step(min(4, s.n_iter - run.iterations))
        if auto and run.stalled(s.stop_db, s.patience):
            break


def _pghi_start(engine, b: _Block, s: PhaseSettings, params: CodecParams) -> _FGLA:
    """A run on block ``b`` started from PGHI's phase (its context's phase kept), one step in."""
    C = b.C
    known = np.angle(b.X_img[:C]) if C else None
    ph = pghi(b.M, n_fft=params.n_fft, hop_length=params.hop_length, known=known, n_known=C,
              floor_db=s.pghi_floor_db, real_edges=s.real_edges)
    X0 = (b.M * np.exp(1j * ph)).astype(np.complex64)
    if C:
        X0[:C] = b.X_img[:C]
    return _new_run(engine, b, X0, s).step(1)
