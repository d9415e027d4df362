"""Embeddings cached per sample, so a second evaluation against the same reference costs nothing.

One ``.npz`` per sample under ``<cache>/<embedding key>/``: its window embeddings, the joint
latent (MuQ-MuLan), its peak level and, for images, the pooled magnitude plane.  The key is
the sample's identity:

- an image of the reference: the file (resolved path, size, modification time) and the decode
  settings (phase, iterations, codec assumed for images without metadata);
- a generated image: its decoded audio's samples (SHA-1), as decoded in this run;
- a clip of an audio file: the file and the clip's span and rate.

New entries are held in memory and written (each atomically) only by :meth:`commit`, which the
evaluation calls once it has succeeded: nothing is cached from a failed run.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from ..paths import atomic_path

__all__ = ["EmbeddingCache", "file_key", "audio_key"]

_FORMAT = 1


def file_key(path: Path, **extra) -> str:
    """Identity of a file (resolved path, size, modification time) and ``extra`` settings."""
    st = Path(path).stat()
    data = {"format": _FORMAT, "path": str(Path(path).resolve()), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, **extra}
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()


def audio_key(y: np.ndarray, sample_rate: int, **extra) -> str:
    """Identity of audio samples: their SHA-1 with the rate and ``extra`` settings."""
    h = hashlib.sha1(np.ascontiguousarray(y, dtype=np.float32).tobytes())
    h.update(json.dumps({"format": _FORMAT, "rate": int(sample_rate), **extra}, sort_keys=True).encode())
    return h.hexdigest()


class EmbeddingCache:
    """Per-sample entries under ``folder/<embedding_key>/`` (``folder`` None: no cache).

    ``get(key)`` gives a stored entry (a dict of arrays and numbers) or None; ``put(key,
    entry)`` holds a new one until :meth:`commit` writes them all.
    """

    def __init__(self, folder, embedding_key: str):
        self.folder = Path(folder) / embedding_key if folder is not None else None
        self.pending: dict[str, dict] = {}
        self.hits = 0

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict | None:
        if key in self.pending:
            return self.pending[key]
        if self.folder is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                entry = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError):
            return None                       # unreadable: computed again and overwritten
        if "windows" not in entry or "peak" not in entry:
            return None
        entry["peak"] = float(entry["peak"])
        self.hits += 1
        return entry

    def put(self, key: str, entry: dict) -> None:
        self.pending[key] = entry

    def commit(self) -> int:
        """Write the new entries (each atomically); returns how many.  A cache that cannot be
        written is reported with a warning, never an error: the evaluation itself succeeded."""
        if self.folder is None:
            self.pending.clear()
            return 0
        n = 0
        for key, entry in self.pending.items():
            arrays = {k: np.asarray(v) for k, v in entry.items() if v is not None}
            try:
                with atomic_path(self._path(key)) as tmp, open(tmp, "wb") as fh:
                    np.savez(fh, **arrays)
                n += 1
            except OSError as exc:
                warnings.warn(f"embedding cache {self.folder} not written ({exc})", stacklevel=2)
                break
        self.pending.clear()
        return n
