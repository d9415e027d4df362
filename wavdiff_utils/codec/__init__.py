"""The codec: codec parameters, tile spans, STFT <-> 16-bit pixels, streaming encode and decode,
threads inside one song, and the fidelity metrics.  Arrays in, arrays out: no files.
Names load on first use (``lazy_loader``)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "metrics": ["psnr16", "snr_db", "lsd_db", "align", "stereo_width"],
    "params": ["CodecParams", "LAYOUTS", "CHANNELS", "SIDE_FLOOR_DROP_DB", "load_yaml_params", "tile_memory", "MAX_SIZE", "MAX_N_FFT"],
    "resources": ["available_memory", "check_memory", "check_at_most", "gb"],
    "threads": ["split_pairs", "prefetched", "ordered_map", "tile_threads", "usable_cores", "mark_in_pool", "MAX_TILE_THREADS"],
    "tiling": ["TileSpan", "tile_spans", "n_tiles_for"],
    "transform": ["stft", "stft_to_pixels", "pixels_to_stft", "magnitude_to_pixels", "encode_stream", "decode_stream", "istft_stream", "EncodedTile", "TileStats", "encode_array", "decode_array", "tile_magnitude_db"],
})
