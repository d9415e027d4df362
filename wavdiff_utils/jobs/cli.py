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
import dataclasses
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path

from ..codec.params import load_yaml_params
from ..errors import BadParameterError, WavdiffError, one_line
from ..paths import resolve
from .pipeline import run_pipeline
from .settings import CODEC_OPTIONS, PipelineSettings
from .ray_engine import RAY_EXTRA, RayUnavailableError
from .workers import native_stderr_silenced, silence_library_warnings

#: Options a ``-f`` YAML file may set (the same names as the long options, with underscores).
OPTIONS = ("input", "output") + PipelineSettings.names()
DEFAULT_OUTPUT = "outputs/dataset"
EXAMPLE = "python -m wavdiff_utils --input song.mp3 --output outputs/dataset"
_CODEC_TYPES = {"size": int, "sample_rate": int, "db_min": float, "db_max": float}


class UsageError(BadParameterError):
    """A bad or missing option; the message says which and what to do."""


def _png_level(text: str):
    """``--png-compression`` value: a zlib level, or "small"."""
    text = str(text).strip().lower()
    return "small" if text == "small" else int(text) if text.isdigit() else text


def _parser() -> argparse.ArgumentParser:
    """The options: input and output, then every :class:`PipelineSettings` field (its help text
    and how the command line spells it come from the field)."""
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
    for f in dataclasses.fields(PipelineSettings):
        if f.name == "params":
            for name, text in CODEC_OPTIONS.items():
                ap.add_argument(_flag(name), dest=name, type=_CODEC_TYPES.get(name), help=text)
            continue
        cli = dict(f.metadata["cli"])
        flags = [cli.pop("flag", _flag(f.name))] + ([cli.pop("long")] if "long" in cli else [])
        if cli.get("type") == "png_level":
            cli["type"] = _png_level
        if cli.get("action") in ("store_true", "store_false"):
            cli["default"] = None
        ap.add_argument(*flags, dest=f.name, help=f.metadata["help"], **cli)
    ap.add_argument("--interactive", action="store_true",
                    help="ask for input, output, artist and title (not given as options) even "
                         "when stdin is not a terminal")
    return ap


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _settings(args) -> dict:
    """Option values given: YAML files (in order) < command line; the rest are the defaults."""
    values: dict = {}
    for f in args.file:
        try:
            data = load_yaml_params(f)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        try:
            PipelineSettings.check_names(data, source=str(f), allowed=("input", "output"))
        except BadParameterError as exc:
            raise UsageError(str(exc)) from None
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
    line, no traceback), or an output asked for (the dataset, ``--shards``, the report) was not
    written (the summary says why); 130: interrupted (run the same command again to resume).
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
        inp, out, settings = _checked(values)
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
            result = run_pipeline(inp, out, settings,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
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
    return result.exit_status


def _terminate(signum, frame):
    """SIGTERM handler: raise ``KeyboardInterrupt``, so finished work is kept and a resume line printed."""
    raise KeyboardInterrupt


def _here(path) -> Path:
    """A user-given output path, relative to the launch folder."""
    return Path(os.path.expanduser(str(path))).absolute()


def _checked(values: dict):
    """The input, the output and the :class:`PipelineSettings`, every value checked; a bad one
    is a :class:`UsageError` naming its option as the command line spells it."""
    inp = resolve(str(values["input"]))
    if not inp.exists():
        raise UsageError(f"--input {str(values['input'])!r} does not exist (looked for {inp})")
    out = _here(values["output"])          # outputs: from the launch folder, never the repository
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {str(values['output'])!r} is a file; give a folder")
    given = {k: v for k, v in values.items() if k not in ("input", "output")}
    for key in ("report_dir", "shards"):
        if given.get(key) not in (None, "", True, False):
            given[key] = _here(given[key])
    try:
        settings = PipelineSettings.from_mapping(given)
    except BadParameterError as exc:
        raise UsageError(_as_option(str(exc))) from None
    _check_extras(settings)
    return inp, out, settings


def _as_option(message: str) -> str:
    """A settings message with its leading field name spelt as the command-line option."""
    name = message.split(" ", 1)[0].rstrip(":")
    if name in PipelineSettings.names():
        return _flag(name) + message[len(name):]
    return f"codec option: {message}" if message.split(" ", 1)[0] in CODEC_OPTIONS else message


def _check_extras(settings: PipelineSettings) -> None:
    """The packages ``--engine ray`` and ``--shards`` need are installed (one line if not)."""
    import importlib.util

    if settings.engine == "ray" and importlib.util.find_spec("ray") is None:
        raise RayUnavailableError(f"--engine ray needs Ray, which is not installed: {RAY_EXTRA}")
    if settings.shards is not None and importlib.util.find_spec("webdataset") is None:
        raise RayUnavailableError(f"--shards needs webdataset, which is not installed: "
                                  f"{RAY_EXTRA}")
