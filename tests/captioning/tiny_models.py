"""Tiny, randomly initialised models for the tests: built locally in seconds, nothing downloaded.

Each builder writes a folder laid out exactly like the real model's, so the
tests and the notebooks load it through the very same functions users call.
``conftest.py`` builds them once per checkout into ``outputs/test-models/``.
"""
from __future__ import annotations

import contextlib
import io
import json
import string
from pathlib import Path

__all__ = ["build_tiny_muq_mulan", "TINY_MUQ_TOWERS"]

#: Sub-tower names written into the tiny MuQ-MuLan's config.json.  They look like
#: hub ids (as in the real config) and resolve to ``<folder>/<last part>``, the
#: same lookup a downloaded self-contained folder uses.
TINY_MUQ_TOWERS = {"audio": "wavdiff-tests/MuQ-tiny-random",
                   "text": "wavdiff-tests/xlm-roberta-tiny-random"}


def _tiny_tokenizer_corpus() -> list[str]:
    """Sentences to train the tiny tokenizer on: every prompt the captioner makes, plus a few more."""
    from wavdiff_utils.captioning.labels import CATEGORIES, PROMPT_TEMPLATES, load_vocabulary

    vocab = load_vocabulary()
    out = ["a calm piano piece with soft strings", "loud electric guitars and fast drums",
           "style of an artist, a title", string.ascii_letters, string.digits, string.punctuation]
    for c in CATEGORIES:
        for lab in vocab[c]:
            for t in PROMPT_TEMPLATES[c]:
                out.append(t.format(label=lab.prompt, name=lab.display.lower()))
    return out


def _build_tiny_xlmr(folder: Path, *, vocab_size: int = 320, dim: int = 32):
    """Train a small SentencePiece-style (Unigram) tokenizer and save a tiny XLM-R beside it."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]          # XLM-R's ids 0, 1, 2, 3
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials,
                                      unk_token="<unk>", show_progress=False,
                                      initial_alphabet=list(string.printable.strip()))
    tok.train_from_iterator(_tiny_tokenizer_corpus(), trainer)
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok)
    fast.save_pretrained(str(folder))
    config = XLMRobertaConfig(vocab_size=len(fast), hidden_size=dim, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=2 * dim,
                              max_position_embeddings=130, type_vocab_size=1, pad_token_id=1,
                              bos_token_id=0, eos_token_id=2)
    XLMRobertaModel(config).save_pretrained(str(folder))


def _build_tiny_muq(folder: Path, *, dim: int = 32):
    """A one-layer MuQ audio tower (same code path as MuQ-large: mel 128 bands, 25 Hz, rotary conformer)."""
    import dataclasses

    from muq import MuQ, MuQConfig
    from safetensors.torch import save_file
    from transformers import Wav2Vec2ConformerConfig

    w2v2 = Wav2Vec2ConformerConfig(hidden_size=dim, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=2 * dim, num_conv_pos_embeddings=16,
                                   num_conv_pos_embedding_groups=4, conv_depthwise_kernel_size=7,
                                   position_embeddings_type="rotary", hidden_act="swish",
                                   do_stable_layer_norm=True).to_dict()
    # keep plain settings only (EasyDict cannot hold the int-keyed label maps)
    w2v2 = {k: v for k, v in w2v2.items() if not k.startswith("_") and not isinstance(v, dict)}
    config = MuQConfig(codebook_dim=4, codebook_size=16, conv_dim=4, encoder_dim=dim,
                       encoder_depth=1, w2v2_config=w2v2,
                       stat={"melspec_2048_cnt": 1, "melspec_2048_mean": 6.77,
                             "melspec_2048_std": 18.42})
    model = MuQ(config)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    save_file({k: v.contiguous().clone() for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))


def build_tiny_muq_mulan(folder, *, weights: str = "safetensors", seed: int = 0) -> Path:
    """Build a tiny, randomly initialised MuQ-MuLan in ``folder`` and return the folder.

    The folder is self-contained and laid out like a downloaded model::

        config.json, model.safetensors (or pytorch_model.bin)
        MuQ-tiny-random/         tiny MuQ audio tower (config.json, model.safetensors)
        xlm-roberta-tiny-random/ tiny XLM-R text tower with a locally trained tokenizer

    The MuQ-MuLan checkpoint holds sub-tower weights that differ from the
    sub-tower files, so a test can tell that the checkpoint was loaded last.

    Parameters
    ----------
    folder : path-like
        Created if needed; existing files are overwritten.
    weights : {"safetensors", "bin"}
        File format of the MuQ-MuLan checkpoint (the hub repository ships ``.bin``).
    seed : int
        Random seed; the same seed gives the same weights.

    Returns
    -------
    pathlib.Path
        ``folder``, to pass as ``model``.
    """
    import torch
    from muq import MuQMuLan
    from safetensors.torch import save_file

    if weights not in ("safetensors", "bin"):
        raise ValueError(f"weights must be 'safetensors' or 'bin', got {weights!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    audio_dir = folder / TINY_MUQ_TOWERS["audio"].split("/")[-1]
    text_dir = folder / TINY_MUQ_TOWERS["text"].split("/")[-1]
    dim = 32
    config = {
        "mulan": {"sr": 24000, "clip_secs": 10, "dim_latent": 16,
                  "decoupled_contrastive_learning": True, "hierarchical_contrastive_loss": False,
                  "hierarchical_contrastive_loss_layers": None, "sigmoid_contrastive_loss": False,
                  "rank_contrast": True},
        "audio_model": {"name": TINY_MUQ_TOWERS["audio"], "model_dim": dim, "use_layer_idx": -1},
        "text_model": {"name": TINY_MUQ_TOWERS["text"], "model_dim": dim},
        "audio_transformer": {"dim": dim, "tf_depth": 1, "heads": 2, "dim_head": 16,
                              "attn_dropout": 0.0, "ff_dropout": 0.0, "ff_mult": 2},
        "text_transformer": {"dim": dim, "tf_depth": 1, "max_seq_len": 128, "dim_head": 16,
                             "heads": 2, "attn_dropout": 0.0, "ff_dropout": 0.0, "ff_mult": 2},
    }
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        torch.manual_seed(seed)
        _build_tiny_xlmr(text_dir, dim=dim)
        _build_tiny_muq(audio_dir, dim=dim)
        build = json.loads(json.dumps(config))
        build["audio_model"]["name"] = str(audio_dir.resolve())
        build["text_model"]["name"] = str(text_dir.resolve())
        net = MuQMuLan(build)
        torch.manual_seed(seed + 1)       # MuQ reseeds the generator while it is built
        with torch.no_grad():
            for name, p in net.named_parameters():
                if name.startswith(("mulan.audio.model.", "mulan.text.model.")):
                    p.add_(torch.randn_like(p) * 0.02)
    state = {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    for old in ("model.safetensors", "pytorch_model.bin"):
        (folder / old).unlink(missing_ok=True)
    if weights == "safetensors":
        save_file(state, str(folder / "model.safetensors"))
    else:
        torch.save(state, str(folder / "pytorch_model.bin"))
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return folder
