"""A tiny, randomly initialised T5 (tokenizer trained here) laid out like ``google-t5/t5-base``.

Built in about a second and loaded by the tests through the same ``from_pretrained`` path as the
real text encoder of caption conditioning (:mod:`wavdiff_utils.train.text`).  Like the real
checkpoint it holds the decoder too, so the loader's "encoder only" path is what runs.
"""
from __future__ import annotations

import re
import string
from pathlib import Path

__all__ = ["build_tiny_t5"]

_CORPUS = ["style of Ada, Tide. A Rock track featuring Electric Guitar. 120 BPM.",
           "A calm piano piece with soft strings.", "loud electric guitars and fast drums",
           "A track.", "wavdiff demo part one two three four", string.ascii_letters, string.digits,
           string.punctuation]


def build_tiny_t5(folder, *, dim: int = 32, vocab_size: int = 200, seed: int = 0) -> Path:
    """Write a tiny T5 (config, weights, fast tokenizer) into ``folder`` and return it."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import T5Config, T5ForConditionalGeneration, T5TokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # a word-level vocabulary of the corpus (lower case, punctuation split off); T5's special
    # tokens keep their ids: <pad> 0, </s> 1, <unk> 2
    words = sorted({w for line in _CORPUS for w in re.findall(r"\w+|[^\w\s]", line.lower())})
    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", "<unk>"] + words[:vocab_size])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    fast = T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>",
                           pad_token="<pad>", extra_ids=0)
    fast.save_pretrained(str(folder))
    config = T5Config(vocab_size=len(fast), d_model=dim, d_kv=8, d_ff=2 * dim, num_layers=1,
                      num_decoder_layers=1, num_heads=4, decoder_start_token_id=0,
                      pad_token_id=0, eos_token_id=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        T5ForConditionalGeneration(config).save_pretrained(str(folder))
    return folder
