"""Beam-search decoding speed: our `beam_search` (KV cache) against `MarianMTModel.generate`, in one process.

    python benchmarks/hf_beam_search.py                 # all modes, fp32 and bf16 autocast (~1-2 minutes)
    python benchmarks/hf_beam_search.py --modes fixed --length 40

Both models have the same dimensions (D=256, 3+3 layers, 4 heads, FFN 1024, vocab 8000, shared and tied
embeddings; built in hf_training_throughput.py) and random weights, and decode a batch of 32 random sources
with beam 5 and length penalty 1.0. HF is set up to stop as we do, fairseq-style: `early_stopping=True` ends a
sentence once it has `num_beams` finished hypotheses, and `forced_eos_token_id` ends every beam at the budget.

Random weights cannot agree on when to stop, and rarely emit EOS at all, so the modes control the work:
  - fixed: every sentence decodes exactly L steps (`--length`). HF: min_new_tokens = max_new_tokens = L.
    Ours: EOS gets a -1e4 logit bias (like Marian's `final_logits_bias` buffer) and the budget is L - 1 tokens,
    after which beam_search forces EOS: L decoder steps too. This is the per-step cost of the two loops.
  - staggered: sources of 8-24 tokens (padded); sentence i decodes exactly src_len_i + 4 tokens, then EOS.
    Ours gets it from its length budget (max_len_a=1, max_len_b=4) with EOS blocked before; HF from a logits
    processor that blocks EOS before that step and forces it there. Here stopping does real work: ours drops
    finished sentences from the batch, HF keeps decoding them (as padding) until the last one is done.
  - natural: nothing forced, both stop on their own rules within the same budget (ours max_len_b=L, HF
    max_new_tokens=L+1 with forced EOS). With random weights both usually run to the budget; the table shows
    the mean decoder steps per sentence so that the workloads can be compared.

Figures are sentences/s, the median over interleaved timed calls (ours, HF, ours, HF, ...) after one warm-up
call each, so drift of a shared machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # configs only, random init: never reach the Hub

import torch
import transformers

# The sibling script, importable because Python puts this script's folder first on sys.path.
from hf_training_throughput import BOS, EOS, FIRST_WORD, PAD, Dims, add_common_args, hf_marian, interleaved, our_config
from torch import Tensor
from transformers import LogitsProcessor, LogitsProcessorList, MarianMTModel

from transformer import EncoderDecoder, ModelConfig, beam_search

BLOCKED = -1e4  # an EOS logit bias that keeps EOS out of the beams but finite, so a forced EOS still scores


class BiasedEncoderDecoder(EncoderDecoder):
    """Our EncoderDecoder with an optional constant added to the logits (as Marian's `final_logits_bias`)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.logits_bias: Tensor | None = None  # (V,), set per mode; None leaves the model unchanged

    def project(self, h: Tensor) -> Tensor:
        logits = super().project(h)
        return logits if self.logits_bias is None else logits + self.logits_bias


class EosAfter(LogitsProcessor):
    """Blocks EOS until row i has generated stop[i] tokens, then forces it. Rows are sentence-major (B*K)."""

    def __init__(self, stop: Tensor, num_beams: int) -> None:
        self.stop = stop.repeat_interleave(num_beams)  # (B*K,)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        generated = input_ids.size(1) - 1  # input_ids start with the decoder start token
        due = self.stop.eq(generated)
        scores[:, EOS] = -float("inf")
        scores[due] = -float("inf")
        scores[due, EOS] = 0.0
        return scores


@dataclass
class Workload:
    """One mode: the sources and how each side is told to decode them."""

    name: str
    src: Tensor  # (B, S) ids, PAD on the right
    ours_kwargs: dict  # max_len_a / max_len_b for beam_search
    ours_bias: Tensor | None  # logits bias for ours (EOS blocking) or None
    hf_kwargs: dict  # extra generate() arguments


def workloads(args: argparse.Namespace, vocab: int, generator: torch.Generator) -> list[Workload]:
    B, L = args.batch, args.length
    fixed_src = torch.randint(FIRST_WORD, vocab, (B, args.src_length), generator=generator)
    block_eos = torch.zeros(vocab)
    block_eos[EOS] = BLOCKED

    src_len = torch.randint(8, 25, (B,), generator=generator)
    staggered_src = torch.randint(FIRST_WORD, vocab, (B, int(src_len.max())), generator=generator)
    staggered_src = staggered_src.masked_fill(torch.arange(staggered_src.size(1))[None] >= src_len[:, None], PAD)
    stop = src_len + 4  # tokens before EOS, as ours computes floor(1 * src_len + 4)

    modes = {
        "fixed": Workload(
            f"fixed L={L}",
            fixed_src,
            dict(max_len_a=0.0, max_len_b=L - 1),
            block_eos,
            dict(min_new_tokens=L, max_new_tokens=L, forced_eos_token_id=None),
        ),
        "staggered": Workload(
            "staggered 12-28",
            staggered_src,
            dict(max_len_a=1.0, max_len_b=4),
            block_eos,
            dict(
                max_new_tokens=int(stop.max()) + 1,
                forced_eos_token_id=None,
                logits_processor=LogitsProcessorList([EosAfter(stop, args.beam)]),
            ),
        ),
        "natural": Workload(
            f"natural <={L}",
            fixed_src,
            dict(max_len_a=0.0, max_len_b=L),
            None,
            dict(max_new_tokens=L + 1, forced_eos_token_id=EOS),
        ),
    }
    return [modes[m] for m in args.modes]


def decode_ours(model: BiasedEncoderDecoder, work: Workload, beam: int, bf16: bool) -> list[int]:
    """Decoder steps per sentence (tokens + EOS)."""
    model.logits_bias = work.ours_bias
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        hyps = beam_search(model, work.src, BOS, EOS, beam_size=beam, length_penalty=1.0, **work.ours_kwargs)
    return [len(h) + 1 for h in hyps]


def decode_hf(model: MarianMTModel, work: Workload, beam: int, bf16: bool) -> list[int]:
    """Decoder steps per sentence: up to and including the first EOS, else all generated tokens."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model.generate(
            input_ids=work.src,
            attention_mask=work.src.ne(PAD).long(),
            num_beams=beam,
            do_sample=False,
            length_penalty=1.0,
            early_stopping=True,
            **work.hf_kwargs,
        )
    steps = []
    for row in out[:, 1:].tolist():  # drop the decoder start token
        steps.append(row.index(EOS) + 1 if EOS in row else len(row))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    parser.add_argument("--batch", type=int, default=32, help="source sentences per call")
    parser.add_argument("--src-length", type=int, default=16)
    parser.add_argument("--length", type=int, default=20, help="decoder steps (fixed) / budget (natural)")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument(
        "--modes", nargs="+", choices=("fixed", "staggered", "natural"), default=["fixed", "staggered", "natural"]
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per contender")
    add_common_args(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dims = Dims(vocab=args.vocab, encoder_layers=args.layers, decoder_layers=args.layers)
    ours = BiasedEncoderDecoder(our_config(dims)).eval()
    hf = hf_marian(dims).eval()
    runs = workloads(args, args.vocab, torch.Generator().manual_seed(0))

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
        f"{args.clock} clock"
    )
    print(f"beam {args.beam}, batch {args.batch}, median of {args.rounds} interleaved calls after one warm-up each")
    print(f"{'mode':<17} {'dtype':<5} {'ours sent/s':>11} {'HF sent/s':>10} {'ours/HF':>8} {'steps ours/HF':>14}")
    for work in runs:
        for bf16 in (False, True):
            calls = {
                "ours": lambda w=work, b=bf16: decode_ours(ours, w, args.beam, b),
                "hf": lambda w=work, b=bf16: decode_hf(hf, w, args.beam, b),
            }
            # The warm-up call also records the decoder steps per sentence (decoding is deterministic).
            ours_steps, hf_steps = (statistics.mean(call()) for call in calls.values())
            rates = interleaved(
                {name: (lambda c=call: len(c())) for name, call in calls.items()}, 0, args.rounds, 1, args.clock
            )
            ours_rate, hf_rate = rates["ours"], rates["hf"]
            dtype = "bf16" if bf16 else "fp32"
            print(
                f"{work.name:<17} {dtype:<5} {ours_rate:>11.1f} {hf_rate:>10.1f} {ours_rate / hf_rate:>7.2f}x "
                f"{ours_steps:>6.1f}/{hf_steps:<6.1f}"
            )


if __name__ == "__main__":
    main()
