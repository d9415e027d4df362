"""STFT and inverse STFT of a block of frames, in numpy (scipy's FFT and numba kernels) or torch.

The phase module's iterations run on these engines.  Frames are frames-major
(``[frame, bin]``), not centred (librosa's ``center=False``), with a periodic
Hann window; the inverse divides by the window's overlapped square, so
``stft(istft(X))`` projects ``X`` onto consistent spectrograms.
"""
from __future__ import annotations

import os
import sys

import numpy as np

__all__ = ["stft_engine"]


class NumpyEngine:
    """STFT and inverse STFT of a block of frames (frames-major, no centring) in numpy."""

    def __init__(self, n_fft: int, hop: int):
        import scipy.fft

        self.fft = scipy.fft
        self.n_fft, self.hop = n_fft, hop
        self.win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)

    def asarray(self, a, complex_: bool = False):
        return np.ascontiguousarray(a, np.complex64 if complex_ else np.float32)

    def numpy(self, a) -> np.ndarray:
        return a

    def _inv_wsum(self, n_frames: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_inv", {})
        if n_frames not in cache:
            w2 = np.zeros((n_frames - 1) * self.hop + self.n_fft, np.float32)
            self._ola(np.broadcast_to(self.win * self.win, (n_frames, self.n_fft)), w2)
            cache[n_frames] = 1.0 / np.maximum(w2, np.float32(1e-6))
        return cache[n_frames]

    def _ola(self, frames: np.ndarray, out: np.ndarray):
        hop, n = self.hop, self.n_fft
        if n % hop == 0:
            k = n // hop
            view = out.reshape(-1, hop)
            parts = frames.reshape(len(frames), k, hop)
            for j in range(k):
                view[j:j + len(frames)] += parts[:, j]
        else:
            for i, f in enumerate(frames):
                out[i * hop:i * hop + n] += f

    def istft(self, X):
        from .kernels import overlap_add

        frames = self.fft.irfft(X, n=self.n_fft, axis=1, workers=-1).astype(np.float32, copy=False)
        y = np.zeros((len(X) - 1) * self.hop + self.n_fft, np.float32)
        overlap_add(frames, self.win, self._inv_wsum(len(X)), self.hop, y)
        return y

    def stft(self, y):
        from .kernels import windowed_frames

        frames = np.empty((1 + (len(y) - self.n_fft) // self.hop, self.n_fft), np.float32)
        windowed_frames(y, self.win, self.hop, frames)
        return self.fft.rfft(frames, axis=1, workers=-1, overwrite_x=True).astype(np.complex64,
                                                                                copy=False)

    # element-wise helpers, so the iteration below is backend-free
    abs = staticmethod(np.abs)
    norm = staticmethod(lambda a: float(np.linalg.norm(a)))

    @staticmethod
    def project(a, mag):
        """``mag`` with the phase of ``a`` (phase 0 where ``a`` is 0)."""
        m = np.abs(a)
        np.maximum(m, np.float32(1e-30), out=m)
        np.divide(mag, m, out=m)
        return a * m

    @staticmethod
    def extrapolate(a, b, w):
        """``a + w (b - a)``."""
        out = b - a
        out *= np.float32(w)
        out += a
        return out

    @staticmethod
    def copy(a):
        return a.copy()


class TorchEngine(NumpyEngine):
    """The same engine in torch (CPU threads, or the GPU)."""

    def __init__(self, n_fft: int, hop: int, device: str = "auto"):
        import torch

        self.torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.n_fft, self.hop = n_fft, hop
        self.win = torch.hann_window(n_fft, periodic=True, dtype=torch.float32, device=self.device)
        self._wsums: dict[int, object] = {}

    def asarray(self, a, complex_: bool = False):
        t = self.torch
        dtype = t.complex64 if complex_ else t.float32
        if isinstance(a, t.Tensor):
            return a.to(self.device, dtype)
        return t.from_numpy(np.ascontiguousarray(a)).to(self.device, dtype)

    def numpy(self, a) -> np.ndarray:
        return a.detach().cpu().numpy()

    def _fold(self, frames):
        n, hop = len(frames), self.hop
        length = (n - 1) * hop + self.n_fft
        if self.n_fft % hop:
            F = self.torch.nn.functional
            return F.fold(frames.T.unsqueeze(0), output_size=(1, length),
                          kernel_size=(1, self.n_fft), stride=(1, hop)).reshape(-1)
        k = self.n_fft // hop
        out = self.torch.zeros(length, dtype=frames.dtype, device=frames.device)
        view = out.view(-1, hop)
        parts = frames.view(n, k, hop)
        for j in range(k):
            view[j:j + n] += parts[:, j]
        return out

    def _inv_wsum(self, n_frames: int):
        if n_frames not in self._wsums:
            w2 = (self.win * self.win).expand(n_frames, -1)
            self._wsums[n_frames] = self._fold(w2).clamp_min(1e-6).reciprocal()
        return self._wsums[n_frames]

    def istft(self, X):
        frames = self.torch.fft.irfft(X, n=self.n_fft, dim=1) * self.win
        return self._fold(frames) * self._inv_wsum(len(X))

    def stft(self, y):
        return self.torch.fft.rfft(y.unfold(0, self.n_fft, self.hop) * self.win, dim=1)

    def abs(self, a):
        return a.abs()

    def norm(self, a):
        return float(self.torch.linalg.vector_norm(a))

    def project(self, a, mag):
        return a * mag.div(a.abs().clamp_min_(1e-30))

    def extrapolate(self, a, b, w):
        return self.torch.lerp(a, b, w)

    @staticmethod
    def copy(a):
        return a.clone()


def stft_engine(n_fft: int, hop: int, *, backend: str = "auto", device: str = "auto"):
    """The STFT engine for ``backend``: "torch", "numpy", or "auto".

    ``auto`` takes torch only when it is installed and a GPU is there: on a
    2-core CPU, scipy's FFT in numpy measured 20 ms per iteration of a tile
    against 21-39 ms for torch (1-2 threads), and torch's threads slow down
    badly when other processes share the cores.
    """
    if backend == "auto" and not _gpu_likely(device):
        return NumpyEngine(n_fft, hop)          # importing torch alone costs ~700 MB and seconds
    if backend in ("auto", "torch"):
        try:
            import torch
        except ImportError:
            if backend == "torch":
                raise ImportError("backend='torch' needs torch: pip install torch") from None
        else:
            gpu = torch.cuda.is_available() if device == "auto" else device != "cpu"
            if backend == "torch" or gpu:
                return TorchEngine(n_fft, hop, device)
    return NumpyEngine(n_fft, hop)


def _gpu_likely(device: str) -> bool:
    """Whether a GPU may be there, without importing torch unless it is already imported."""
    if device != "auto":
        return device != "cpu"
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")
