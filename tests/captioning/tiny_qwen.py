"""A tiny, randomly initialised Qwen2-Audio, built and saved locally for the tests.

Nothing is downloaded.  The folder written by :func:`build_tiny_qwen2_audio`
has the same layout as a Hugging Face checkpoint of
``Qwen/Qwen2-Audio-7B-Instruct`` (``config.json``, safetensors weights,
``generation_config.json``, tokenizer files with the chat template,
``preprocessor_config.json``), so the captioner loads it through exactly the
code that loads the real model.

Recipe
------
- tokenizer: a word-level vocabulary (:data:`WORDS` plus punctuation and
  digits) made with the ``tokenizers`` library, carrying the ChatML special
  tokens and the three audio tokens (``<|AUDIO|>``, ``<|audio_bos|>``,
  ``<|audio_eos|>``); the chat template is the one the installed
  ``Qwen2AudioProcessor`` documents (rendered "Audio 1: <|audio_bos|>...").
- feature extractor: ``WhisperFeatureExtractor`` with 128 mel bins at 16 kHz
  and 30 s windows, as the real model's.
- model: a 1-layer Whisper-style audio encoder (d_model 32) and a 2-layer
  Qwen2 language model (hidden 64), seeded.  The output rows of the special
  tokens, punctuation and role words are zeroed so greedy decoding writes
  music words, never an instant end-of-turn; weights are drawn wider than the
  usual 0.02 and the audio projector is scaled up, so different clips steer the
  random model to different words.
- generation config: sampling on (``do_sample=True``, temperature 0.7, top-k 20,
  top-p 0.5, repetition penalty 1.1), as chat checkpoints ship it, so the tests
  prove the captioner decodes greedily whatever the checkpoint says.
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["build_tiny_qwen2_audio", "WORDS", "RECIPE_VERSION"]

#: Bump when the recipe changes, so cached folders are rebuilt.
RECIPE_VERSION = 4

#: Words of the tiny vocabulary: what its random descriptions are made of.
WORDS = """
a an the and or with of in on at to from by is are has its this clip song track music
bright dark warm cold soft loud gentle harsh calm tense happy sad dreamy energetic mellow
slow fast steady driving swinging laid-back upbeat moderate tempo groove rhythm beat pulse
piano guitar bass drums synth strings violin cello brass trumpet saxophone flute organ
choir vocals voice pad lead arpeggio chords melody harmony riff loop percussion claps
hi-hat kick snare cymbal bells marimba harp
rock pop jazz blues folk ambient electronic techno house classical orchestral hip-hop
funk soul metal lo-fi cinematic
intro verse chorus bridge outro build drop break fade starts ends rises falls repeats
reverb echo delay distortion compression wide narrow dry wet clean lush sparse dense
mix production stereo mono recording studio live crisp muddy polished raw
""".split()

_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>",
             "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
_UNK = "<unk>"


def _vocabulary() -> list[str]:
    punct = list(".,;:!?'\"()-/")
    digits = [str(d) for d in range(10)]
    roles = ["system", "user", "assistant", "You", "helpful", "Audio"]
    seen, vocab = set(), []
    for tok in [_UNK, *_SPECIALS, *punct, *digits, *roles, *WORDS]:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)
    return vocab


def _build_tokenizer(chat_template: str):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(_vocabulary())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=_UNK))
    # words (with inner hyphens) or single punctuation marks; whitespace is dropped
    core.pre_tokenizer = pre_tokenizers.Split(r"[\w]+(?:-[\w]+)*|[^\w\s]", behavior="isolated")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token=_UNK, pad_token="<|endoftext|>",
        eos_token="<|im_end|>", additional_special_tokens=_SPECIALS[1:],
        clean_up_tokenization_spaces=True, model_max_length=32768, padding_side="left",
        model_input_names=["input_ids", "attention_mask"])
    tok.chat_template = chat_template
    return tok


def _write_marker(folder: Path, seed: int) -> None:
    (folder / "wavdiff_tiny.json").write_text(
        json.dumps({"recipe": RECIPE_VERSION, "seed": seed, "kind": "tiny-qwen2-audio"}),
        encoding="utf-8")


def _is_current(folder: Path, seed: int) -> bool:
    marker = folder / "wavdiff_tiny.json"
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (data.get("recipe") == RECIPE_VERSION and data.get("seed") == seed
            and any(folder.glob("*.safetensors")) and (folder / "preprocessor_config.json").is_file())


def build_tiny_qwen2_audio(folder, *, seed: int = 0, force: bool = False) -> Path:
    """Build a tiny random Qwen2-Audio checkpoint (model, tokenizer, processor) in ``folder``.

    Parameters
    ----------
    folder : path-like
        Where to save it; created if needed.  A folder already holding a
        build of the same recipe and seed is reused as it is.
    seed : int
        Seed of the random weights (the same seed gives the same weights).
    force : bool
        Rebuild even when a current build is there.

    Returns
    -------
    pathlib.Path
        ``folder``, loadable with ``AutoProcessor.from_pretrained`` and
        ``Qwen2AudioForConditionalGeneration.from_pretrained``.
    """
    import torch
    from transformers import (Qwen2AudioConfig, Qwen2AudioForConditionalGeneration,
                              Qwen2AudioProcessor, WhisperFeatureExtractor)

    folder = Path(folder)
    if not force and _is_current(folder, seed):
        return folder
    folder.mkdir(parents=True, exist_ok=True)

    # the processor class documents the Qwen2-Audio chat format; reuse it rather than retyping it
    template = Qwen2AudioProcessor.default_chat_template.fget(None)
    tokenizer = _build_tokenizer(template)
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160,
                                       chunk_length=30, n_fft=400, padding_value=0.0,
                                       return_attention_mask=True)
    processor = Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer,
                                    chat_template=template)

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIALS}
    config = Qwen2AudioConfig(
        audio_config={"d_model": 32, "encoder_layers": 1, "encoder_attention_heads": 2,
                      "encoder_ffn_dim": 64, "num_mel_bins": 128, "max_source_positions": 1500},
        text_config={"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 4096, "tie_word_embeddings": False,
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        audio_token_index=ids["<|AUDIO|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config).eval()
    with torch.no_grad():
        # weights at the usual 0.02 std barely notice their input: draw them wider
        draw = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.5, generator=draw)
        model.multi_modal_projector.linear.weight.mul_(5.0)
        # only the music words can win greedy decoding: no instant end-of-turn, readable text
        lm_head = model.get_output_embeddings().weight
        keep = torch.zeros(lm_head.shape[0], dtype=torch.bool)
        keep[tokenizer.convert_tokens_to_ids(WORDS)] = True
        lm_head[~keep] = 0.0
    gen = model.generation_config
    gen.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    gen.pad_token_id = ids["<|endoftext|>"]
    gen.bos_token_id = ids["<|endoftext|>"]
    # sampling defaults, as chat models ship them: the captioner must still decode greedily
    gen.do_sample, gen.temperature, gen.top_k, gen.top_p = True, 0.7, 20, 0.5
    gen.repetition_penalty = 1.1

    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    _write_marker(folder, seed)
    return folder
