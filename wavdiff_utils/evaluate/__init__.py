"""Evaluating a set of generated music against a reference: distribution metrics (FAD, KAD) on a
music embedding, outliers, text-audio agreement and memorization (``08_evaluate``).
Names load on first use (``lazy_loader``)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "cache": ["EmbeddingCache", "file_key", "audio_key"],
    "cli": ["main", "build_parser"],
    "collect": ["SideEmbeddings", "embed_side", "SILENT_MODES"],
    "demo": ["build_demo", "DEMO_ROOT", "DEMO_PROMPT"],
    "embeddings": ["EMBEDDINGS", "WINDOW_SECONDS", "MIN_CLIP_SECONDS", "ClipEmbedding", "Embedder", "SpectralStatsEmbedder", "MuQEmbedder", "make_embedder", "window_starts"],
    "figures": ["plot_distances", "sample_audio", "sample_pixels", "show_samples", "show_neighbours"],
    "metrics": ["MIN_SAMPLES_INF", "KAD_SCALE", "embedding_stats", "psd_sqrt", "frechet_distance", "FrechetReference", "FadInf", "fad_infinity", "median_bandwidth", "KernelReference", "kernel_audio_distance", "Interval", "normal_interval", "group_counts"],
    "report": ["Evaluation", "JSON_NAME", "FORMAT"],
    "run": ["evaluate_sets", "evaluate_run", "Skipped", "DECODED_DIR", "CACHE_DIR"],
    "scores": ["Scores", "Neighbours", "compute_scores", "OUTLIER_PERCENTILE", "TEXT_REFERENCE_MAX"],
    "sets": ["MIN_SAMPLES", "SILENCE_DBFS", "THUMBNAIL", "Sample", "SampleSet", "scan_set", "check_rates", "iter_audio", "decode_images", "read_decoded", "magnitude_thumbnail", "scratch_folder", "sample_record", "describe_params"],
    "speed": ["SpeedRunError", "SMALL", "RUNS", "MULAN_LARGE", "build_speed_sets", "measure_speed", "time_metrics", "estimate", "speed_lines", "build_random_muq_mulan"],
})
