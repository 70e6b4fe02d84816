"""Small pretrained models, offline: tokenizers trained here with `tokenizers` / SentencePiece, models built by
transformers from small configs with random weights, `save_pretrained` into a folder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

# accents, emoji, a very long word, digits, punctuation, mixed case
SENTENCES = [
    "The film was not bad at all.",
    "Café crème, naïve façade: déjà vu!",
    "I loved it 😀👍 and my friends 🎬 too",
    "Pneumonoultramicroscopicsilicovolcanoconiosis is antidisestablishmentarianistically long",
    "Ein Hund läuft über die Straße, 1234 Mal.",
    "ok",
]
CORPUS = SENTENCES * 4 + [f"sentence {i} about movies and the actors in them, good or bad" for i in range(200)]
LABELS = ["negative", "positive"]
SMALL = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def wordpiece(corpus=CORPUS, vocab_size: int = 300) -> Tokenizer:
    """BERT's: lower-cased, accents stripped, WordPiece, [CLS] x [SEP]."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.decoder = decoders.WordPiece()
    return tok


def byte_bpe(corpus=CORPUS, vocab_size: int = 400) -> Tokenizer:
    """RoBERTa's and BART's: byte-level BPE, <s> x </s>."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def save_tokenizer(tok: Tokenizer, folder: Path, **special: str) -> None:
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **special)
    fast.save_pretrained(folder)


BERT_SPECIAL = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
BPE_SPECIAL = dict(
    pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
    mask_token="<mask>",
)  # fmt: skip


def save_classifier(folder: Path, model_type: str = "bert", seed: int = 0, layers: int = 2):
    """A random BERT (WordPiece) or RoBERTa (byte-level BPE) sequence classifier; returns the HF model."""
    import torch

    torch.manual_seed(seed)
    bert = model_type == "bert"
    tok = wordpiece() if bert else byte_bpe()
    sizes = dict(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=66, num_labels=2, **SMALL,
    )  # fmt: skip
    if bert:
        config = transformers.BertConfig(pad_token_id=0, **sizes)
        model = transformers.BertForSequenceClassification(config)
    else:
        config = transformers.RobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1, **sizes)
        model = transformers.RobertaForSequenceClassification(config)
    perturb(model)
    model.save_pretrained(folder)
    save_tokenizer(tok, folder, **(BERT_SPECIAL if bert else BPE_SPECIAL))
    return model.eval()


def save_seq2seq(folder: Path, model_type: str = "bart", seed: int = 0, eos_bias: float = 0.0, init_std: float = 0.02):
    """A random BART (byte-level BPE) or Marian (SentencePiece source/target + vocab.json) model; `eos_bias` is
    added to eos's final_logits_bias, so that outputs end at various lengths."""
    import torch

    torch.manual_seed(seed)
    sizes = dict(
        d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, init_std=init_std,
    )  # fmt: skip
    if model_type == "bart":
        tok = byte_bpe()
        config = transformers.BartConfig(
            vocab_size=tok.get_vocab_size(), pad_token_id=1, bos_token_id=0, eos_token_id=2,
            decoder_start_token_id=2, forced_bos_token_id=None, forced_eos_token_id=2, **sizes,
        )  # fmt: skip
        model = transformers.BartForConditionalGeneration(config)
        save_tokenizer(tok, folder, **BPE_SPECIAL)
    else:
        vocab = save_marian_tokenizer(folder)
        config = transformers.MarianConfig(
            vocab_size=len(vocab), pad_token_id=vocab["<pad>"], eos_token_id=vocab["</s>"],
            decoder_start_token_id=vocab["<pad>"], forced_eos_token_id=vocab["</s>"], **sizes,
        )  # fmt: skip
        model = transformers.MarianMTModel(config)
    perturb(model)
    with torch.no_grad():
        model.final_logits_bias[0, config.eos_token_id] += eos_bias
    model.save_pretrained(folder)
    return model.eval()


def perturb(model) -> None:
    """Random LayerNorms, biases and final_logits_bias: zeros and ones would hide a misplaced one."""
    import torch

    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or "layernorm" in name or name.endswith("bias"):
                tensor.add_(torch.randn_like(tensor) * 0.1)
        for name, buffer in model.named_buffers():
            if name.endswith("final_logits_bias"):
                buffer.normal_(0, 0.5)


def save_marian_tokenizer(folder: Path) -> dict[str, int]:
    """Marian's layout: source.spm, target.spm and one vocab.json over both, </s> 0, <unk> 1, <pad> last."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    german = [s for s in CORPUS if "Hund" in s or "Café" in s] * 20 + [
        f"Satz {i} über Hunde und Katzen" for i in range(200)
    ]
    english = [s for s in CORPUS if "Hund" not in s]
    pieces: dict[str, None] = {}
    for name, texts in (("source.spm", german), ("target.spm", english)):
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=100, minloglevel=2, hard_vocab_limit=False,
            character_coverage=1.0, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        )  # fmt: skip
        (folder / name).write_bytes(model.getvalue())
        proc = spm.SentencePieceProcessor(model_proto=model.getvalue())
        pieces.update({proc.id_to_piece(i): None for i in range(1, proc.get_piece_size())})
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    config = {"tokenizer_class": "MarianTokenizer", "pad_token": "<pad>", "unk_token": "<unk>", "eos_token": "</s>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return vocab
