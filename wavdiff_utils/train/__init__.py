"""Training a diffusion model on a dataset of tiles (``07_train``): settings, data, the UNet,
the text encoder, the loop, sampling, results and figures.
Names load on first use (``lazy_loader``)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "checkpoints": ["CHECKPOINTS", "CHECKPOINT_MANIFEST", "BadCheckpointError", "checkpoint_folders", "latest_checkpoint", "save_checkpoint", "check_checkpoint", "pick_checkpoint", "named_checkpoint", "load_checkpoint", "remove_leftovers", "remove_checkpoints", "saving", "save_failure"],
    "config": ["TrainConfig", "PLANES", "CONDITIONING", "DEFAULT_TEXT_ENCODER", "TEXT_ENCODER_ENV", "CONFIG_NAME", "DEMO_DATA", "check_resumable", "read_saved_config", "MissingExtraError", "require_training", "EXTRA_KEYS", "RECORDED_KEYS", "check_setting_names", "model_planes"],
    "data": ["tile_to_model", "model_to_tile", "TrainTiles", "EpochSampler", "shard_tiles", "crop_offset", "collate", "DEMO_SPLITS", "build_demo_dataset"],
    "guards": ["check_geometry", "training_bytes", "unet_parameters", "Memory", "device_memory", "check_training", "check_workers", "out_of_memory", "WORKER_BYTES"],
    "loaders": ["make_loader", "probe_batch", "validation_loader", "fixed_loss", "PROBE_TILES", "batches", "data_error"],
    "loop": ["train", "main"],
    "model": ["build_unet", "noise_scheduler", "save_model", "load_model", "TrainedModel", "MODEL_META", "MODEL_FORMAT"],
    "plots": ["plot_losses", "plot_samples"],
    "result": ["TrainState", "TrainResult", "write_losses", "loss_drop", "summary_markdown"],
    "sample": ["SampleResult", "sample_tiles", "pick_device"],
    "scan": ["TrainDataError", "TileSource", "scan_dataset", "CAPTION_LOOK", "MONO_HINT"],
    "text": ["TextEncoder", "text_encoder_folder", "FETCH_COMMAND"],
})
