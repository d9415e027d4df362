"""Comparing two sets of tiles (or audio) tile by tile: scores, previews and what
``04_compare`` shows.
Names load on first use (``lazy_loader``)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "notebook": ["CompareInputs", "compare_inputs", "headline_markdown", "show_previews", "show_audio", "round_trip_tiles", "tiles_codec"],
    "preview": ["render_preview", "DIFF_MODES", "DIFF_GAIN", "SEPARATOR_PX", "HEADER_PX"],
    "scores": ["TileScore", "AudioScore", "ChannelScores", "WIDTH_FIGURES"],
    "stereo": ["TILE_CHANNELS", "channel_figures", "width_table"],
    "tiles": ["compare_tiles", "ComparisonResult", "MATCH_MODES", "SCORES_CSV", "AUDIO_CSV", "SUMMARY_TXT", "PREVIEW_DIR", "AVERAGE_KEY", "UNPAIRED_HINT"],
})
