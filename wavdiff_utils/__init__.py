"""wavdiff: music to lossless 16-bit PNG spectrogram tiles with synchronized captions, and back.

One module per concern:

- :mod:`wavdiff_utils.paths` - path resolution independent of the working folder
- :mod:`wavdiff_utils.errors` - one error hierarchy, each error a one-line message
- :mod:`wavdiff_utils.params` - :class:`CodecParams`, YAML parameter files
- :mod:`wavdiff_utils.tiling` - tile sample spans (shared by encoder and captioners)
- :mod:`wavdiff_utils.audio_io` - reading (streamed), resampling, writing audio
- :mod:`wavdiff_utils.tile_io` - 16-bit PNG tiles with embedded metadata
- :mod:`wavdiff_utils.codec` - STFT <-> tile pixels, streaming encode and decode
- :mod:`wavdiff_utils.manifest` - per-song manifest (or one rebuilt from the tiles' metadata)
- :mod:`wavdiff_utils.metrics` - SNR, LSD, 16-bit PSNR
- :mod:`wavdiff_utils.compare` - tile-by-tile comparison reports; the scores of a pair in
  :mod:`~wavdiff_utils.compare_scores`, the side-by-side previews in
  :mod:`~wavdiff_utils.compare_preview`
- :mod:`wavdiff_utils.encoding` - batch encode with resume and failure reports
- :mod:`wavdiff_utils.results` - what a batch did (songs, failures, warnings), shared by every batch
- :mod:`wavdiff_utils.decoding` - any folder of images back to audio, with a per-tile report
- :mod:`wavdiff_utils.phase` - phase reconstruction: exact, fast Griffin-Lim, PGHI, automatic
- :mod:`wavdiff_utils.locking` - one run per output folder (a lock with a heartbeat)
- :mod:`wavdiff_utils.workers` - encode worker processes that end with their parent
- :mod:`wavdiff_utils.benchmark_command` - whole commands timed A/B against the original recipe
- :mod:`wavdiff_utils.pipeline_result` - what a pipeline run did, its summary and ``wavdiff_batch.json``
- :mod:`wavdiff_utils.compare_notebook` - what ``04_compare`` shows (inputs, headline, previews, players)
- :mod:`wavdiff_utils.eight_bit` - what reading a tile the 8-bit (Pillow) way costs
- :mod:`wavdiff_utils.stft_engine` - block STFT / inverse STFT in numpy or torch, for the phase iterations
- :mod:`wavdiff_utils.captioning` - the captioner interface and what every captioner shares
- :mod:`wavdiff_utils.caption_results`, :mod:`~wavdiff_utils.caption_weights`,
  :mod:`~wavdiff_utils.caption_tags` - caption results, model weights, MuQ's labels and tag text
- :mod:`wavdiff_utils.muq_captioner`, :mod:`~wavdiff_utils.qwen_captioner`,
  :mod:`~wavdiff_utils.metadata_captioner` - MuQ-MuLan tags, Qwen2-Audio prose, file tags and tempo
- :mod:`wavdiff_utils.tempo` - tempo of a song, of each tile, of one clip
- :mod:`wavdiff_utils.pipeline` - the one-step pipeline (``python -m wavdiff_utils``)
- :mod:`wavdiff_utils.ray_engine` - the pipeline on Ray: a task per song, captioner actors
- :mod:`wavdiff_utils.shards` - WebDataset shards of 16-bit tiles, and their 16-bit loader
- :mod:`wavdiff_utils.scaling_benchmark` - local vs Ray engine, PNG folder vs shards
- :mod:`wavdiff_utils.dataset` - training-ready export and the 16-bit loader; its card in
  :mod:`~wavdiff_utils.dataset_card`
- :mod:`wavdiff_utils.plots` - figures and widgets for the notebooks, captions beside their tiles
- :mod:`wavdiff_utils.report` - executed notebooks and single-file HTML reports
- :mod:`wavdiff_utils.batch_report` - the per-batch report (``06_batch_report``)
- :mod:`wavdiff_utils.benchmark` - throughput, fidelity and memory figures; the original recipe
  as a reference in :mod:`~wavdiff_utils.benchmark_reference`, timing and subprocess peak memory
  in :mod:`~wavdiff_utils.benchmark_measure`
- :mod:`wavdiff_utils.phase_benchmark` - phase methods on generated-looking tiles of real music
- :mod:`wavdiff_utils.train` - train a diffusion model on a dataset of tiles (``07_train``); its
  settings in :mod:`~wavdiff_utils.train_config`, data in :mod:`~wavdiff_utils.train_data` and
  :mod:`~wavdiff_utils.train_loaders`, the UNet in :mod:`~wavdiff_utils.train_model`, the text
  encoder in :mod:`~wavdiff_utils.train_text`, sampling in :mod:`~wavdiff_utils.train_sample`,
  results and figures in :mod:`~wavdiff_utils.train_result` and :mod:`~wavdiff_utils.train_plots`
"""
__version__ = "0.1.0"

#: The public API, importable from the package's top level (``from wavdiff_utils import
#: encode_song``) whichever module holds it.  Loaded on first use (PEP 562), so importing
#: the package or encoding a song never imports torch, transformers or matplotlib.
_EXPORTS = {
    "paths": ["REPO_ROOT", "SAMPLE_AUDIO", "resolve", "output_dir", "song_id"],
    "params": ["CodecParams", "load_yaml_params"],
    "tiling": ["TileSpan", "tile_spans"],
    "audio_io": ["AudioStream", "load_audio", "write_audio", "find_audio_files"],
    "tile_io": ["read_tile", "write_tile", "find_tiles", "read_tile_metadata"],
    "codec": ["encode_array", "decode_array", "encode_stream", "decode_stream", "istft_stream",
              "stft_to_pixels", "pixels_to_stft"],
    "manifest": ["read_manifest"],
    "metrics": ["snr_db", "lsd_db", "psnr16"],
    "encoding": ["encode_song", "encode_batch"],
    "results": ["SongResult", "BatchResult"],
    "decoding": ["decode_song", "decode_batch", "plan_decode", "DecodeResult", "DecodeBatch"],
    "phase": ["PhaseSettings", "reconstruct_tiles", "pghi", "spectral_convergence", "signal_sc"],
    "pipeline": ["run_pipeline"],
    "ray_engine": ["ray_session", "RayUnavailableError", "RayConnectError"],
    "shards": ["write_shards", "iter_shard_samples", "ShardDataset", "read_shard_index"],
    "pipeline_result": ["PipelineResult"],
    "captioning": ["Captioner", "make_captioner", "caption_songs", "caption_song"],
    "dataset": ["export_dataset", "load_tile_dataset", "read_metadata", "write_tensor_tiles",
                "decode_png16", "pixels_to_tensor", "tensor_to_pixels"],
    "compare": ["compare_tiles"],
    "train": ["train"],
    "train_config": ["TrainConfig"],
    "train_data": ["scan_dataset"],
    "train_sample": ["sample_tiles"],
    "errors": ["WavdiffError", "BadAudioError", "BadTileError", "WeightsMissingError",
               "MissingInputError", "BadParameterError", "OutputConflictError",
               "UnreadableAudioError", "NonFiniteAudioError", "OutputLockedError",
               "UnwritableOutputError"],
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
        from .errors import install_notebook_handler

        install_notebook_handler()


_in_a_kernel()
