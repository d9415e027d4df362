"""Phase reconstruction for images without exact phase: fast Griffin-Lim, PGHI and the
automatic choice, on a block STFT engine (numpy, or torch with a GPU) and numba kernels.
Names load on first use (``lazy_loader``)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "reconstruct": ["METHODS", "PhaseSettings", "TileReport", "reconstruct_tiles", "pghi", "spectral_convergence", "signal_sc", "hann_gamma"],
    "stft_engine": ["stft_engine"],
})
