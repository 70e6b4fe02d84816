"""Read a Hugging Face `save_pretrained` folder (or a hub id) into our terms, and write one back.

read_pretrained("hf:<dir or hub id>") -> Pretrained: the family, our ModelConfig, the tokenizers, and the
                                        tensors renamed to ours (to_ours); what init_from=hf: loads
write_pretrained(folder, model, ...)  -> a folder that transformers' AutoModelFor... and AutoTokenizer load
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from transformer.config import ModelConfig
from transformer.data.pretrained_tokenizer import HFTokenizer, MarianTokenizer, read_tokenizers, sentencepiece_as_hf
from transformer.data.tokenizer import SentencePieceTokenizer, Tokenizer
from transformer.errors import ConfigError
from transformer.hf.families import FAMILIES, SINUSOIDS, Family, family_of, hf_config, model_config, rules
from transformer.model import sinusoidal_halves_table

PREFIX = "hf:"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class Pretrained:
    source: str  # as given
    folder: Path
    family: Family
    model: ModelConfig
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    tensors: dict[str, Tensor]  # theirs, by their names

    def weights(self, config: ModelConfig) -> tuple[dict[str, Tensor], list[str]]:
        """(ours -> tensor for every tensor of ours the folder has, their names nobody reads)."""
        return to_ours(self.family, self.tensors, config)


def is_pretrained(init_from: str | None) -> bool:
    return bool(init_from) and init_from.startswith(PREFIX)


def resolve(spec: str) -> Path:
    """A local folder, or a hub id downloaded with huggingface_hub (one-line error where the network is missing)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not HUB_ID.fullmatch(spec) or spec.startswith((".", "/", "~")):
        raise ConfigError(f"init_from=hf:{spec}: no such folder (pass a save_pretrained folder or a hub id)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.spm", "*.txt", "*.model"]
    try:
        return Path(snapshot_download(spec, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        raise ConfigError(
            f"init_from=hf:{spec}: cannot download {spec} from the Hugging Face Hub (no network, and it is not "
            f"in the local cache): download it where the network allows and pass its folder"
        ) from None
    except (HfHubHTTPError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"init_from=hf:{spec}: cannot download it from the Hugging Face Hub: {first}") from None


def load_tensors(folder: Path) -> dict[str, Tensor]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        from safetensors.torch import load_file

        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(folder / shard).items()}
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ConfigError(f"{folder} has no weights: expected {' or '.join(WEIGHT_FILES)}")


def read_pretrained(spec: str) -> Pretrained:
    """`spec` (with or without the `hf:` prefix) read: its config, tokenizers and tensors."""
    spec = spec.removeprefix(PREFIX)
    folder = resolve(spec)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"init_from=hf:{spec}: {folder} has no config.json (not a save_pretrained folder)")
    values = json.loads(config_file.read_text())
    where = f"init_from=hf:{spec}"
    family = family_of(values, where)
    model = model_config(family, values, where)
    src, tgt = read_tokenizers(folder, values)
    for side, tok in (("source", src), ("target", tgt)):
        if tok.vocab_size > model.vocab_size:
            raise ConfigError(
                f"{where}: the {side} tokenizer has {tok.vocab_size} tokens but the embedding only "
                f"{model.vocab_size} rows (config.json vocab_size): the tokenizer belongs to another model"
            )
    # the tokenizer's special ids are config.json's where it sets them, and its tokens' (BERT's [CLS]) elsewhere
    model = replace(model, pad_id=src.pad_id, bos_id=tgt.bos_id, eos_id=tgt.eos_id)
    if family.objective == "seq2seq":
        model = replace(model, decoder_start_id=tgt.decoder_start_id)
    return Pretrained(spec, folder, family, model, src, tgt, load_tensors(folder))


def to_ours(family: Family, tensors: dict[str, Tensor], config: ModelConfig) -> tuple[dict[str, Tensor], list[str]]:
    ours: dict[str, Tensor] = {}
    used: set[str] = set(family.aliases) | set(family.derived)
    for name, theirs in rules(family, config).items():
        names = theirs if isinstance(theirs, tuple) else (theirs,)
        if all(n in tensors for n in names):
            tensor = torch.cat([tensors[n] for n in names], 0) if len(names) > 1 else tensors[names[0]]
            ours[name] = tensor.reshape(-1) if name == "output_bias" else tensor  # theirs is (1, V)
            used.update(names)
    return ours, sorted(set(tensors) - used)


def to_theirs(family: Family, state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Our state dict under the family's names (in_proj split into q, k, v); tied aliases written out too."""
    out: dict[str, Tensor] = {}
    for name, theirs in rules(family, config).items():
        if name not in state:
            continue
        tensor = state[name].detach().float().contiguous()
        if isinstance(theirs, tuple):
            for part, n in zip(tensor.chunk(3, 0), theirs, strict=True):
                out[n] = part.clone()
        else:
            out[theirs] = tensor.reshape(1, -1).clone() if name == "output_bias" else tensor.clone()
    if family.objective == "classification" and not config.token_types:  # HF's BERT always adds a type vector
        out[f"{family.base}embeddings.token_type_embeddings.weight"] = torch.zeros(1, config.d_model)
    if family.objective == "seq2seq":
        if "final_logits_bias" not in out:
            out["final_logits_bias"] = torch.zeros(1, config.tgt_vocab_size)
        shared = out["model.shared.weight"]
        for alias in family.aliases:
            out[alias] = shared.clone()
    if family.derived == SINUSOIDS:  # the table transformers computes too, written so that nothing is "missing"
        for name in family.derived:
            out[name] = sinusoidal_halves_table(config.max_positions, config.d_model)
    return out


def family_for(config: ModelConfig, objective: str) -> Family:
    """The family an export of our model takes: the one whose switches it has, else the nearest."""
    if objective == "classification":
        if config.position_offset:
            return FAMILIES["roberta"]
        return FAMILIES["bert"]
    if config.norm_first:  # ours by default: pre-LN with final LayerNorms, as Pegasus
        return FAMILIES["pegasus"]
    if config.positional == "sinusoidal_halves" or not config.embed_norm:
        return FAMILIES["marian"]
    return FAMILIES["bart"]


def check_exportable(config: ModelConfig, family: Family) -> None:
    """What the family cannot express is refused in one line (ours are pre-LN and mean-pooled by default)."""
    problems = []
    pre_ln = family.model_type == "pegasus"
    if config.norm_first != pre_ln:
        problems.append(f"norm_first={str(config.norm_first).lower()}: the family is {'pre' if pre_ln else 'post'}-LN")
    if config.copy_attention:
        problems.append("copy_attention=true")
    if family.objective == "classification":
        if config.pooling != "pooler":
            problems.append(f"pooling={config.pooling} (the family pools with its pooler)")
        if config.scale_embeddings or config.positional != "learned" or not config.embed_norm:
            problems.append("embeddings without its layout (scale_embeddings=false, positional=learned, embed_norm)")
    else:
        if not config.share_embeddings or not config.tie_output:
            problems.append("separate embeddings (the family shares one)")
        want = ("learned",) if family.model_type == "bart" else SINUSOIDAL
        if config.positional not in want:
            problems.append(f"positional={config.positional} ({family.model_type} has {' or '.join(want)})")
        decoder_scale = config.decoder_scale_embeddings
        if decoder_scale is not None and decoder_scale != config.scale_embeddings:
            problems.append("decoder_scale_embeddings differs from scale_embeddings (the family has one scale)")
        if config.layer_norm_eps != LAYER_NORM_EPS:
            problems.append(
                f"layer_norm_eps={config.layer_norm_eps:g} (the family's LayerNorms have {LAYER_NORM_EPS:g})"
            )
        if family.model_type != "bart" and config.embed_norm:
            problems.append(f"embed_norm=true ({family.model_type} has no LayerNorm on the embeddings)")
        if config.positional == "sinusoidal" and config.d_model % 2:
            problems.append(f"positional=sinusoidal with an odd d_model={config.d_model}")
        if family.model_type == "bart" and (config.position_offset != 2 or not config.embed_norm):
            problems.append("position_offset=2 and embed_norm=true (BART's embeddings)")
    if family.model_type == "roberta" and config.position_offset != config.pad_id + 1:
        problems.append(f"position_offset={config.position_offset} (RoBERTa's positions start at pad_id + 1)")
    if problems:
        raise ConfigError(
            f"format=hf writes {family.model_type} models, which this one is not: {'; '.join(problems)}. Train it "
            f"with those settings (or start from init_from=hf:...) to export it in this format"
        )


SINUSOIDAL = ("sinusoidal", "sinusoidal_halves")
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which BART's, Marian's and Pegasus' layers use (no config key)


def residual_permutation(d_model: int) -> Tensor:
    """The order of the D residual features that turns our sinusoid table (sin, cos of each frequency side by
    side) into Marian's and Pegasus' (all sines, then all cosines): new feature j is old feature perm[j]."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


# Each tensor of ours that reads or writes the residual stream, and its dimension of D features (suffix -> dim).
RESIDUAL_DIMS = {
    "embed.tokens.weight": 1,  # (V, D); tied to the output projection
    "output.weight": 1,
    "norm.weight": 0,  # every LayerNorm, in the blocks and the final ones
    "norm.bias": 0,
    "in_proj.weight": 1,  # (3D, D): reads the stream (or the encoder's memory, permuted alike)
    "out_proj.weight": 0,  # (D, D): writes the stream; its input (the heads') is untouched
    "out_proj.bias": 0,
    "fc1.weight": 1,
    "fc2.weight": 0,
    "fc2.bias": 0,
}


def permute_residual(state: dict[str, Tensor], perm: Tensor) -> dict[str, Tensor]:
    """The same model with its residual features reordered by `perm`: every LayerNorm is invariant to the order,
    and every other tensor that reads or writes the stream is reordered along that side, so the logits are
    unchanged while the positional table a model adds is reordered (pre-LN or post-LN alike)."""
    out = {}
    for name, tensor in state.items():
        dim = next((d for suffix, d in RESIDUAL_DIMS.items() if name.endswith(suffix)), None)
        out[name] = tensor if dim is None else tensor.index_select(dim, perm.to(tensor.device))
    return out


def write_pretrained(
    folder: Path,
    config: ModelConfig,
    state: dict[str, Tensor],
    objective: str,
    src_tokenizer: Tokenizer,
    tgt_tokenizer: Tokenizer,
    label_names: list[str],
) -> Family:
    """config.json, model.safetensors and the tokenizer files that transformers reads. Returns the family."""
    from safetensors.torch import save_file

    family = family_for(config, objective)
    check_exportable(config, family)
    values = hf_config(family, config, label_names)
    if family.derived == SINUSOIDS and config.positional == "sinusoidal":  # ours interleaves sin and cos
        state = permute_residual(state, residual_permutation(config.d_model))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    if family.objective == "seq2seq":  # what generate() starts and stops with: ours, not the family's defaults
        keys = ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id", "forced_eos_token_id")
        generation = {key: values[key] for key in keys}
        (folder / "generation_config.json").write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n")
    save_file(to_theirs(family, state, config), folder / "model.safetensors", metadata={"format": "pt"})
    write_tokenizer(folder, family, src_tokenizer, tgt_tokenizer)
    return family


TOKEN_NAMES = {"pad": "pad_token", "unk": "unk_token", "eos": "eos_token", "bos": "bos_token", "mask": "mask_token"}


def write_tokenizer(folder: Path, family: Family, src: Tokenizer, tgt: Tokenizer) -> None:
    """The tokenizer in the files AutoTokenizer reads: tokenizer.json (+ tokenizer_config.json), or Marian's."""
    if isinstance(src, SentencePieceTokenizer) and src is tgt:  # ours: the same tokenizer as tokenizer.json
        src = tgt = sentencepiece_as_hf(src)
    if isinstance(src, MarianTokenizer) and isinstance(tgt, MarianTokenizer):
        (folder / "source.spm").write_bytes(src.spm_model())
        (folder / "target.spm").write_bytes(tgt.spm_model())
        (folder / "vocab.json").write_text(json.dumps(src.vocab, ensure_ascii=False))
        piece = src.id_to_piece
        tok_config = {
            "tokenizer_class": "MarianTokenizer",
            "pad_token": piece(src.pad_id),
            "unk_token": piece(src.unk_id),
            "eos_token": piece(src.eos_id),
            "separate_vocabs": False,
        }
    elif isinstance(src, HFTokenizer) and src is tgt:
        (folder / "tokenizer.json").write_text(src.tokenizer_json())
        piece = src.id_to_piece
        ids = {"pad": src.pad_id, "unk": src.unk_id, "bos": src.bos_id, "eos": src.eos_id, "mask": src.mask_id}
        tok_config = {"tokenizer_class": "PreTrainedTokenizerFast"}
        tok_config.update({TOKEN_NAMES[k]: piece(i) for k, i in ids.items() if i is not None})
        if family.objective == "classification":
            tok_config.update(cls_token=piece(src.bos_id), sep_token=piece(src.eos_id))
    else:
        raise ConfigError(
            "format=hf writes the tokenizer as tokenizer.json or Marian's files; this checkpoint's separate source "
            "and target SentencePiece tokenizers have neither form: train with one shared tokenizer to export"
        )
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n")


def merged_config(pretrained: Pretrained, run: ModelConfig, num_classes: int) -> ModelConfig:
    """The model of a run that starts from `pretrained`: its architecture, with the run's execution settings."""
    return replace(
        pretrained.model,
        num_classes=num_classes,
        backend=run.backend,
        activation_checkpointing=run.activation_checkpointing,
    )
