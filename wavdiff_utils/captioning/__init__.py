"""Captions per tile: the captioner interface, the registry of captioners by name, the shared
batch logic (resume, records, failures), one module per captioner (MuQ-MuLan tags,
Qwen2-Audio prose, file tags and tempo), their labels and their model weights.
Names load on first use (``lazy_loader``)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "batch": ["caption_song", "caption_songs", "recorded_captions"],
    "interface": ["Captioner", "SongTiles", "song_tiles", "caption_path", "write_caption", "tags_from_file", "caption_prefix", "pick_device", "positive_int", "check_tile_length", "title_from_name"],
    "labels": ["CATEGORIES", "PROMPT_TEMPLATES", "Label", "Vocabulary", "load_vocabulary", "TagSettings", "select_tags", "format_caption", "check_templates", "label_prompts"],
    "metadata": ["MetadataCaptioner", "MIN_TEMPO_SECONDS", "metadata_caption"],
    "muq": ["DEFAULT_MODEL", "MODEL_ENV", "NAMINGS", "TAGS_SUFFIX", "SIDECAR_NAME", "ModelWeightsMissing", "MuQMuLanModel", "MuQCaptioner", "resolve_model", "load_muq_mulan", "text_embeddings", "tile_clips"],
    "qwen": ["DEFAULT_MODEL", "MODEL_ENV", "DEFAULT_PROMPT", "NAMINGS", "PROSE_SUFFIX", "MAX_AUDIO_SECONDS", "RECORD_NAME", "QwenWeightsError", "TileTooLongError", "QwenCaptioner", "resolve_model", "load_qwen", "clean_description"],
    "registry": ["CAPTIONERS", "make_captioner", "captioner_or_fallback", "fallback_notice", "CAPTIONER_CLASSES"],
    "results": ["TileCaption", "CaptionResult", "CaptionBatch"],
    "tempo": ["estimate_bpm", "clip_bpm", "bpm_text"],
    "weights": ["model_name", "looks_local", "local_folder", "hub_folder", "hub_reachable", "offline_reason", "weights_missing", "fingerprint"],
})
