"""Jobs over many songs: batch encode and decode with resume, the one-step pipeline and its
record, worker processes, the Ray engine, shard writing, and the command line.
Names load on first use (``lazy_loader``)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "decode": ["DecodeResult", "DecodeBatch", "DecodeJob", "plan_decode", "decode_song", "decode_batch", "summary_markdown", "IMAGE_EXTENSIONS", "JOIN_MODES", "PEAK_MODES", "MISSING_MODES", "find_images", "DecodeOptions", "BAD_METADATA_MODES"],
    "decode_audio": ["NORMALIZED_PEAK", "write_decoded_audio", "level_warnings"],
    "decode_images": ["RESIZE_MODES", "EIGHT_BIT_CAP_DB", "ResizeReadingError", "check_resize", "fit_to_codec", "image_notes", "own_size_params", "codec_for", "sequence_warnings", "set_aside_metadata", "wavdiff_metadata"],
    "decode_stereo": ["UnpairedSideError", "StereoFigures", "WidthMeter", "SideChannel", "find_side_tiles", "pair_sides", "refuse_stray", "side_channel", "channel_audio", "write_stereo", "tile_rows", "SPAN_FIELDS", "SIDE_OWN_FIELDS"],
    "encode": ["encode_song", "encode_one", "encode_batch", "OutputExistsError", "capped_workers", "check_complete", "source_state", "verify"],
    "levels": ["Levels", "check_levels"],
    "pipeline": ["REPORT_NOTEBOOK", "run_pipeline", "encode_songs", "default_workers", "check_workers", "ensure_dataset"],
    "pipeline_result": ["PipelineResult", "write_summary", "side_tile_count"],
    "ray_captions": ["caption_actor_count", "run_captions", "caption_on_ray"],
    "ray_engine": ["ENGINES", "TASK_RETRIES", "OBJECT_STORE_BYTES", "RayUnavailableError", "RayConnectError", "RaySession", "ray_session", "run_encode", "run_shard_tasks", "check_engine"],
    "settings": ["PipelineSettings", "CAPTIONERS", "CODEC_OPTIONS", "WORKER_BYTES", "song_memory", "check_workers_memory", "FORMATS"],
    "shard_writer": ["ShardIndex", "ShardWriteError", "UnwritableShardError", "write_shards", "write_shard"],
    "workers": ["init_worker", "make_pool", "stop_pool", "silence_library_warnings", "die_with_parent", "forks_of", "native_stderr_silenced", "die_with_this_process", "RUN_MARK"],
})
