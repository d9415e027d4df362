"""Phase reconstruction for images without exact phase: fast Griffin-Lim, PGHI and the
automatic choice, on a block STFT engine (numpy, or torch with a GPU) and numba kernels.

Names load on first use (``lazy_loader``), so importing this package imports none of its
modules, nor torch.
"""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=["kernels", "reconstruct", "stft_engine"],
    submod_attrs={
        "kernels": [],
        "reconstruct": ["METHODS", "PhaseSettings", "TileReport", "reconstruct_tiles", "pghi", "spectral_convergence", "signal_sc", "hann_gamma"],
        "stft_engine": ["stft_engine"],
    },
)
