"""Benchmarks that print figures: codec throughput and memory against the original recipe,
whole commands, phase methods on real music, and the engines' scaling.
Names load on first use (``lazy_loader``)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "command": ["COMMANDS", "run_command", "compare_commands", "command_summary_lines"],
    "measure": ["measure", "timed", "run_in_subprocess", "peak_memory_of_encode", "peak_memory_of_decode", "peak_memory_of_reference_encode"],
    "parquet": ["build_dataset", "parquet_sizes", "read_rates", "main"],
    "phase": ["LEVELS", "VARIANTS", "perturb", "run_phase_benchmark", "phase_summary_lines", "decode_memory", "write_generated_demo"],
    "reference": ["reference_encode", "reference_decode", "REFERENCE_META"],
    "scaling": ["songs_per_minute", "clip_folder", "cut_clips", "engine_scaling", "loader_throughput", "main"],
    "stereo": ["STEREO_TIME_TARGET", "side_range", "side_range_lines", "stereo_cost", "stereo_cost_lines", "run_stereo_benchmark", "default_music", "main"],
    "throughput": ["synth_music", "synth_music_blocks", "write_synth_wav", "run_benchmark", "summary_lines", "MEMORY_BOUND_BYTES", "SNR_TARGET_DB", "SPEEDUP_TARGET"],
})
