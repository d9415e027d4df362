"""``python -m wavdiff_utils``: audio in, a captioned 16-bit tile dataset out (plus an HTML report).

In a terminal with no options it asks for the input, the output folder, the
artist and the title (empty = from the file tags).  With options (or ``-f
params/pipeline.yaml``) it asks nothing::

    python -m wavdiff_utils --input sample_data --output outputs/dataset --captioner muq
    python -m wavdiff_utils -f params/pipeline.yaml --workers 4
    python -m wavdiff_utils --input music/ --output ds/ --engine ray --shards

The work is done by :func:`wavdiff_utils.jobs.pipeline.run_pipeline`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path

from ..codec.params import CodecParams, load_yaml_params
from ..dataset.shards import parse_shard_size
from ..errors import BadParameterError, WavdiffError, one_line
from ..paths import resolve
from .pipeline import CAPTIONERS, run_pipeline
from .ray_engine import ENGINES, RAY_EXTRA, RayUnavailableError
from .workers import native_stderr_silenced, silence_library_warnings

#: Options a ``-f`` YAML file may set (the same names as the long options, with underscores).
OPTIONS = ("input", "output", "artist", "title", "captioner", "model", "device", "workers",
           "layout", "size", "sample_rate", "db_min", "db_max", "overwrite", "report",
           "report_dir", "png_compression", "engine", "ray_address", "caption_actors", "shards",
           "shard_size")
DEFAULT_OUTPUT = "outputs/dataset"
EXAMPLE = "python -m wavdiff_utils --input song.mp3 --output outputs/dataset"


class UsageError(BadParameterError):
    """A bad or missing option; the message says which and what to do."""


def _png_level(text: str):
    """``--png-compression`` value: a zlib level, or "small"."""
    text = str(text).strip().lower()
    return "small" if text == "small" else int(text) if text.isdigit() else text


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m wavdiff_utils",
        description="Turn a song or a folder of songs into a training-ready dataset: 16-bit RGB "
                    "PNG spectrogram tiles, one caption per tile, metadata.jsonl, a dataset card "
                    "and an HTML report. In a terminal with no options it asks for input, "
                    "output, artist and title.",
        epilog=f"example: {EXAMPLE} --captioner muq --workers 4")
    ap.add_argument("-f", "--file", action="append", default=[], metavar="YAML",
                    help="params/*.yaml with option values (e.g. params/pipeline.yaml); "
                         "options given here win")
    ap.add_argument("-i", "--input", help="audio file, or folder searched recursively (relative: "
                                          "to this folder, else to the repository)")
    ap.add_argument("-o", "--output", help=f"dataset folder (created, relative to this folder), "
                                           f"e.g. {DEFAULT_OUTPUT}")
    ap.add_argument("--artist", help="caption prefix for every song; empty = from the file tags")
    ap.add_argument("--title", help="caption prefix for every song; empty = from the file tags")
    ap.add_argument("--captioner", help="muq (tags, default), qwen (prose), metadata (file tags "
                                        "and tempo, no weights; also what stands in when the "
                                        "model weights are missing) or none")
    ap.add_argument("--model", help="captioning model: local folder or hub id "
                                    "(default: the captioner's own; $WAVDIFF_MUQ_MODEL / "
                                    "$WAVDIFF_QWEN_MODEL replace it)")
    ap.add_argument("--device", help="captioner device: auto (default), cpu, cuda[:N], mps")
    ap.add_argument("--workers", type=int, help="encode worker processes (0 = one per CPU, "
                                                "at most 8; default 0); more than the CPU "
                                                "cores is capped, with a note. With --engine "
                                                "ray and no --ray-address: the CPUs of the "
                                                "embedded Ray (same rule), which gets twice "
                                                "that many songs in flight (one running per "
                                                "CPU, one queued). With --ray-address: the songs "
                                                "in flight on the cluster (Ray runs at most one "
                                                "per CPU; 0 = twice the cluster's CPUs)")
    ap.add_argument("--layout", help="tile layout: exact (default, lossless) or seed")
    ap.add_argument("--size", type=int, help="tile edge in pixels (default 1024)")
    ap.add_argument("--sample-rate", dest="sample_rate", type=int, help="codec sample rate in Hz "
                                                                        "(default 44100)")
    ap.add_argument("--db-min", dest="db_min", type=float, help="dB stored as pixel 0 (default -110)")
    ap.add_argument("--db-max", dest="db_max", type=float, help="dB stored as pixel 65535 (default 10)")
    ap.add_argument("--png-compression", dest="png_compression", type=_png_level,
                    help="zlib level 0-9 of the tiles (default 0, fastest), or 'small' "
                         "(21%% smaller files, about 4x the PNG time)")
    ap.add_argument("--engine", help="local (default: worker processes here) or ray (one Ray "
                                      "task per song, captioner actors; pip install -e '.[ray]')")
    ap.add_argument("--ray-address", dest="ray_address",
                    help="with --engine ray: 'auto' or host:port or ray://host:10001 joins that "
                         "cluster (every node must see --input and --output at the same paths); "
                         "default: an embedded Ray started here and shut down at the end")
    ap.add_argument("--caption-actors", dest="caption_actors", type=int,
                    help="with --engine ray: captioner actors (0 = one per GPU if the cluster "
                         "has GPUs, else one per CPU for metadata and one for a model)")
    ap.add_argument("--shards", nargs="?", const=True, default=None, metavar="DIR",
                    help="also write WebDataset tar shards (16-bit PNG bytes, metadata JSON, "
                         "captions) and shards.json into DIR (default <output>/shards)")
    ap.add_argument("--shard-size", dest="shard_size",
                    help="shard limit: a size with a unit (default 1GB; 500MB) or a number "
                         "of samples (2000)")
    ap.add_argument("--overwrite", action="store_true", default=None,
                    help="re-encode songs finished with other codec parameters")
    ap.add_argument("--no-report", dest="report", action="store_false", default=None,
                    help="skip the HTML report")
    ap.add_argument("--report-dir", dest="report_dir", help="report folder (default <output>/report)")
    ap.add_argument("--interactive", action="store_true",
                    help="ask for input, output, artist and title (not given as options) even "
                         "when stdin is not a terminal")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return ap


def _settings(args) -> dict:
    """Option values: defaults < YAML files (in order) < command line."""

    values = {"artist": "", "title": "", "captioner": "muq", "model": None, "device": "auto",
              "workers": 0, "layout": "exact", "size": 1024, "sample_rate": 44100,
              "db_min": -110.0, "db_max": 10.0, "overwrite": False, "report": True,
              "report_dir": None, "png_compression": 0, "input": None, "output": None,
              "engine": "local", "ray_address": None, "caption_actors": 0, "shards": False,
              "shard_size": "1GB"}
    for f in args.file:
        try:
            data = load_yaml_params(f)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        unknown = sorted(set(data) - set(OPTIONS))
        if unknown:
            raise UsageError(f"{f}: unknown option(s) {', '.join(map(repr, unknown))}; known: "
                             f"{', '.join(OPTIONS)}")
        values.update(data)
    for k in OPTIONS:
        v = getattr(args, k, None)
        if v is not None:
            values[k] = v
    return values


def _ask(prompt: str, default: str = "", *, check=None) -> str:
    """One answer from stdin; re-asked (at most 3 times) while ``check`` says what is wrong."""
    for _ in range(3):
        try:
            answer = input(prompt).strip()
        except EOFError:
            raise UsageError(f"no answer to {prompt.strip()!r} (end of input)") from None
        answer = answer or default
        problem = check(answer) if check else None
        if not problem:
            return answer
        print(f"  {problem}", file=sys.stderr)
    raise UsageError(f"no usable answer to {prompt.strip()!r}")


def _prompt(values: dict, given: set) -> None:

    def audio(a):
        if not a:
            return "give an audio file or a folder of audio files"
        return None if resolve(a).exists() else f"{a!r} does not exist"

    print("wavdiff: audio -> captioned 16-bit spectrogram tiles (a dataset). "
          "Press Enter to take the value in [brackets].")
    if "input" not in given:
        values["input"] = _ask("Audio file or folder: ", values.get("input") or "", check=audio)
    if "output" not in given:
        values["output"] = _ask(f"Output folder [{values.get('output') or DEFAULT_OUTPUT}]: ",
                                values.get("output") or DEFAULT_OUTPUT)
    if "artist" not in given:
        values["artist"] = _ask("Artist (empty = from the file tags): ", values.get("artist") or "")
    if "title" not in given:
        values["title"] = _ask("Title (empty = from the file tags): ", values.get("title") or "")


def main(argv=None) -> int:
    """Run the pipeline from the command line; returns the exit status.

    0: every song made (captions may have been skipped, said in one line);
    1: some songs failed (the rest are made; the summary says why);
    2: a usage error or any other :class:`~wavdiff_utils.errors.WavdiffError` (printed as one
    line, no traceback); 130: interrupted (run the same command again to resume).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = _parser()
    args = ap.parse_args(argv)
    try:
        values = _settings(args)
        given = {k for k in OPTIONS if getattr(args, k, None) is not None}
        given |= {k for k in ("input", "output") if values.get(k)}
        tty = sys.stdin is not None and sys.stdin.isatty()
        if args.interactive or (tty and not argv):
            _prompt(values, given if args.interactive else set())
        missing = [k for k in ("input", "output") if not values.get(k)]
        if missing:
            why = ("stdin is not a terminal, so nothing can be asked" if not tty
                   else "options were given, so nothing is asked")
            raise UsageError(f"no --{' or --'.join(missing)} given and {why}. Run e.g. "
                             f"`{EXAMPLE}`, use -f params/pipeline.yaml, or add --interactive "
                             f"to answer the prompts from stdin")
        params, run = _checked(values)
    except UsageError as exc:
        ap.print_usage(sys.stderr)
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except WavdiffError as exc:                # not the options' fault (e.g. Ray not installed)
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2

    silence_library_warnings()
    old_term = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _terminate)      # SIGTERM ends the run as Ctrl-C does
    try:
        with native_stderr_silenced():
            result = run_pipeline(params=params, progress=not args.quiet, **run)
    except KeyboardInterrupt:
        print("\ninterrupted: finished songs and tiles are kept; run the same command again to "
              "resume", file=sys.stderr)
        return 130
    except (WavdiffError, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)     # one line, never a traceback
        return 2
    except Exception as exc:                   # a bug: one line here, the traceback in a file
        log = Path(tempfile.gettempdir()) / f"wavdiff-error-{os.getpid()}.log"
        with contextlib.suppress(OSError):
            log.write_text(traceback.format_exc(), encoding="utf-8")
        print(f"error: unexpected {type(exc).__name__}: {one_line(exc)} (traceback in {log}; "
              f"please report it)", file=sys.stderr)
        return 3
    finally:
        signal.signal(signal.SIGTERM, old_term)
    print(result.summary())
    return 0 if result.ok else 1


def _terminate(signum, frame):
    """SIGTERM handler: raise ``KeyboardInterrupt``, so finished work is kept and a resume line printed."""
    raise KeyboardInterrupt


def _here(path) -> Path:
    """A user-given output path, relative to the launch folder."""
    return Path(os.path.expanduser(str(path))).absolute()


def _checked(values: dict):
    """CodecParams and run_pipeline's keyword arguments, every value checked."""

    cap = str(values["captioner"]).strip().lower()
    if cap not in CAPTIONERS:
        raise UsageError(f"--captioner must be one of {', '.join(CAPTIONERS)}, got "
                         f"{values['captioner']!r}")
    v = values["workers"]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise UsageError(f"--workers must be a whole number >= 0, got {v!r}")
    pc = values["png_compression"]
    if pc != "small" and (isinstance(pc, bool) or not isinstance(pc, int) or not 0 <= pc <= 9):
        raise UsageError(f"--png-compression must be 0-9 or 'small', got {pc!r}")
    try:
        params = CodecParams(sample_rate=values["sample_rate"], layout=values["layout"],
                             size=values["size"], db_min=values["db_min"], db_max=values["db_max"])
    except (TypeError, ValueError) as exc:
        raise UsageError(f"codec option: {exc}") from None
    inp = resolve(str(values["input"]))
    if not inp.exists():
        raise UsageError(f"--input {str(values['input'])!r} does not exist (looked for {inp})")
    out = _here(values["output"])          # outputs: from the launch folder, never the repository
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {str(values['output'])!r} is a file; give a folder")
    engine, shards, shard_size = _checked_scale(values)
    model = values["model"]
    run = dict(input=inp, output=out, captioner=cap, artist=str(values["artist"] or ""),
               title=str(values["title"] or ""), workers=values["workers"],
               model=str(model) if model else None, device=str(values["device"] or "auto"),
               overwrite=bool(values["overwrite"]), report=bool(values["report"]),
               report_dir=_here(values["report_dir"]) if values["report_dir"] else None,
               png_compression=values["png_compression"], engine=engine,
               ray_address=str(values["ray_address"]) if values["ray_address"] else None,
               caption_actors=values["caption_actors"], shards=shards, shard_size=shard_size,
               log=lambda line: print(line, file=sys.stderr, flush=True))
    return params, run


def _checked_scale(values: dict):
    """``--engine``, ``--ray-address``, ``--caption-actors``, ``--shards`` and ``--shard-size``
    checked (the extras they need included): ``(engine, shards, shard_size)``."""
    import importlib.util

    engine = str(values["engine"] or "local").strip().lower()
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {values['engine']!r}")
    if values["ray_address"] and engine != "ray":
        raise UsageError(f"--ray-address {values['ray_address']} is for --engine ray; add "
                         f"--engine ray")
    if engine == "ray" and importlib.util.find_spec("ray") is None:   # one line, no usage
        raise RayUnavailableError(f"--engine ray needs Ray, which is not installed: {RAY_EXTRA}")
    n = values["caption_actors"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UsageError(f"--caption-actors must be a whole number >= 0, got {n!r}")
    shards = values["shards"]
    if shards in (None, False, "", "false", "no"):
        shards = None
    elif shards is not True:
        shards = _here(shards)
    if shards is not None:
        if importlib.util.find_spec("webdataset") is None:
            raise RayUnavailableError(f"--shards needs webdataset, which is not installed: "
                                      f"{RAY_EXTRA}")     # one line, no usage
        try:
            parse_shard_size(values["shard_size"])
        except ValueError as exc:
            raise UsageError(f"--shard-size: {exc}") from None
    return engine, shards, values["shard_size"]

if __name__ == "__main__":
    sys.exit(main())
