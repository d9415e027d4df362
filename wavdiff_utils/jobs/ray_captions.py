"""The Ray engine's captions: an actor pool, each actor a captioner built once on its node.

Split from :mod:`wavdiff_utils.jobs.ray_engine` (which re-exports these names).  Each actor builds
the captioner once, looking its weights up on its own node, and loads its model at its first
song; it asks Ray for a GPU when the cluster has them.  Plain actors rather than Ray Data
``map_batches``: a song is the unit of work, with side effects on disk, its own failure and
its own skip.
"""
from __future__ import annotations

import contextlib
import socket
from collections import deque

from ..captioning.batch import caption_song
from ..captioning.registry import fallback_notice, make_captioner
from ..errors import WeightsMissingError
from .ray_engine import RaySession, absolute_if_local, cancel, import_ray, remote, on_node
from .workers import silence_library_warnings

__all__ = ["caption_actor_count", "run_captions", "caption_on_ray"]


class _CaptionWorker:
    """One captioner in a Ray actor: built once (its weights looked up on the actor's node),
    its model loaded at its first song."""

    def __init__(self, name, model, device):

        silence_library_warnings()
        self.name = name
        self.error = ""
        try:
            self.captioner = make_captioner(name, model=model, device=device)
        except Exception as exc:              # missing weights or extra on this node, a bad device
            self.captioner, self.error = None, self._notice(exc)

    def _notice(self, exc) -> str:

        return f"{fallback_notice(self.name, exc)} (looked up on Ray node {socket.gethostname()})"

    def caption(self, path, output, song, params, artist, title):
        """``("ok", CaptionResult)``, ``("fail", (path, message))`` or ``("weights", notice)``."""

        if self.captioner is None:
            return "weights", self.error
        problem = on_node(path, output)
        if problem:
            return "fail", (str(path), problem)
        try:
            return "ok", caption_song(self.captioner, path, output, song=song, params=params,
                                      artist=artist, title=title)
        except WeightsMissingError as exc:
            return "weights", self._notice(exc)
        except Exception as exc:              # one bad song never stops the batch
            msg = str(exc)
            return "fail", (str(path), msg if str(path) in msg
                            else f"{path}: {type(exc).__name__}: {msg}")


def caption_actor_count(name: str, n_songs: int, *, gpus: int, cpus: int, device: str,
                        actors: int = 0) -> tuple[int, bool]:
    """How many caption actors, and whether each takes a GPU.

    With GPUs in the cluster (and a model captioner, device not ``cpu``): one actor per
    GPU.  Without: one per CPU for the metadata captioner (no model), one for MuQ and
    Qwen (each actor holds a copy of the model; torch already uses every core of its
    node).  ``actors`` > 0 overrides the count.
    """
    gpu = name in ("muq", "qwen") and gpus > 0 and not str(device).startswith(("cpu", "mps"))
    auto = gpus if gpu else (max(1, cpus) if name == "metadata" else 1)
    return max(1, min(n_songs, actors or auto)), gpu


def run_captions(name: str, jobs, *, model, device: str, n_actors: int, gpu: bool,
                 on_song) -> tuple[list, list, str]:
    """Caption ``jobs`` (``(path, output, song, params, artist, title)``) on an actor pool.

    Returns ``(results, failures, weights_problem)``: the :class:`CaptionResult` of every
    song captioned or up to date, ``(path, message)`` failures, and the one-line fallback
    notice of a missing-weights error (the pool stops at once; the caller falls back) or ``""``.
    ``on_song(result or None)`` is called after each song.  An actor whose process dies is
    restarted once and its song retried; songs left when every actor is gone fail.
    """
    ray = import_ray()
    cls = remote("caption", _CaptionWorker, num_cpus=1, num_gpus=1 if gpu else 0,
                  max_restarts=1, max_task_retries=1)
    actors = [cls.remote(name, model, device) for _ in range(max(1, n_actors))]
    idle, waiting, running = list(actors), deque(jobs), {}
    results, failures, problem = [], [], ""
    try:
        while (waiting or running) and not problem:
            while waiting and idle:
                actor, job = idle.pop(), waiting.popleft()
                running[actor.caption.remote(*job)] = (actor, job)
            if not running:                       # every actor is gone
                for job in waiting:
                    failures.append((str(job[0]), f"{job[0]}: no caption actor left (their "
                                                  f"processes died); run again"))
                    on_song(None)
                break
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
            for ref in ready:
                actor, job = running.pop(ref)
                try:
                    kind, value = ray.get(ref)
                    idle.append(actor)
                except ray.exceptions.RayError as exc:
                    kind, value = "fail", (str(job[0]), f"{job[0]}: its caption actor died "
                                                        f"({type(exc).__name__}); run again")
                if kind == "weights":
                    problem = value
                    break
                (results if kind == "ok" else failures).append(value)
                on_song(value if kind == "ok" else None)
    finally:
        cancel(ray, running)
        for a in actors:                          # frees their CPUs / GPUs for the next step
            with contextlib.suppress(Exception):
                ray.kill(a)
    return results, failures, problem


def caption_on_ray(name: str, jobs, *, model, device: str, session: RaySession, actors: int,
                   on_song, restart) -> tuple[str, str, list, list]:
    """Caption ``jobs`` with the captioner ``name`` on an actor pool, as the local engine does:
    when its weights (or its extra) are missing the metadata captioner stands in, with a
    one-line notice naming the node.

    The weights are looked up by the actors, on their nodes, not here: the driver needs
    neither the captioner's extra nor its weights (a ``ray://`` driver outside the cluster
    included).  A local ``model`` folder is handed over as an absolute path (resolved here,
    as the local engine resolves it), and this process's ``WAVDIFF_*`` variables reach the
    nodes of a joined cluster (:func:`wavdiff_env`).

    Returns ``(caption_source, notice, results, failures)``; ``restart(label)`` is called
    when the metadata captioner takes over.
    """
    model = absolute_if_local(model) if model else model
    chosen, notice = name, ""

    def run(who):
        n, gpu = caption_actor_count(who, len(jobs), gpus=session.gpus, cpus=session.cpus,
                                     device=device, actors=actors)
        return run_captions(who, jobs, model=model if who == name else None, device=device,
                            n_actors=n, gpu=gpu, on_song=on_song)

    results, failures, problem = run(chosen)
    if problem and chosen != "metadata":       # an actor could not find the weights
        notice, chosen = problem, "metadata"
        restart("caption (metadata)")
        results, failures, _ = run(chosen)
    return chosen, notice, results, failures
