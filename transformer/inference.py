"""Inference from a checkpoint (or a run directory), from the .ckpt file alone (checkpoint.py owns the format):
evaluate(cfg) on a split, predict(cfg) on input lines, the `Predictor` that predict and the server share, and
attend(cfg)'s model runs (the figures are attend_report.py's)."""

from __future__ import annotations

import itertools
import logging
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import Tensor

from transformer.attend import AttentionMaps, pieces, record_attention, stack_layers
from transformer.checkpoint import Artifacts, CheckpointError, open_checkpoint, run_directory, write_json
from transformer.data import encode_split
from transformer.data.batching import evaluation_loader, pad_sequences
from transformer.decoding import DecodingConfig, generate, sampling_seeds
from transformer.ensemble import ensemble
from transformer.errors import UserError
from transformer.hardware import check_accelerator, resolve_precision
from transformer.objectives import restore_module
from transformer.schema import DATASET_OBJECTIVE, AttendConfig, EvaluateConfig, PredictConfig, typed

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Metrics of a checkpoint (or of an ensemble: ckpt=[a,b,...]) on a split; writes metrics_<split>.json
    (ensemble_metrics_<split>.json) and one prediction per line."""
    config: EvaluateConfig = typed(cfg)
    check_accelerator(config.trainer)
    paths = list(config.ckpt) if isinstance(config.ckpt, list | tuple) else [config.ckpt]
    if not paths:
        raise UserError("ckpt=[] names no checkpoint: pass ckpt=<file or run dir> or ckpt=[a.ckpt,b.ckpt]")
    opened = [open_checkpoint(str(p)) for p in paths]
    path, checkpoint = opened[0]
    artifacts = Artifacts.of(checkpoint, path)
    check_ensemble([(p, Artifacts.of(c, p)) for p, c in opened])
    dataset = config.dataset or artifacts.dataset
    if dataset.objective != DATASET_OBJECTIVE[artifacts.objective]:
        raise CheckpointError(
            f"{path} is a {artifacts.task} ({artifacts.objective}) checkpoint, but dataset "
            f"{dataset.name!r} is {dataset.objective}: pass a matching dataset= or checkpoint"
        )
    module = restore_module(checkpoint, config.decoding)
    if len(opened) > 1 and artifacts.objective == "pretrain":
        raise UserError("pretraining checkpoints do not form ensembles: fine-tune them first (init_from=...)")
    if len(opened) > 1:  # the first member's module (decoding settings, metrics) runs the ensemble
        module.model = ensemble([module.model] + [restore_module(c, config.decoding).model for _, c in opened[1:]])
    src_tok, tgt_tok = artifacts.src_tokenizer, artifacts.tgt_tokenizer
    split = encode_split(dataset, config.paths.data_root, config.split, src_tok, tgt_tok, artifacts.label_names)
    loader = evaluation_loader(split, artifacts.objective, tgt_tok, config.batching.eval_max_tokens)

    trainer_kwargs = {"accelerator": "auto", "devices": 1, **config.trainer}
    trainer = pl.Trainer(
        **trainer_kwargs,
        precision=resolve_precision("auto", "gpu" if torch.cuda.is_available() else "cpu"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    results = trainer.test(module, dataloaders=loader, verbose=False)[0]
    metrics = {k.replace("test/", f"{config.split}/", 1): float(v) for k, v in results.items()}
    # by default <run>/evaluate/<checkpoint>/: in the run the checkpoint was found in, beside nothing of training's
    out_dir = Path(config.output_dir) if config.output_dir else run_directory(path) / "evaluate" / path.stem
    prefix = "ensemble_" if len(opened) > 1 else ""  # an ensemble's files never replace its first member's
    written = [out_dir / f"{prefix}metrics_{config.split}.json"]
    write_json(written[0], metrics)
    if artifacts.objective != "pretrain":  # pretraining predicts masked tokens, not outputs to keep
        lines = prediction_lines(module, artifacts)
        written.append(out_dir / f"{prefix}predictions_{config.split}.txt")
        written[1].write_text("".join(line + "\n" for line in lines))
    print(f"wrote {', '.join(p.name for p in written)} to {out_dir}", file=sys.stderr)
    return metrics


def check_fine_tuned(path: Path, artifacts: Artifacts) -> None:
    """predict and attend need a model with outputs: a pretraining checkpoint has none yet."""
    if artifacts.objective == "pretrain":
        raise UserError(
            f"{path} is a pretraining checkpoint, which predicts masked tokens only: fine-tune it on a task first "
            f"(scripts/train.py task=<task> init_from={path}), or score it with scripts/evaluate.py"
        )


def open_fine_tuned(ckpt: str, decoding: dict[str, Any] | None = None) -> tuple[Path, Artifacts, Any]:
    """A fine-tuned checkpoint (or run directory) as (its path, its artifacts, its trained LightningModule in eval
    mode), for predict, attend, export and the server. `decoding`: overrides of the run's decoding settings."""
    path, checkpoint = open_checkpoint(ckpt)
    artifacts = Artifacts.of(checkpoint, path)
    check_fine_tuned(path, artifacts)
    return path, artifacts, restore_module(checkpoint, decoding)


def check_ensemble(members: list[tuple[Path, Artifacts]]) -> None:
    """The members of an ensemble must read and write the same tokens and labels."""
    first_path, first = members[0]
    for path, artifacts in members[1:]:
        if not artifacts.same_data(first):
            raise CheckpointError(
                f"{path} and {first_path} do not share their task, tokenizer and labels, so they cannot form an "
                f"ensemble: ensemble checkpoints trained on the same prepared data"
            )


def prediction_lines(module, artifacts: Artifacts) -> list[str]:
    """Predictions of the last test run, in example order."""
    if artifacts.objective == "classification":
        names = artifacts.label_names
        return [f"{names[label]}\t{prob:.4f}" for _, label, prob in sorted(module.predictions)]
    return [text for _, text in sorted(module.predictions)]


class Predictor:
    """A fine-tuned checkpoint ready to answer texts, for predict.py (batch and interactive) and the server.

    predictor(texts) -> one result per text: {"label", "probability", "probabilities"} (classification), or
    {"output", "score", "nbest": [{"output", "score"}, ...]} (seq2seq; nbest holds decoding.nbest hypotheses,
    best first, scored as beam search scores them), or None for a text that yields no tokens (zero-width or
    control characters only: the tokenizer drops them), which the model never sees. Inputs longer than the model's
    source length are truncated.
    """

    def __init__(self, ckpt: str, decoding: dict[str, Any] | None = None) -> None:
        self.path, self.artifacts, self.module = open_fine_tuned(ckpt, decoding)
        self.objective: str = self.artifacts.objective
        self.label_names: list[str] = self.artifacts.label_names
        self.src_tokenizer, self.tgt_tokenizer = self.artifacts.src_tokenizer, self.artifacts.tgt_tokenizer
        self.max_source_len: int = self.artifacts.max_source_len
        self.decoding: DecodingConfig | None = getattr(self.module, "decoding", None)  # seq2seq only

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Source token ids of each text, before truncation."""
        return self.src_tokenizer.encode(texts)

    @torch.inference_mode()
    def __call__(
        self, texts: list[str], decoding: DecodingConfig | None = None, seeds: list[int] | None = None
    ) -> list[dict[str, Any] | None]:
        """Results for texts; decoding replaces the checkpoint's settings, seeds (one per text) fix the sampling
        draws of each text whatever else shares its batch. A text without tokens gets None: an all-padding row
        would give NaN (a classifier's pooling over nothing, a decoder attending to nothing) and, in a decoding
        batch, fail its neighbours."""
        ids = [row[: self.max_source_len] for row in self.encode(texts)]
        rows = [i for i, row in enumerate(ids) if row]
        results: list[dict[str, Any] | None] = [None] * len(texts)
        if not rows:
            return results
        src = pad_sequences([ids[i] for i in rows], self.src_tokenizer.pad_id)  # (B, S)
        if self.objective == "classification":
            answers = self.classify(src)
        else:
            answers = self.generate(src, decoding or self.decoding, None if seeds is None else [seeds[i] for i in rows])
        for i, answer in zip(rows, answers, strict=True):
            results[i] = answer
        return results

    def classify(self, src: Tensor) -> list[dict[str, Any]]:
        probs = self.module(src).float().softmax(-1)  # (B, C)
        self.check_finite(probs.isfinite().all(), "probabilities")
        results = []
        for row in probs.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            results.append(
                {
                    "label": self.label_names[best],
                    "probability": row[best],
                    "probabilities": dict(zip(self.label_names, row, strict=True)),
                }
            )
        return results

    def generate(self, src: Tensor, decoding: DecodingConfig, seeds: list[int] | None) -> list[dict[str, Any]]:
        tok = self.tgt_tokenizer
        c = self.module.model.config
        outputs = generate(self.module.model, src, c.start_id, c.eos_id, decoding, seeds)
        # beam search finishes only hypotheses with finite scores: none at all means the model gave NaN
        self.check_finite(all(hyps and all(math.isfinite(score) for score, _ in hyps) for hyps in outputs), "scores")
        results = []
        for hyps in outputs:
            nbest = [{"output": tok.decode(tokens), "score": score} for score, tokens in hyps]
            results.append({"output": nbest[0]["output"], "score": nbest[0]["score"], "nbest": nbest})
        return results

    def check_finite(self, finite: bool | Tensor, what: str) -> None:
        """No NaN is ever returned as a probability or a score: a model that gives one has damaged weights."""
        if not finite:
            raise CheckpointError(
                f"{self.path} gives non-finite {what} (NaN or inf) on real text: its weights are damaged; use an "
                f"earlier checkpoint of the run, or retrain"
            )

    def lines(self, result: dict[str, Any] | None, number: int) -> list[str]:
        """predict.py's output lines for one result: `label<TAB>probability`, the output text, or with
        decoding.nbest > 1 one `number<TAB>score<TAB>output` line per hypothesis (fairseq's H lines); one empty
        line for no result (an input without tokens)."""
        if result is None:
            return [""]
        if self.objective == "classification":
            return [f"{result['label']}\t{result['probability']:.4f}"]
        if len(result["nbest"]) == 1:
            return [result["output"]]
        return [f"{number}\t{hyp['score']:.4f}\t{hyp['output']}" for hyp in result["nbest"]]


def predict(cfg: DictConfig, stdin: Iterable[str] | None = None) -> list[str]:
    """Label with probability (classification) or generated text (seq2seq) for each input line, in order; an
    empty input line, or one without tokens (said on stderr), gives an empty output line. With interactive=true,
    answers each line of standard input as soon as it is read, and returns nothing."""
    config: PredictConfig = typed(cfg)
    if config.batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {config.batch_size}")
    if config.interactive and (config.text is not None or config.input is not None):
        raise UserError("interactive=true reads the terminal: drop text= and input=")
    texts = [] if config.interactive else read_inputs(config.text, config.input, stdin)
    predictor = Predictor(config.ckpt, config.decoding)
    if config.interactive:
        interact(predictor, sys.stdin if stdin is None else stdin)
        return []
    outputs: list[str] = []
    todo = [i for i, text in enumerate(texts) if text.strip()]  # an empty line is echoed as an empty line
    answers: dict[int, list[str]] = {}
    for start in range(0, len(todo), config.batch_size):
        rows = todo[start : start + config.batch_size]
        results = predictor([texts[i] for i in rows], seeds=sampling_seeds(predictor.decoding, rows))
        for i, result in zip(rows, results, strict=True):
            if result is None:
                say_no_tokens(f"input line {i + 1}")
            answers[i] = predictor.lines(result, i)
    for i in range(len(texts)):
        outputs += answers.get(i, [""])
    return outputs


def say_no_tokens(where: str) -> None:
    print(
        f"{where} yields no tokens (only characters the tokenizer drops, such as zero-width or control characters): "
        f"its output is an empty line",
        file=sys.stderr,
    )


def interact(predictor: Predictor, lines: Iterable[str]) -> None:
    """Answer each line as soon as it arrives (a `> ` prompt on stderr when it is a terminal), until end of input."""
    prompt = sys.stdin.isatty() and lines is sys.stdin
    kind = "text" if predictor.objective == "classification" else "source text"
    print(f"ready: type a {kind} and press Enter; Ctrl-D ends", file=sys.stderr, flush=True)
    iterator = iter(lines)
    for number in itertools.count():
        if prompt:
            print("> ", end="", file=sys.stderr, flush=True)
        line = next(iterator, None)
        if line is None:
            break
        text = line.rstrip("\n")
        result = predictor([text], seeds=sampling_seeds(predictor.decoding, [number]))[0] if text.strip() else None
        if text.strip() and result is None:
            say_no_tokens("this line")
        answer = predictor.lines(result, number)
        print("\n".join(answer), flush=True)


def read_inputs(text: str | None, input_file: str | None, stdin: Iterable[str] | None) -> list[str]:
    """`text`, else the lines of `input_file`, else the lines of standard input."""
    if text is not None:
        return [str(text)]
    if input_file is not None:
        path = Path(input_file)
        if not path.is_file():
            raise UserError(f"input file {path} does not exist: pass input=<text file, one line each>")
        try:
            return path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise not_text(f"input file {path}", error) from None
        except OSError as error:
            raise UserError(
                f"cannot read input file {path} ({error.strerror or error}): check its permissions"
            ) from None
    try:
        return [line.rstrip("\n") for line in (stdin if stdin is not None else sys.stdin)]
    except UnicodeDecodeError as error:
        raise not_text("standard input", error) from None


def not_text(what: str, error: UnicodeDecodeError) -> UserError:
    byte = error.object[error.start : error.start + 1].hex()
    return UserError(
        f"{what} is not UTF-8 text (byte 0x{byte} at offset {error.start}: {error.reason}): pass a text file, one "
        f"input per line (convert it with iconv -t UTF-8)"
    )


@torch.inference_mode()
def attention_maps(module, artifacts: Artifacts, text: str, target: str | None = None) -> AttentionMaps:
    """Run a trained LightningModule (restore_module) on `text` and record its attention. For seq2seq, the output
    is the module's own (its decoding settings) unless `target` is given, which is then force-decoded."""
    src_ids = artifacts.src_tokenizer.encode([text])[0][: artifacts.max_source_len]
    if not src_ids:
        raise UserError(
            f"the input text {text!r} yields no tokens (it is empty, or holds only characters the tokenizer drops): "
            f'pass text="..." with at least one word'
        )
    out_ids = None
    if target is not None:
        out_ids = artifacts.tgt_tokenizer.encode_target([target])[0][: module.model.config.max_length - 1]
    return maps_of_ids(module, artifacts, src_ids, out_ids)


@torch.inference_mode()
def maps_of_ids(module, artifacts: Artifacts, src_ids: list[int], out_ids: list[int] | None = None) -> AttentionMaps:
    """attention_maps on token ids: `src_ids` without special tokens; `out_ids` (seq2seq) the output to
    force-decode, or None for the module's own decoding."""
    src_tok, tgt_tok = artifacts.src_tokenizer, artifacts.tgt_tokenizer
    model = module.model
    device = next(model.parameters()).device
    src = pad_sequences([list(src_ids)], src_tok.pad_id).to(device)  # (1, S)
    source = pieces(src_tok, src_ids)
    if artifacts.objective == "classification":
        with record_attention(model) as recorded:
            probs = model(src).float().softmax(-1)[0]  # (C,)
        names = artifacts.label_names or [str(i) for i in range(probs.numel())]
        return AttentionMaps(
            objective="classification",
            source=source,
            encoder=stack_layers(recorded, "encoder").cpu(),
            prediction=names[int(probs.argmax())],
            probabilities={name: float(p) for name, p in zip(names, probs.tolist(), strict=False)},
            pooling=model.config.pooling,
        )
    bos, eos = model.config.start_id, model.config.eos_id
    if out_ids is None:  # the model's own best output, by the run's decoding settings (sampling included)
        out_ids = generate(model, src, bos, eos, module.decoding)[0][0][1]
    tgt_in = torch.tensor([[bos, *out_ids]], device=device)  # (1, T)
    with record_attention(model) as recorded:
        model(src, tgt_in)
    return AttentionMaps(
        objective="seq2seq",
        source=source,
        encoder=stack_layers(recorded, "encoder").cpu(),
        decoder=stack_layers(recorded, "decoder").cpu(),
        cross=stack_layers(recorded, "cross").cpu(),
        prediction=tgt_tok.decode(out_ids),
        target=[*pieces(tgt_tok, out_ids), "</s>"],
        target_in=["<s>", *pieces(tgt_tok, out_ids)],
    )


def attend(cfg: DictConfig, stdin: Iterable[str] | None = None) -> list[Path]:
    """Attention maps of a checkpoint on each input (attention_maps): PNGs, attention.json and
    attention.html in output_dir (one input) or output_dir/<line number>/ (several). Returns the files written."""
    from transformer.attend_report import write_report  # matplotlib: only when drawing

    config: AttendConfig = typed(cfg)
    texts = [t for t in read_inputs(config.text, config.input, stdin) if t.strip()]
    if not texts:
        raise UserError('no input text: pass text="...", input=<file> or lines on standard input')
    path, artifacts, module = open_fine_tuned(config.ckpt, config.decoding)
    if config.target is not None and (artifacts.objective != "seq2seq" or len(texts) != 1):
        raise UserError(
            "target= force-decodes one given output: use it with one text= and a translation or summarization "
            "checkpoint"
        )
    if artifacts.objective == "seq2seq":
        layers = artifacts.model.n_decoder_layers
        if config.alignment_layer is not None and not -layers <= config.alignment_layer < layers:
            raise UserError(
                f"alignment_layer={config.alignment_layer} does not exist: the decoder has {layers} layers "
                f"(0..{layers - 1}, or negative from the last)"
            )
    written: list[Path] = []
    out = Path(config.output_dir) if config.output_dir else attention_dir(path, texts, config.input)
    for number, text in enumerate(texts, start=1):
        maps = attention_maps(module, artifacts, text, config.target)
        folder = out if len(texts) == 1 else out / f"{number:03d}"
        written += write_report(maps, folder, words=config.words, alignment_layer=config.alignment_layer)
        print(f"{text!r} -> {maps.prediction!r}: {folder}", file=sys.stderr)
    return written


def attention_dir(checkpoint: Path, texts: list[str], input_file: str | None) -> Path:
    """attend's default output_dir: <run>/attention/<the text's words> (several inputs: <the input file's name>,
    or stdin), in the run the checkpoint was found in."""
    name = texts[0] if len(texts) == 1 else Path(input_file).stem if input_file else "stdin"
    slug = "-".join(re.findall(r"\w+", name.lower()))[:48].strip("-") or "text"
    return run_directory(checkpoint) / "attention" / slug
