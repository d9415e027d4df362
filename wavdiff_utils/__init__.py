"""wavdiff: music to lossless 16-bit PNG spectrogram tiles with synchronized captions, and back.

One subpackage per concern, each importing only from the layers below it (``lint-imports``
checks the contract in ``pyproject.toml``; the README's Architecture section draws it):

- :mod:`~wavdiff_utils.train`, :mod:`~wavdiff_utils.compare`, :mod:`~wavdiff_utils.bench` -
  training (``07_train``), tile-by-tile comparison (``04_compare``), benchmarks; independent
- :mod:`~wavdiff_utils.jobs` - batch encode and decode, the pipeline (``python -m
  wavdiff_utils``), worker processes, the Ray engine, shard writing
- :mod:`~wavdiff_utils.views` - figures, widgets, the batch report, offline HTML reports
- :mod:`~wavdiff_utils.dataset` - export, dataset card, tensors, the 16-bit loaders, shards
- :mod:`~wavdiff_utils.captioning` - the captioner interface, registry and batch logic; MuQ,
  Qwen2-Audio and metadata captioners
- :mod:`~wavdiff_utils.io` - audio, PNG tiles and metadata, manifests, the output lock;
  :mod:`~wavdiff_utils.phase` - phase reconstruction
- :mod:`~wavdiff_utils.codec` - parameters, tiling, STFT <-> pixels, metrics
- :mod:`~wavdiff_utils.results`, :mod:`~wavdiff_utils.paths`, :mod:`~wavdiff_utils.errors` -
  what a batch did, paths and atomic writes, the one error family
"""
from .errors import install_notebook_handler as _install_notebook_handler

__version__ = "0.1.0"

#: The public API, importable from the package's top level (``from wavdiff_utils import
#: encode_song``) whichever module holds it.  Loaded on first use (PEP 562), so importing
#: the package or encoding a song never imports torch, transformers or matplotlib.
_EXPORTS = {
    "paths": ["REPO_ROOT", "SAMPLE_AUDIO", "resolve", "output_dir", "song_id"],
    "codec.params": ["CodecParams", "load_yaml_params"],
    "codec.tiling": ["TileSpan", "tile_spans"],
    "io.audio": ["AudioStream", "load_audio", "write_audio", "find_audio_files"],
    "io.tiles": ["read_tile", "write_tile", "find_tiles", "read_tile_metadata"],
    "codec.transform": ["encode_array", "decode_array", "encode_stream", "decode_stream",
                        "istft_stream", "stft_to_pixels", "pixels_to_stft"],
    "io.manifest": ["read_manifest"],
    "codec.metrics": ["snr_db", "lsd_db", "psnr16"],
    "jobs.encode": ["encode_song", "encode_batch"],
    "results": ["SongResult", "BatchResult"],
    "jobs.decode": ["decode_song", "decode_batch", "plan_decode", "DecodeResult", "DecodeBatch"],
    "phase.reconstruct": ["PhaseSettings", "reconstruct_tiles", "pghi", "spectral_convergence",
                          "signal_sc"],
    "jobs.pipeline": ["run_pipeline"],
    "jobs.settings": ["PipelineSettings"],
    "jobs.ray_engine": ["ray_session", "RayUnavailableError", "RayConnectError"],
    "jobs.shard_writer": ["write_shards"],
    "dataset.shards": ["iter_shard_samples", "read_shard_index"],
    "dataset.loader": ["ShardDataset", "load_tile_dataset"],
    "jobs.pipeline_result": ["PipelineResult"],
    "captioning.interface": ["Captioner"],
    "captioning.registry": ["make_captioner"],
    "captioning.batch": ["caption_songs", "caption_song"],
    "dataset.export": ["export_dataset", "read_metadata"],
    "dataset.tensors": ["write_tensor_tiles", "pixels_to_tensor", "tensor_to_pixels"],
    "io.png16": ["decode_png16"],
    "compare.tiles": ["compare_tiles"],
    "train.loop": ["train"],
    "train.config": ["TrainConfig"],
    "train.scan": ["scan_dataset"],
    "train.sample": ["sample_tiles"],
    "errors": ["WavdiffError", "BadAudioError", "BadTileError", "WeightsMissingError",
               "MissingInputError", "BadParameterError", "OutputConflictError",
               "UnreadableAudioError", "NonFiniteAudioError", "OutputLockedError",
               "UnwritableOutputError", "OutputIsAFileError"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'wavdiff_utils' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value                  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))


def _in_a_kernel():
    import sys

    if "IPython" in sys.modules:                 # only where IPython already runs: costs nothing else
        _install_notebook_handler()


_in_a_kernel()
