"""Files: audio reading (streamed) and writing, 16-bit PNG tiles with their metadata, the
per-song manifest, the 16-bit PNG decoder, and the lock that keeps one run per output folder.
Names load on first use (``lazy_loader``)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "audio": ["AudioError", "AudioUnreadableError", "AudioNotFiniteError", "AudioStream", "load_audio", "write_audio", "find_audio_files", "audio_info"],
    "locking": ["LOCK_NAME", "output_lock", "read_lock"],
    "manifest": ["MANIFEST_NAME", "write_manifest", "read_manifest", "require_manifest", "manifest_spans", "manifest_params", "manifest_from_tiles", "same_codec"],
    "png16": ["decode_png16"],
    "tiles": ["TILE_FORMAT", "tile_metadata", "TileImageError", "CorruptMetadataError", "write_tile", "read_tile", "read_tile_metadata", "TILE_NAME", "tile_name", "parse_tile_name", "find_tiles", "LoadedTile", "png_header", "decode_image", "check_tile_metadata", "natural_key", "BAD_METADATA_MODES", "SIDE_SUFFIX", "side_tile_name", "side_tile_of", "SIDE_TILE_NAME", "parse_side_tile_name", "is_side_tile"],
})
