"""Path helpers shared by the notebooks, the pipeline and the tests.

papermill runs a notebook in the folder it was launched from, nbval runs it in
the notebook's own folder.  Every notebook therefore resolves its paths through
:func:`resolve`, which makes relative paths independent of the working folder:
a relative path is taken relative to the current folder when it exists there,
and relative to the repository root otherwise.
"""
from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["REPO_ROOT", "SAMPLE_AUDIO", "resolve", "output_dir", "song_id",
           "atomic_path", "AUDIO_EXTENSIONS"]

#: Root of the repository (the folder holding ``wavdiff_utils``).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: The bundled, project-made music clip every notebook defaults to.
SAMPLE_AUDIO = REPO_ROOT / "sample_data" / "wavdiff_demo.mp3"

#: File extensions treated as audio when a folder is scanned.
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".m4a", ".opus")


def resolve(path: str | os.PathLike) -> Path:
    """Resolve a user-given path independently of the working folder.

    Parameters
    ----------
    path : str or path-like
        Absolute path, or a path relative to the current folder or to the
        repository root (tried in that order).  ``~`` is expanded.

    Returns
    -------
    pathlib.Path
        An absolute path.  It is not required to exist: for a relative path
        that exists in neither place, the repository-relative form is returned
        so outputs land in the same place whatever the working folder.
    """
    if path is None or str(path).strip() == "":
        raise ValueError("empty path given; pass a file or folder name")
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute():
        return p
    here = Path.cwd() / p
    if here.exists():
        return here.resolve()
    return (REPO_ROOT / p).resolve()


def output_dir(path: str | os.PathLike) -> Path:
    """Resolve ``path`` with :func:`resolve` and create the folder (papermill does not)."""
    p = resolve(path)
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"output {str(p)!r} exists and is a file, not a folder")
    p.mkdir(parents=True, exist_ok=True)
    return p


_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


def song_id(path: str | os.PathLike) -> str:
    """Name used for a song's tile folder and tile files: the file stem, made filesystem-safe.

    Examples
    --------
    >>> song_id("/music/My Song (live).mp3")
    'My_Song_live'
    """
    stem = Path(path).stem
    safe = _UNSAFE.sub("_", stem).strip("._")
    return safe or "song"


@contextmanager
def atomic_path(final: str | os.PathLike, *, suffix: str | None = None):
    """Yield a temporary path beside ``final``; rename it onto ``final`` only on success.

    Nothing partial is ever left under the final name: if the body raises, the
    temporary file is removed and the exception propagates.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix or final.suffix or ".tmp",
                               dir=final.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; give the usual permissions
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
