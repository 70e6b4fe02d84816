"""The pretrained families we read and write, each as data: how its config.json becomes a ModelConfig (and back),
and which of its tensors is which of ours.

    bert, roberta   -> EncoderClassifier (post-LN, learned positions, token types, LayerNorm on the embeddings,
                       BERT's pooler; RoBERTa's classification head's dense layer is our pooler)
    bart, marian    -> EncoderDecoder (post-LN, one shared embedding, final_logits_bias; BART: learned positions
                       from row 2 and a LayerNorm on the embeddings; Marian: sqrt(D)-scaled embeddings, sinusoidal
                       positions with the sines first, SiLU)
    pegasus         -> EncoderDecoder (pre-LN with a final LayerNorm after the encoder and the decoder, one shared
                       embedding, sqrt(D)-scaled, sinusoidal positions with the sines first, no LayerNorm on the
                       embeddings): our default seq2seq layout, which format=hf writes in this family

Names: a tensor of ours comes from one of theirs, or (attention's packed in_proj) from their q, k and v
concatenated. `{i}` stands for a layer's index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformer.config import ModelConfig
from transformer.errors import ConfigError

QKV = ("q", "k", "v")
NORM = ("weight", "bias")
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "swish": "silu", "silu": "silu"}  # theirs -> ours


@dataclass(frozen=True)
class Family:
    model_type: str
    objective: str  # classification | seq2seq: the objective its models serve here
    architecture: str  # the transformers class an export names (AutoModelFor... loads it)
    base: str  # the prefix of the base model's tensors in the task model ("bert.", "model.")
    top: dict[str, str]  # ours -> theirs, outside the layers (theirs with the prefix, where it has it)
    encoder_layer: dict[str, str | tuple[str, str, str]] = field(default_factory=dict)
    decoder_layer: dict[str, str | tuple[str, str, str]] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # their tensors that repeat another (tied), read by nobody
    derived: tuple[str, ...] = ()  # their tensors that our model computes (Marian's sinusoidal table)


def _attention(ours: str, theirs: str, names=("q_proj", "k_proj", "v_proj"), out: str = "") -> dict[str, Any]:
    """Our packed in_proj from their q, k, v (under `theirs`), our out_proj from `out` (default theirs.out_proj)."""
    rules: dict[str, Any] = {}
    for kind in NORM:
        rules[f"{ours}.in_proj.{kind}"] = tuple(f"{theirs}.{n}.{kind}" for n in names)
        rules[f"{ours}.out_proj.{kind}"] = f"{out or theirs + '.out_proj'}.{kind}"
    return rules


def _layer(prefix: str, layer: dict[str, Any]) -> dict[str, Any]:
    """A layer's rules with their names under `prefix`.{i}."""
    return {
        ours: tuple(f"{prefix}.{{i}}.{t}" for t in theirs) if isinstance(theirs, tuple) else f"{prefix}.{{i}}.{theirs}"
        for ours, theirs in layer.items()
    }


def _pairs(mapping: dict[str, str]) -> dict[str, str]:
    """{ours_module: theirs_module} -> the same for weight and bias."""
    return {f"{o}.{kind}": f"{t}.{kind}" for o, t in mapping.items() for kind in NORM}


BERT_LAYER = {
    **_attention("self_attn", "attention.self", ("query", "key", "value"), "attention.output.dense"),
    **_pairs(
        {
            "attn_residual.norm": "attention.output.LayerNorm",
            "ffn.fc1": "intermediate.dense",
            "ffn.fc2": "output.dense",
            "ffn_residual.norm": "output.LayerNorm",
        }
    ),
}
BERT_EMBEDDINGS = {
    "encoder.embed.tokens.weight": "embeddings.word_embeddings.weight",
    "encoder.embed.positions.weight": "embeddings.position_embeddings.weight",
    "encoder.embed.token_types.weight": "embeddings.token_type_embeddings.weight",
    **_pairs({"encoder.embed.norm": "embeddings.LayerNorm"}),
}
BART_ENCODER_LAYER = {
    **_attention("self_attn", "self_attn"),
    **_pairs(
        {
            "attn_residual.norm": "self_attn_layer_norm",
            "ffn.fc1": "fc1",
            "ffn.fc2": "fc2",
            "ffn_residual.norm": "final_layer_norm",
        }
    ),
}
BART_DECODER_LAYER = {
    **_attention("self_attn", "self_attn"),
    **_attention("cross_attn", "encoder_attn"),
    **_pairs(
        {
            "self_residual.norm": "self_attn_layer_norm",
            "cross_residual.norm": "encoder_attn_layer_norm",
            "ffn.fc1": "fc1",
            "ffn.fc2": "fc2",
            "ffn_residual.norm": "final_layer_norm",
        }
    ),
}
SEQ2SEQ_TOP = {
    "encoder.embed.tokens.weight": "model.shared.weight",
    "decoder.embed.tokens.weight": "model.shared.weight",
    "output_bias": "final_logits_bias",
}
SEQ2SEQ_ALIASES = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")
SINUSOIDS = ("model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight")  # transformers computes

FAMILIES = {
    "bert": Family(
        "bert",
        "classification",
        "BertForSequenceClassification",
        "bert.",
        {
            **{o: f"bert.{t}" for o, t in BERT_EMBEDDINGS.items()},
            **_pairs({"pooler": "bert.pooler.dense"}),
            **_pairs({"head": "classifier"}),
        },  # fmt: skip
        _layer("bert.encoder.layer", BERT_LAYER),
        derived=("bert.embeddings.position_ids", "bert.embeddings.token_type_ids"),
    ),
    "roberta": Family(
        "roberta",
        "classification",
        "RobertaForSequenceClassification",
        "roberta.",
        {
            **{o: f"roberta.{t}" for o, t in BERT_EMBEDDINGS.items()},
            **_pairs({"pooler": "classifier.dense"}),
            **_pairs({"head": "classifier.out_proj"}),
        },  # fmt: skip
        _layer("roberta.encoder.layer", BERT_LAYER),
        derived=("roberta.embeddings.position_ids", "roberta.embeddings.token_type_ids"),
    ),
    "bart": Family(
        "bart",
        "seq2seq",
        "BartForConditionalGeneration",
        "model.",
        {
            **SEQ2SEQ_TOP,
            "encoder.embed.positions.weight": "model.encoder.embed_positions.weight",
            "decoder.embed.positions.weight": "model.decoder.embed_positions.weight",
            **_pairs({"encoder.embed.norm": "model.encoder.layernorm_embedding"}),
            **_pairs({"decoder.embed.norm": "model.decoder.layernorm_embedding"}),
        },
        _layer("model.encoder.layers", BART_ENCODER_LAYER),
        _layer("model.decoder.layers", BART_DECODER_LAYER),
        aliases=SEQ2SEQ_ALIASES,
    ),
    "marian": Family(
        "marian",
        "seq2seq",
        "MarianMTModel",
        "model.",
        dict(SEQ2SEQ_TOP),
        _layer("model.encoder.layers", BART_ENCODER_LAYER),
        _layer("model.decoder.layers", BART_DECODER_LAYER),
        aliases=SEQ2SEQ_ALIASES,
        derived=SINUSOIDS,
    ),
    "pegasus": Family(
        "pegasus",
        "seq2seq",
        "PegasusForConditionalGeneration",
        "model.",
        {
            **SEQ2SEQ_TOP,
            **_pairs({"encoder.norm": "model.encoder.layer_norm", "decoder.norm": "model.decoder.layer_norm"}),
        },
        _layer("model.encoder.layers", BART_ENCODER_LAYER),
        _layer("model.decoder.layers", BART_DECODER_LAYER),
        aliases=SEQ2SEQ_ALIASES,
        derived=SINUSOIDS,
    ),
}


def family_of(config: dict[str, Any], where: str) -> Family:
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise ConfigError(
            f"{where}: model_type {model_type!r} is not supported; supported: {', '.join(sorted(FAMILIES))}"
        )
    return FAMILIES[model_type]


def rules(family: Family, config: ModelConfig) -> dict[str, str | tuple[str, ...]]:
    """Every tensor of ours that the family has, with its name(s) there."""
    out: dict[str, str | tuple[str, ...]] = dict(family.top)
    for prefix, layer, n in (
        ("encoder.layers", family.encoder_layer, config.n_encoder_layers),
        ("decoder.layers", family.decoder_layer, config.n_decoder_layers),
    ):
        for i in range(n if layer else 0):
            for ours, theirs in layer.items():
                name = f"{prefix}.{i}.{ours}"
                out[name] = tuple(t.format(i=i) for t in theirs) if isinstance(theirs, tuple) else theirs.format(i=i)
    return out


def _get(config: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return default


def model_config(family: Family, c: dict[str, Any], where: str) -> ModelConfig:
    """config.json's values as our ModelConfig (the classifier's num_classes from num_labels or id2label)."""
    act = _get(c, "hidden_act", "activation_function", default="gelu")
    if act not in ACTIVATIONS:
        raise ConfigError(f"{where}: activation {act!r} is not supported; supported: {', '.join(ACTIVATIONS)}")
    if c.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError(f"{where}: position_embedding_type={c['position_embedding_type']!r} is not supported")
    num_classes = max(2, len(c.get("id2label") or {}) or c.get("num_labels") or 2)
    ids = {
        "pad_id": c.get("pad_token_id") if c.get("pad_token_id") is not None else 0,
        "bos_id": _get(c, "bos_token_id", default=c.get("pad_token_id") or 0),
        "eos_id": _get(c, "eos_token_id", default=0),
    }
    if family.objective == "classification":
        offset = c["pad_token_id"] + 1 if family.model_type == "roberta" else 0
        return ModelConfig(
            vocab_size=c["vocab_size"],
            d_model=c["hidden_size"],
            n_heads=c["num_attention_heads"],
            d_ff=c["intermediate_size"],
            n_encoder_layers=c["num_hidden_layers"],
            n_decoder_layers=0,
            dropout=c.get("hidden_dropout_prob", 0.1),
            attention_dropout=c.get("attention_probs_dropout_prob", 0.1),
            activation=ACTIVATIONS[act],
            norm_first=False,
            layer_norm_eps=c.get("layer_norm_eps", 1e-12),
            positional="learned",
            max_positions=c["max_position_embeddings"],
            num_classes=num_classes,
            pooling="pooler",
            scale_embeddings=False,
            position_offset=offset,
            token_types=c.get("type_vocab_size", 2),
            embed_norm=True,
            **ids,
        )
    bart, pegasus = family.model_type == "bart", family.model_type == "pegasus"
    heads = {c["encoder_attention_heads"], c["decoder_attention_heads"]}
    ffn = {c["encoder_ffn_dim"], c["decoder_ffn_dim"]}
    if len(heads) > 1 or len(ffn) > 1:
        raise ConfigError(f"{where}: encoder and decoder widths differ (heads {heads}, ffn {ffn}): unsupported")
    if not pegasus and (c.get("normalize_before") or c.get("add_final_layer_norm")):
        raise ConfigError(f"{where}: pre-LN variants (normalize_before) are not supported")
    return ModelConfig(
        vocab_size=c["vocab_size"],
        d_model=c["d_model"],
        n_heads=heads.pop(),
        d_ff=ffn.pop(),
        n_encoder_layers=c["encoder_layers"],
        n_decoder_layers=c["decoder_layers"],
        dropout=c.get("dropout", 0.1),
        attention_dropout=c.get("attention_dropout", 0.0),
        activation_dropout=c.get("activation_dropout", 0.0),
        activation=ACTIVATIONS[act],
        norm_first=pegasus,  # Pegasus: pre-LN, and a final LayerNorm on the encoder's and the decoder's output
        positional="learned" if bart else "sinusoidal_halves",
        max_positions=c["max_position_embeddings"] + (2 if bart else 0),
        position_offset=2 if bart else 0,
        share_embeddings=True,
        tie_output=True,
        scale_embeddings=bool(c.get("scale_embedding", not bart)),
        embed_norm=bart,
        output_bias=True,
        decoder_start_id=c.get("decoder_start_token_id"),
        **ids,
    )


def hf_config(family: Family, m: ModelConfig, label_names: list[str]) -> dict[str, Any]:
    """Our ModelConfig as the family's config.json (the inverse of model_config)."""
    labels = label_names or [f"LABEL_{i}" for i in range(m.num_classes)]
    base = {"model_type": family.model_type, "architectures": [family.architecture], "vocab_size": m.vocab_size}
    base.update(pad_token_id=m.pad_id, bos_token_id=m.bos_id, eos_token_id=m.eos_id)
    if family.objective == "classification":
        return {
            **base,
            "hidden_size": m.d_model,
            "num_attention_heads": m.n_heads,
            "intermediate_size": m.d_ff,
            "num_hidden_layers": m.n_encoder_layers,
            "hidden_dropout_prob": m.dropout,
            "attention_probs_dropout_prob": m.attention_dropout,
            "hidden_act": m.activation,
            "layer_norm_eps": m.layer_norm_eps,
            "max_position_embeddings": m.max_positions,
            "type_vocab_size": m.token_types or 1,  # ours without token types: one zero vector
            "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)},
        }
    bart = family.model_type == "bart"
    return {
        **base,
        "d_model": m.d_model,
        "encoder_attention_heads": m.n_heads,
        "decoder_attention_heads": m.n_heads,
        "encoder_ffn_dim": m.d_ff,
        "decoder_ffn_dim": m.d_ff,
        "encoder_layers": m.n_encoder_layers,
        "decoder_layers": m.n_decoder_layers,
        "dropout": m.dropout,
        "attention_dropout": m.attention_dropout,
        "activation_dropout": m.activation_dropout,
        "activation_function": {"silu": "swish"}.get(m.activation, m.activation),
        "max_position_embeddings": m.max_positions - (2 if bart else 0),
        "scale_embedding": m.scale_embeddings,
        "decoder_start_token_id": m.start_id,
        "forced_eos_token_id": m.eos_id,
        "is_encoder_decoder": True,
        "tie_word_embeddings": True,
        "share_encoder_decoder_embeddings": True,
    }
