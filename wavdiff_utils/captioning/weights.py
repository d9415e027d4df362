"""Where a captioner's weights come from: a local folder, the Hugging Face cache, or the hub.

A folder given as ``model`` is used as it is; a hub id goes through
``huggingface_hub``: the local cache first (``local_files_only=True``), then a
download unless ``local_files_only`` or ``HF_HUB_OFFLINE=1`` forbids it.  An
environment variable replaces the captioner's default id, and only that id.
:func:`weights_missing` makes the one-line error: model id, why, download
command, and the parameter to point at a local copy.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from ..errors import BadParameterError, WeightsMissingError, first_line
from ..paths import resolve

__all__ = ["model_name", "looks_local", "local_folder", "hub_folder", "hub_reachable", "offline_reason",
           "weights_missing", "fingerprint"]


class Unavailable(Exception):
    """Internal: why a folder or repository could not be had (a few words)."""


def model_name(model, *, default: str, env: str) -> str:
    """``model`` as a string; ``$env`` replaces it when ``model`` is exactly ``default``."""
    name = str(model).strip() if model is not None else ""
    if not name:
        raise BadParameterError(f"model is empty; give a Hugging Face id such as {default!r} "
                                f"or a local model folder")
    if name == default and os.environ.get(env, "").strip():
        return os.environ[env].strip()
    return name


def looks_local(name: str) -> bool:
    """True for names that can only be paths (hub ids are ``name`` or ``owner/name``)."""
    return (name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1
            or name.endswith("/") or (len(name) > 1 and name[1] == ":"))


def local_folder(name: str) -> Path | None:
    """``name`` as an existing folder, or ``None``; a path-like name that is missing raises."""
    p = resolve(name)
    if p.is_dir():
        return p
    if looks_local(name) or p.exists():
        raise Unavailable(f"folder {name} does not exist")
    return None


def offline_reason(local_files_only: bool | None) -> str:
    """Why the hub must not be asked (``""`` when it may be)."""
    if local_files_only:
        return "local_files_only=True"
    flags = [os.environ.get(v, "").strip().lower() for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")]
    from huggingface_hub import constants
    if any(f in ("1", "true", "yes", "on") for f in flags) or constants.HF_HUB_OFFLINE:
        return "offline mode (HF_HUB_OFFLINE=1)"
    return ""


_REACHABLE: dict = {}


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub's host answers a connection within ``timeout`` seconds (asked once per
    process): an offline machine learns it in at most that long, not in a download's 20 s."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    key = (url.hostname, url.port or (443 if url.scheme == "https" else 80))
    if key not in _REACHABLE:
        try:
            socket.create_connection(key, timeout=timeout).close()
            _REACHABLE[key] = True
        except OSError:
            _REACHABLE[key] = False
    return _REACHABLE[key]


def hub_folder(repo: str, *, cache_dir=None, local_files_only: bool | None = None,
               allow_patterns=None) -> Path:
    """The snapshot folder of ``repo``: from the cache, else downloaded when allowed
    (:class:`Unavailable` with the reason otherwise)."""
    from huggingface_hub import snapshot_download

    cache = "the local Hugging Face cache" + (f" ({cache_dir})" if cache_dir else "")
    try:
        return Path(snapshot_download(repo, cache_dir=cache_dir, local_files_only=True,
                                      allow_patterns=allow_patterns))
    except Exception:                  # LocalEntryNotFoundError, or a damaged cache entry
        pass
    why = offline_reason(local_files_only) or ("" if hub_reachable() else
                                               "the hub cannot be reached (offline)")
    if why:
        raise Unavailable(f"not in {cache}, and {why}")
    try:
        return Path(snapshot_download(repo, cache_dir=cache_dir, allow_patterns=allow_patterns))
    except Exception as exc:
        kind = type(exc).__name__
        why = ("the hub cannot be reached" if kind == "LocalEntryNotFoundError" else
               "the hub has no such model, or it is gated or private" if "Repository" in kind
               or "Gated" in kind else f"the hub did not give it ({kind}: {first_line(exc)[:120]})")
        raise Unavailable(f"not in {cache}, and {why}") from None


def weights_missing(label: str, model: str, why: str, *, downloads: list[str], folder: str,
                    env: str) -> WeightsMissingError:
    """The one-line error: model id, why, the download command, where to point ``model``."""
    how = " && ".join(downloads)
    return WeightsMissingError(
        f"{label} weights for model={model!r} are not available: {why}; get them with `{how}`, "
        f"then point the `model` parameter at that folder (notebook `-p model {folder}`, CLI "
        f"`--model {folder}`, or set {env}={folder})")


def fingerprint(folder: Path, *, suffixes=(".safetensors", ".bin", ".json")) -> str:
    """Names, sizes and times of a folder's weight and config files: changes with the weights."""
    import hashlib

    h = hashlib.sha1()
    for f in sorted(Path(folder).iterdir()):
        if f.suffix in suffixes and f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
