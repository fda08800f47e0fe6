"""Tiny randomly-initialised models of the three backbone families, saved so ``load_model(folder)`` works.

Tokenizers come from the ``tokenizers`` library and a small built-in English corpus (no download):
a trained byte-level BPE for the Llama decoder (adds no special tokens and has no pad token, like
SmolLM2), a WordPiece for BERT (``[CLS] ... [SEP]``) and a Unigram with Metaspace for T5 (appends
``</s>``, has the sentinel ``<extra_id_0>``); the last two are built from word counts so they are
deterministic. In every one, " Yes", " No", " Maybe" (and the lower-case forms) are single tokens.
The Llama and BERT weights use a larger init than the default 0.02, so a soft prompt can move the
label-word logits within a few training steps. ``build_tiny_gemma3`` adds a Gemma 3 text decoder on the
decoder's tokenizer (scaled input embeddings, tied head, sliding and full attention, capped logits).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from dawgen.tasks.schema import Family

SEED = 1234
METASPACE = "\u2581"
LABEL_WORDS = ("Yes", "No", "Maybe", "yes", "no", "maybe")
_SUBJECTS = ("The man", "A woman", "The child", "My friend", "The teacher", "A dog", "The cat", "Our team", "She", "He")
_VERBS = ("reads", "writes", "likes", "finds", "answers", "asks", "sees", "knows", "takes", "makes")
_OBJECTS = ("a book", "the question", "the answer", "a sentence", "the movie", "a letter", "the film", "some food")
_ENDINGS = ("today", "at home", "in the park", "every day", "with care", "again", "quickly", "at night")
_ANSWERS = ("Yes", "No", "Maybe", "yes", "no", "maybe")


def corpus(n: int = 400, seed: int = SEED) -> list[str]:
    """A few hundred deterministic English sentences, rich in the label words."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        subject, verb, obj, end = (rng.choice(part) for part in (_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS))
        sentence = f"{subject} {verb} {obj} {end}."
        answer = _ANSWERS[i % len(_ANSWERS)]
        kind = i % 4
        if kind == 0:
            lines.append(sentence)
        elif kind == 1:
            lines.append(f"{sentence} Question: is it true? Answer: {answer}")
        elif kind == 2:
            lines.append(f'Sentence: "{sentence}" The answer is {answer}, {answer.lower()} or maybe not.')
        else:
            lines.append(f"{sentence} ? {answer}, {sentence.lower()} It was great. It was terrible!")
    return lines


def _check_single_tokens(tokenizer: PreTrainedTokenizerFast, name: str) -> None:
    for word in LABEL_WORDS:
        ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise AssertionError(f"{name}: ' {word}' is {len(ids)} tokens: {tokenizer.convert_ids_to_tokens(ids)}")


def decoder_tokenizer(lines: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE; bos/eos ``<s>``/``</s>``, no pad token and no added special tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(lines, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    _check_single_tokens(fast, "decoder")
    return fast


def masked_tokenizer(lines: list[str]) -> PreTrainedTokenizerFast:
    """Cased WordPiece with ``[PAD] [UNK] [CLS] [SEP] [MASK]``; adds ``[CLS] ... [SEP]``."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    counts = _word_counts(lines)
    chars = sorted(set("".join(counts)))
    words = sorted(counts, key=lambda word: (-counts[word], word))
    # Built from counts, not trained: the WordPiece trainer orders its vocabulary differently from run to run.
    pieces = dict.fromkeys([*specials, *chars, *(f"##{char}" for char in chars), *words])
    tok = Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(pieces)}, unk_token="[UNK]"))
    tok.add_special_tokens(specials)
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    _check_single_tokens(fast, "masked")
    return fast


def _word_counts(lines: list[str]) -> Counter[str]:
    """Counts of words and punctuation marks (split as BERT's pre-tokenizer does)."""
    return Counter(piece for line in lines for piece in re.findall(r"\w+|[^\w\s]", line))


def _unigram_vocab(lines: list[str], specials: list[str]) -> list[tuple[str, float]]:
    """Unigram pieces with log-frequency scores: every word with and without ``▁``, plus characters.

    Built from counts rather than trained: the ``tokenizers`` Unigram trainer keeps only ~100
    pieces on a corpus this small, which splits " Yes" into characters.
    """
    counts = _word_counts(lines)
    total = sum(counts.values())
    vocab: dict[str, float] = {}
    for piece, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        score = math.log(count / total)
        vocab.setdefault(METASPACE + piece, score)
        vocab.setdefault(piece, score - 1.0)
    for char in sorted({METASPACE, *"".join(counts)}):
        vocab.setdefault(char, -20.0)
    return [(token, 0.0) for token in specials] + list(vocab.items())


def seq2seq_tokenizer(lines: list[str]) -> PreTrainedTokenizerFast:
    """Unigram with Metaspace (like T5): ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, sentinels; appends ``</s>``."""
    sentinels = ["<extra_id_0>", "<extra_id_1>"]
    specials = ["<pad>", "</s>", "<unk>", *sentinels]
    tok = Tokenizer(models.Unigram(_unigram_vocab(lines, specials), unk_id=2))
    tok.add_special_tokens(specials)
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_special_tokens=sentinels
    )
    _check_single_tokens(fast, "seq2seq")
    return fast


def _decoder_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        initializer_range=0.1,  # > default 0.02, so a soft prompt moves the logits quickly
    )
    return LlamaForCausalLM(config)


def _masked_model(tokenizer: PreTrainedTokenizerFast) -> BertForMaskedLM:
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.2,  # > default 0.02, as for the decoder
    )
    return BertForMaskedLM(config)


def _seq2seq_model(tokenizer: PreTrainedTokenizerFast) -> T5ForConditionalGeneration:
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5ForConditionalGeneration(config)


GEMMA3_HIDDEN = 32
GEMMA3_SOFTCAP = 30.0  # final_logit_softcapping; Gemma 3 270M has none, Gemma 2 used 30


def _gemma3_model(tokenizer: PreTrainedTokenizerFast) -> Gemma3ForCausalLM:
    """Gemma 3's text decoder: scaled input embeddings, tied head, sliding + full attention, capped logits."""
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=GEMMA3_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        query_pre_attn_scalar=8,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None,  # the default 0 is the tokenizer's <s>; loading pads with eos, as for SmolLM2
        final_logit_softcapping=GEMMA3_SOFTCAP,
        tie_word_embeddings=True,
        initializer_range=0.1,
    )
    return Gemma3ForCausalLM(config)


def build_tiny_gemma3(folder: str | Path, seed: int = SEED) -> Path:
    """A tiny random Gemma 3 text model with the decoder's BPE tokenizer, saved into ``folder``."""
    folder = Path(folder)
    tokenizer = decoder_tokenizer(corpus(seed=seed))
    torch.manual_seed(seed)
    _gemma3_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


_BUILDERS = {
    Family.DECODER: (decoder_tokenizer, _decoder_model),
    Family.MASKED: (masked_tokenizer, _masked_model),
    Family.SEQ2SEQ: (seq2seq_tokenizer, _seq2seq_model),
}


def build_tiny_model(family: Family, folder: str | Path, seed: int = SEED) -> Path:
    """Build a tiny random model of ``family`` with its tokenizer and save both into ``folder``."""
    folder = Path(folder)
    make_tokenizer, make_model = _BUILDERS[family]
    tokenizer = make_tokenizer(corpus(seed=seed))
    torch.manual_seed(seed)
    model = make_model(tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_models(root: str | Path, seed: int = SEED) -> dict[Family, Path]:
    """Build all three tiny models under ``root`` (one subfolder per family)."""
    root = Path(root)
    return {family: build_tiny_model(family, root / f"tiny-{family.value}", seed) for family in _BUILDERS}
