"""Views and reports: figures and widgets for the notebooks, the per-batch report, and the
renderer of executed notebooks to single-file offline HTML.
Names load on first use (``lazy_loader``)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "batch_report": ["show_batch_report", "batch_overview", "song_strip", "tile_round_trip"],
    "encoded": ["tile_audio", "tile_players", "show_encoded", "plot_mid_side"],
    "plots": ["plot_waveform", "plot_tile_grid", "plot_tile", "tile_explorer", "plot_spectrogram_pair", "audio_player", "plot_decode_report", "show_decoded", "show_captions", "plot_captions", "plot_scores", "score_table", "plot_compare_scores", "plot_benchmark", "plot_memory", "source_scores"],
    "report": ["run_notebook", "render_html", "external_urls", "failure_line", "main"],
})
