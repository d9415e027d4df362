"""Path helpers shared by the notebooks, the pipeline and the tests.

papermill runs a notebook in the folder it was launched from, nbval (and
JupyterLab) in the notebook's own folder.  Every notebook resolves its paths
through :func:`resolve`: relative paths start from the launch folder, or from the
repository root when the notebook runs inside ``notebooks/``.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import (BadParameterError, MissingInputError, OutputIsAFileError,
                     UnwritableOutputError, WavdiffError)

__all__ = ["REPO_ROOT", "SAMPLE_AUDIO", "resolve", "output_dir", "song_id",
           "atomic_path", "AUDIO_EXTENSIONS", "display_path", "display_message",
           "shorten_name", "stable_hash", "MAX_SONG_BYTES", "remove_temporaries", "song_ids", "writing",
           "OUTPUTS_ENV"]

#: Root of the repository (the folder holding ``wavdiff_utils``).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: The bundled, project-made music clip every notebook defaults to.
SAMPLE_AUDIO = REPO_ROOT / "sample_data" / "wavdiff_demo.mp3"

#: File extensions treated as audio when a folder is scanned.
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".m4a", ".opus")


def _base() -> Path:
    """Folder relative paths start from: the launch folder, or the repository root when the
    notebook runs inside ``notebooks/`` (nbval, JupyterLab)."""
    cwd = Path.cwd().resolve()
    return REPO_ROOT if cwd == (REPO_ROOT / "notebooks").resolve() else cwd


#: Environment variable that, when set, replaces the ``outputs/`` folder of relative paths.
OUTPUTS_ENV = "WAVDIFF_OUTPUTS"


def resolve(path: str | os.PathLike, *, must_exist: bool = False) -> Path:
    """Resolve a user-given path independently of where a notebook runs.

    Parameters
    ----------
    path : str or path-like
        Absolute, or relative to the launch folder (papermill's working folder).  A relative
        path under ``outputs/`` goes to ``$WAVDIFF_OUTPUTS`` instead when that is set (the
        test session sets it, so tests and nbval never write into the user's ``outputs/``).
        Inside the repository's ``notebooks/`` folder, where nbval and JupyterLab
        run notebooks, relative paths start from the repository root instead.
        An existing path that is not found there is looked up in the repository
        root too, so ``sample_data/...`` works from anywhere; not a path under ``outputs/``,
        which always stays in the launch folder (run from your own project folder, results
        land there, never in the repository's ``outputs/``).  ``~`` is expanded.
    must_exist : bool
        Refuse a path that does not exist (an input: checked before any output is made).

    Returns
    -------
    pathlib.Path
        An absolute path; it need not exist (outputs are created later).

    Raises
    ------
    MissingInputError
        With ``must_exist``, the path does not exist; the message names it.
    """
    if path is None or str(path).strip() == "":
        raise BadParameterError("empty path given; pass a file or folder name")
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and p.parts[:1] == ("outputs",) and os.environ.get(OUTPUTS_ENV):
        p = Path(os.environ[OUTPUTS_ENV], *p.parts[1:])     # a test session's own outputs
    if p.is_absolute():
        if must_exist and not os.path.lexists(p):
            raise MissingInputError(f"input {str(p)!r} does not exist")
        return p
    here = _base() / p
    if _exists(here):
        return _real(here)
    in_repo = REPO_ROOT / p
    if p.parts[:1] != ("outputs",) and _exists(in_repo):    # never another project's outputs
        return _real(in_repo)
    if must_exist:
        raise MissingInputError(f"input {str(_real(here))!r} does not exist")
    return _real(here)


def _exists(p: Path) -> bool:
    """``p.exists()``, False where the system cannot even look (a name too long, a link loop)."""
    try:
        return p.exists()
    except OSError:
        return False


def output_dir(path: str | os.PathLike) -> Path:
    """Resolve ``path`` with :func:`resolve` and create the folder (papermill does not).

    Raises
    ------
    OutputIsAFileError
        ``path``, or a folder above it, is a file.
    UnwritableOutputError
        The folder cannot be created (read-only disk, no permission, a name too long, disk
        full); one line naming ``path`` and the reason.
    """
    p = resolve(path)
    if _exists(p) and not p.is_dir():
        raise OutputIsAFileError(f"output {str(p)!r} exists and is a file, not a folder")
    above = next((a for a in p.parents if os.path.lexists(a)), None)
    if above is not None and above.exists() and not above.is_dir():
        raise OutputIsAFileError(f"output {str(p)!r} cannot be made: {str(above)!r} is a file, "
                                 f"not a folder")
    with writing(p):
        p.mkdir(parents=True, exist_ok=True)
    return p


_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)
#: Longest song id in UTF-8 bytes: room for ``_0000.png``, ``.partial`` and temporary-file
#: prefixes within the usual 255-byte limit of a file name.
MAX_SONG_BYTES = 120


def stable_hash(text: str, n: int = 8) -> str:
    """First ``n`` hex digits of the SHA-1 of ``text``: the same on every machine and run."""
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:n]


def shorten_name(name: str, *, max_bytes: int = MAX_SONG_BYTES, key: str | None = None) -> str:
    """``name`` itself when it fits ``max_bytes`` (UTF-8), else its start plus ``-<hash of key>``.

    >>> shorten_name("a" * 200, max_bytes=20)
    'aaaaaaaaaaa-e61cfffe'
    """
    if len(name.encode("utf-8", "surrogateescape")) <= max_bytes:
        return name
    suffix = "-" + stable_hash(key if key is not None else name)
    head = name.encode("utf-8", "surrogateescape")[: max_bytes - len(suffix)]
    return head.decode("utf-8", "ignore").rstrip("._-") + suffix


def song_id(path: str | os.PathLike) -> str:
    """Name used for a song's tile folder and tile files: the file stem, made filesystem-safe.

    Examples
    --------
    >>> song_id("/music/My Song (live).mp3")
    'My_Song_live'

    Names longer than ``MAX_SONG_BYTES`` (UTF-8) keep their start and get a stable
    hash suffix of the whole stem, so two long names sharing a start stay apart.
    """
    stem = Path(path).stem
    safe = _UNSAFE.sub("_", stem).strip("._")
    return shorten_name(safe, key=stem) if safe else "song"


def remove_temporaries(folder, names) -> int:
    """Delete what :func:`atomic_path` left beside each of ``names`` in ``folder`` when its writer
    was killed (``.<name>.<random><suffix>``); call it only while holding the folder's lock."""
    n = 0
    for name in names:
        for f in Path(folder).glob(f".{name}.*"):
            if f.is_file():
                f.unlink(missing_ok=True)
                n += 1
    return n


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


def display_path(path, base=None) -> str:
    """``path`` as a report shows it: relative to ``base`` (a folder, or several: the run's
    output and input folders) or to the repository when it lies inside one of them, else just
    its name, so that a shared report never shows the folders of the machine that made it."""
    p = _real(path)
    bases = [] if base is None else [base] if isinstance(base, (str, os.PathLike)) else list(base)
    for root in [Path(b) for b in bases if b is not None] + [REPO_ROOT]:
        try:
            return p.relative_to(_real(root)).as_posix()
        except ValueError:
            continue
    return p.name


def _real(path) -> Path:
    """``path`` made absolute with its links followed as far as they go: a symlink loop or a
    dangling link is shown as it is, never an error (``Path.resolve`` raises on a loop)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def display_message(message: str, base=None) -> str:
    """A message that starts with an absolute path (``/x/y.mp3: is silent``), that path shown as
    :func:`display_path` shows it."""
    head, sep, rest = str(message).partition(": ")
    return f"{display_path(head, base)}{sep}{rest}" if sep and head.startswith("/") else str(message)


def song_ids(files) -> dict[Path, str]:
    """Song id for each file, every one distinct.

    A stem used by one file is the id itself.  Files whose stems collide get
    their parent folder's name prefixed (``live__song``); where that still
    collides (``song.wav`` and ``song.mp3`` in one folder) the stem gets
    its extension appended (``song_mp3``), and as a last resort a stable hash
    of the path.
    """
    files = [Path(f) for f in files]

    def dups(ids):
        seen: dict[str, int] = {}
        for s in ids.values():
            seen[s] = seen.get(s, 0) + 1
        return {s for s, n in seen.items() if n > 1}

    out = {f: song_id(f) for f in files}
    steps = (lambda f: song_id(f.parent.name + "__" + f.stem),
             lambda f: shorten_name(f"{song_id(f)}_{f.suffix[1:].lower()}", key=str(f)),
             lambda f: shorten_name(f"{song_id(f)}-{stable_hash(str(f))}", key=str(f)))
    for step in steps:
        clash = dups(out)
        if not clash:
            break
        out = {f: step(f) if s in clash else s for f, s in out.items()}
    return out


@contextmanager
def writing(path):
    """Turn an OSError of the writes inside into :class:`UnwritableOutputError` naming ``path``
    (the final path, not a temporary one): full disk, read-only, no permission, one line."""
    try:
        yield
    except WavdiffError:
        raise
    except OSError as exc:
        raise UnwritableOutputError(path, exc) from None
