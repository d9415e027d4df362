"""Datasets: the training-ready export and its card, tiles as tensors, the 16-bit loaders
(a tile folder, WebDataset shards, ``datasets``), and what reading a tile the 8-bit way costs.
Names load on first use (``lazy_loader``)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "card": ["write_card", "hms", "PARQUET_COLUMNS", "SIDE_COLUMN", "parquet_features", "dataset_name", "write_parquet_card"],
    "eight_bit": ["read_png_like_pillow", "eight_bit_cost"],
    "export": ["METADATA_NAME", "CARD_NAME", "CHANNELS", "DatasetExport", "export_dataset", "holdout_splits", "rows_without_side", "song_split", "read_metadata"],
    "loader": ["TileDataset", "ShardDataset", "TileTransform", "load_tile_dataset", "LOADER_CHANNELS"],
    "parquet": ["DEFAULT_PARQUET_SHARD_SIZE", "COMPRESSIONS", "ROW_GROUP_BYTES", "ParquetExport", "write_parquet"],
    "parquet_read": ["PARQUET_DIR", "PARQUET_INDEX", "DATA_DIR", "FORMAT", "parquet_folder", "read_parquet_index", "parquet_paths", "open_shard", "read_checked", "checked_shard", "column_tiles", "iter_parquet_rows", "row_pixels", "row_audio", "ParquetTiles"],
    "shards": ["SHARD_INDEX", "DEFAULT_SHARD_SIZE", "parse_shard_size", "read_shard_index", "shard_paths", "iter_shard_raw", "decode_sample", "iter_shard_samples", "sample_key", "sample_checksum", "verify_shard", "SIDE_EXT"],
    "tensors": ["pixels_to_tensor", "tensor_to_pixels", "magnitude_db", "write_tensor_tiles", "PLANES"],
})
