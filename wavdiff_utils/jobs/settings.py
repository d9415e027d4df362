"""The pipeline's options in one place: :class:`PipelineSettings`.

``run_pipeline``, ``python -m wavdiff_utils`` and ``params/pipeline.yaml`` all read their
options from here: each field names an option, its default and its help text (the command
line's ``--help`` is built from them), and the checks run once, when the settings are made.
A new option is one field here (and its use in :mod:`~wavdiff_utils.jobs.pipeline`).
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

from ..codec.params import CHANNELS, CodecParams, load_yaml_params
from ..codec.resources import check_memory
from ..codec.threads import usable_cores
from ..dataset.shards import parse_shard_size
from ..errors import BadParameterError
from ..dataset.export import holdout_splits
from ..dataset.parquet import COMPRESSIONS
from .ray_engine import ENGINES

__all__ = ["PipelineSettings", "CAPTIONERS", "CODEC_OPTIONS", "WORKER_BYTES", "song_memory",
           "check_workers_memory", "FORMATS"]

#: Captioner choices: MuQ-MuLan tags, Qwen2-Audio prose, file tags and tempo, or no captions.
CAPTIONERS = ("muq", "qwen", "metadata", "none")
#: Dataset formats: the tile folder always, and a Parquet export too with "parquet".
FORMATS = ("png", "parquet")
#: Codec options a settings file or the command line may give, as :class:`CodecParams` fields.
CODEC_OPTIONS = {"layout": "tile layout: exact (default, lossless) or seed",
                 "size": "tile edge in pixels (default 1024)",
                 "sample_rate": "codec sample rate in Hz (default 44100)",
                 "db_min": "dB stored as pixel 0 (default -110)",
                 "db_max": "dB stored as pixel 65535 (default 10)",
                 "channels": "mono (default: one tile per span, the channels' mean) or stereo "
                             "(also a side tile (L-R)/2 per span, <song>_<index:04d>.side.png; "
                             "the mono tile is the mid, unchanged)"}


#: Bytes of one encode worker process besides its tile: about 75 MB resident after its imports
#: (measured), plus the audio read ahead and the PNG being written.
WORKER_BYTES = 150_000_000


def song_memory(params: CodecParams) -> int:
    """Estimated peak bytes of one song being encoded in a worker process (one tile at a time;
    stereo: a mid and a side tile at a time, so two tiles)."""
    return WORKER_BYTES + params.tile_memory * (2 if params.stereo else 1)


def check_workers_memory(workers: int, params: CodecParams) -> None:
    """Refuse ``workers`` (2 or more) songs encoded at once when they do not fit the memory
    available (:func:`~wavdiff_utils.codec.resources.check_memory`: one line with the estimate
    and the most that fit); workers beyond the usable cores are capped, so they count as the
    cores."""
    if workers < 2:
        return
    per_song = song_memory(params)
    check_memory("workers", workers, lambda w: min(w, usable_cores()) * per_song)


def _opt(default, text: str, **cli):
    """A field with its help text and, in ``cli``, how the command line spells it."""
    return field(default=default, metadata={"help": text, "cli": cli})


@dataclass(frozen=True)
class PipelineSettings:
    """Every option of :func:`~wavdiff_utils.jobs.run_pipeline` but the input and output folders.

    Made from keywords, a mapping (:meth:`from_mapping`) or a YAML file (:meth:`from_yaml`);
    every value is checked here and a bad one raises :class:`BadParameterError` naming the field.
    The fields' help texts are the command line's.
    """

    params: CodecParams = field(default_factory=CodecParams, metadata={"help": "the codec"})
    captioner: str = _opt("muq", "muq (tags, default), qwen (prose), metadata (file tags and "
                          "tempo, no weights; also what stands in when the model weights are "
                          "missing) or none")
    artist: str = _opt("", "caption prefix for every song; empty means from the file tags")
    title: str = _opt("", "caption prefix for every song; empty means from the file tags")
    model: str | None = _opt(None, "captioning model: local folder or hub id (default: the "
                             "captioner's own; $WAVDIFF_MUQ_MODEL / $WAVDIFF_QWEN_MODEL replace it)")
    device: str = _opt("auto", "captioner device: auto (default), cpu, cuda[:N], mps")
    workers: int = _opt(0, "encode worker processes (0 means one per CPU, at most 8); more than "
                        "the CPU cores is capped, with a note. With --engine ray and no "
                        "--ray-address: the CPUs of the embedded Ray (same rule), which gets twice "
                        "that many songs in flight. With --ray-address: the songs in flight on "
                        "the cluster (0 means twice the cluster's CPUs)", type=int)
    png_compression: int | str = _opt(0, "zlib level 0-9 of the tiles (default 0, fastest), or "
                                      "'small' (21%% smaller files, about 4x the PNG time)",
                                      type="png_level")
    overwrite: bool = _opt(False, "re-encode songs finished with other codec parameters",
                           action="store_true")
    report: bool = _opt(True, "skip the HTML report", flag="--no-report", action="store_false")
    report_dir: str | None = _opt(None, "report folder (default <output>/report)")
    progress: bool = _opt(True, "no progress bar", flag="-q", long="--quiet",
                          action="store_false")
    engine: str = _opt("local", "local (default: worker processes here) or ray (one Ray task "
                       "per song, captioner actors; pip install -e '.[ray]')")
    ray_address: str | None = _opt(None, "with --engine ray: 'auto' or host:port or "
                                   "ray://host:10001 joins that cluster (every node must see "
                                   "--input and --output at the same paths); default: an "
                                   "embedded Ray started here and shut down at the end")
    caption_actors: int = _opt(0, "with --engine ray: captioner actors (0 means one per GPU if "
                               "the cluster has GPUs, else one per CPU for metadata and one for "
                               "a model)", type=int)
    shards: bool | str | None = _opt(None, "also write WebDataset tar shards (16-bit PNG bytes, "
                                     "metadata JSON, captions) and shards.json into DIR "
                                     "(default <output>/shards)", nargs="?", const=True,
                                     metavar="DIR")
    format: str = _opt("png", "dataset format: png (the tile folder, always written) or parquet "
                       "(also a Parquet export in <output>/parquet that the Hugging Face Hub and "
                       "datasets read with all 16 bits)")
    parquet_shard_size: str | int = _opt("500MB", "Parquet shard limit: pixels before "
                                         "compression (500MB) or a number of rows")
    parquet_compression: str = _opt("zstd", "Parquet compression: zstd or none")
    shard_size: str | int = _opt("1GB", "shard limit: a size with a unit (default 1GB; 500MB) "
                                 "or a number of samples (2000)")
    holdout: float = _opt(0.05, "share of the songs in the validation split, and as many in "
                          "test (whole songs, by a hash of the name; default 0.05). A small "
                          "library may get none: with 0.2 about one song in five goes to each",
                          type=float)

    def __post_init__(self):
        if not isinstance(self.params, CodecParams):
            raise BadParameterError(f"params must be a CodecParams, got {self.params!r}")
        self._check_choices()
        self._check_counts()
        self._check_text()
        self._check_memory()
        if self.shards is not None and self.shards is not False:
            parse_shard_size(self.shard_size)
        if self.format == "parquet":
            parse_shard_size(self.parquet_shard_size)
        if isinstance(self.holdout, bool) or not isinstance(self.holdout, (int, float)):
            raise BadParameterError(f"holdout must be a number from 0 to under 0.5, got "
                                    f"{self.holdout!r}")
        holdout_splits(self.holdout)

    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)

    def _check_choices(self) -> None:
        """captioner, engine and ray_address: known values, normalised."""
        for name, allowed in (("captioner", CAPTIONERS), ("engine", ENGINES),
                              ("format", FORMATS), ("parquet_compression", COMPRESSIONS)):
            value = str(getattr(self, name) or "").strip().lower()
            if value not in allowed:
                raise BadParameterError(f"{name} must be one of {', '.join(allowed)}, got "
                                        f"{getattr(self, name)!r}")
            self._set(name, value)
        if self.ray_address and self.engine != "ray":
            raise BadParameterError(f"ray_address {self.ray_address} is for the ray engine; "
                                    f"set engine to ray (--engine ray)")

    def _check_counts(self) -> None:
        """workers, caption_actors and png_compression: whole numbers in range."""
        for name in ("workers", "caption_actors"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise BadParameterError(f"{name} must be a whole number >= 0, got {v!r}")
        pc = self.png_compression
        if pc != "small" and (isinstance(pc, bool) or not isinstance(pc, int) or not 0 <= pc <= 9):
            raise BadParameterError(f"png_compression must be 0-9 or 'small', got {pc!r}")

    def _check_memory(self) -> None:
        """``workers`` songs at once fit the memory here (workers beyond the cores are capped, so
        they count as the cores); 0 picks a count that fits, and a cluster's is its own."""
        if not self.ray_address:
            check_workers_memory(self.workers, self.params)

    def _check_text(self) -> None:
        """Text options as strings (None where "not given" means the default)."""
        for name in ("artist", "title"):
            self._set(name, str(getattr(self, name) or ""))
        self._set("device", str(self.device or "auto"))
        for name in ("model", "ray_address", "report_dir"):
            v = getattr(self, name)
            self._set(name, str(v) if v not in (None, "") else None)
        for name in ("overwrite", "report", "progress"):
            self._set(name, bool(getattr(self, name)))
        if self.shards in (False, "", "false", "no"):
            self._set("shards", None)
        elif self.shards is not None and self.shards is not True:
            self._set("shards", str(self.shards))

    # ------------------------------------------------------------------ building
    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every option a mapping or a YAML file may give (codec options included)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "params") \
            + tuple(CODEC_OPTIONS)

    @classmethod
    def from_mapping(cls, values, *, source: str = "settings") -> "PipelineSettings":
        """Settings from a mapping of option names (codec options flat, as in
        ``params/pipeline.yaml``); an unknown name is refused with the closest known ones."""
        values = dict(values)
        cls.check_names(values, source=source, allowed=("params",))
        codec = {k: values.pop(k) for k in CODEC_OPTIONS if k in values}
        if codec:
            values["params"] = _with_codec(values.get("params") or CodecParams(), codec)
        return cls(**values)

    @classmethod
    def check_names(cls, names, *, source: str = "settings", allowed=()) -> None:
        """Refuse option names that are not fields (nor ``allowed``), naming the closest ones."""
        known = cls.names() + tuple(allowed)
        unknown = sorted(set(names) - set(known))
        if unknown:
            near = difflib.get_close_matches(unknown[0], known, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise BadParameterError(f"{source}: unknown option(s) "
                                    f"{', '.join(map(repr, unknown))}{hint}; known: "
                                    f"{', '.join(known)}")

    @classmethod
    def from_yaml(cls, path, **overrides) -> "PipelineSettings":
        """Settings from a YAML file such as ``params/pipeline.yaml`` (its ``input`` and
        ``output`` are left out: they are the run's); ``overrides`` win."""
        data = {k: v for k, v in load_yaml_params(path).items() if k not in ("input", "output")}
        data.update(overrides)
        return cls.from_mapping(data, source=str(path))

    def replace(self, **changes) -> "PipelineSettings":
        """A copy with ``changes`` (option names, codec options flat or ``params``)."""
        if not changes:
            return self
        mapping = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        mapping.update(changes)
        return type(self).from_mapping(mapping)

    def shards_folder(self, output: Path) -> Path | None:
        """Where the shards go for ``output``, or None when none are asked for."""
        if self.shards is None:
            return None
        return output / "shards" if self.shards is True else Path(self.shards)


def _check_channels(value) -> None:
    """``channels`` is mono or stereo, spelt exactly as a settings file or the codec takes it (a
    near miss such as ``Stereo`` is refused with the right spelling)."""
    if isinstance(value, str) and value in CHANNELS:
        return
    near = difflib.get_close_matches(str(value).strip().lower(), CHANNELS, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    raise BadParameterError(f"channels must be {' or '.join(CHANNELS)}, got {value!r}{hint}")


def _with_codec(base: CodecParams, changes: dict) -> CodecParams:
    """``base`` with the flat codec options ``changes``; FFT size and hop are derived again
    unless ``base`` set its own."""
    if "channels" in changes:
        _check_channels(changes["channels"])
    given = {k: getattr(base, k) for k in CODEC_OPTIONS}
    if CodecParams(**given) == base:              # n_fft, hop derived: derive them again
        return CodecParams(**{**given, **changes})
    return dataclasses.replace(base, **changes)
