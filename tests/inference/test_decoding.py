"""Generation options: n-best lists with scores, sampling (temperature, top-k, top-p, seeds), repeated n-gram
blocking; and predict.py's n-best lines and interactive mode."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import ROOT, TINY_RUN, run_script

from transformer import EncoderDecoder, ModelConfig
from transformer.decoding import (
    DecodingConfig,
    Sampler,
    ban_repeated_ngrams,
    beam_search,
    generate,
    greedy_search,
    mix_seed,
)
from transformer.errors import ConfigError, UserError
from transformer.inference import predict

PAD, BOS, EOS = 0, 2, 3


def peaked_model(seed: int = 0, **overrides) -> EncoderDecoder:
    """A tiny random model with sharp distributions: varied lengths, early EOS, and repetitions."""
    torch.manual_seed(seed)
    model = EncoderDecoder(ModelConfig.named("tiny", vocab_size=50, dropout=0.0, **overrides))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model.eval()


def random_batch(lengths: list[int], seed: int = 0) -> torch.Tensor:
    """Right-padded (B, max(lengths)) ids avoiding the special ids 0-3."""
    g = torch.Generator().manual_seed(seed)
    batch = torch.full((len(lengths), max(lengths)), PAD)
    for i, n in enumerate(lengths):
        batch[i, :n] = torch.randint(4, 50, (n,), generator=g)
    return batch


def forced_score(model: EncoderDecoder, src_row: torch.Tensor, tokens: list[int], length_penalty: float) -> float:
    """sum log p(tokens + EOS | src) / (len + 1)**length_penalty, by teacher forcing (no cache, no search)."""
    src = src_row[src_row.ne(PAD)][None]
    with torch.no_grad():
        logp = model(src, torch.tensor([[BOS, *tokens]])).float().log_softmax(-1)[0]  # (T, V)
    target = [*tokens, EOS]
    return float(sum(logp[i, t] for i, t in enumerate(target))) / len(target) ** length_penalty


def has_repeat(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("copy_attention", [False, True])
def test_nbest_is_sorted_scored_as_forced_decoding_and_led_by_beam_searchs_best(copy_attention):
    model = peaked_model(copy_attention=copy_attention)
    src = random_batch([6, 3, 5, 8], seed=1)
    config = DecodingConfig(beam_size=4, nbest=4, length_penalty=1.0, max_len_a=1.0, max_len_b=5)
    nbest = generate(model, src, BOS, EOS, config)
    best = beam_search(model, src, BOS, EOS, beam_size=4, length_penalty=1.0, max_len_a=1.0, max_len_b=5)
    for i, hyps in enumerate(nbest):
        scores = [score for score, _ in hyps]
        assert len(hyps) == 4 and len({tuple(tokens) for _, tokens in hyps}) == 4
        assert scores == sorted(scores, reverse=True)
        assert hyps[0][1] == best[i]
        for score, tokens in hyps:
            assert score == pytest.approx(forced_score(model, src[i], tokens, 1.0), abs=1e-4)


def test_greedy_scores_match_forced_decoding_and_greedy_is_beam_one():
    model = peaked_model()
    src = random_batch([6, 3, 5, 1, 8], seed=3)
    config = DecodingConfig(beam_size=1, length_penalty=0.5, max_len_a=1.0, max_len_b=4)
    outputs = generate(model, src, BOS, EOS, config)
    assert [hyps[0][1] for hyps in outputs] == greedy_search(model, src, BOS, EOS, max_len_a=1.0, max_len_b=4)
    for i, [(score, tokens)] in enumerate(outputs):
        assert score == pytest.approx(forced_score(model, src[i], tokens, 0.5), abs=1e-4)


def test_sampling_is_reproducible_under_a_seed_and_independent_of_the_batch():
    model = peaked_model()
    src = random_batch([6, 3, 5, 8], seed=2)
    config = DecodingConfig(sampling=True, nbest=3, temperature=1.5, seed=7, max_len_a=1.0, max_len_b=6)
    first, again = generate(model, src, BOS, EOS, config), generate(model, src, BOS, EOS, config)
    assert first == again
    other = generate(model, src, BOS, EOS, replace(config, seed=8))
    assert other != first  # 12 samples of up to 14 tokens from 50 at temperature 1.5: equal only by a fluke
    for hyps in first:
        assert [score for score, _ in hyps] == sorted((score for score, _ in hyps), reverse=True)
    # each row draws from its own seed: alone, or next to other rows, it samples the same outputs
    seeds = [mix_seed(7, i) for i in range(4)]
    batched = generate(model, src, BOS, EOS, config, seeds=seeds)
    alone = generate(model, src[2:3, :5], BOS, EOS, config, seeds=seeds[2:3])
    assert [tokens for _, tokens in batched[2]] == [tokens for _, tokens in alone[0]]
    assert [score for score, _ in batched[2]] == pytest.approx([score for score, _ in alone[0]], abs=1e-5)
    # scores are the model's log-probabilities (not the tempered ones), as for search
    for i, hyps in enumerate(batched):
        for score, tokens in hyps:
            assert score == pytest.approx(forced_score(model, src[i], tokens, 1.0), abs=1e-4)


def test_sampling_with_top_k_one_or_a_tiny_nucleus_is_greedy():
    model = peaked_model()
    src = random_batch([6, 3, 5], seed=4)
    greedy = greedy_search(model, src, BOS, EOS, max_len_a=1.0, max_len_b=4)
    for narrow in ({"top_k": 1}, {"top_p": 1e-6}):
        config = DecodingConfig(sampling=True, seed=0, max_len_a=1.0, max_len_b=4, **narrow)
        assert [hyps[0][1] for hyps in generate(model, src, BOS, EOS, config)] == greedy


def test_sampler_restricts_and_draws_from_the_right_distribution():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = p.log()[None]
    close = lambda a, b: torch.testing.assert_close(a, torch.tensor(b)[None], atol=1e-6, rtol=0)  # noqa: E731
    close(Sampler([0]).probabilities(logits), [0.5, 0.3, 0.15, 0.05])
    close(Sampler([0], top_k=2).probabilities(logits), [0.625, 0.375, 0.0, 0.0])
    close(Sampler([0], top_p=0.7).probabilities(logits), [0.625, 0.375, 0.0, 0.0])  # 0.5 + 0.3 reach 0.7
    close(Sampler([0], top_p=0.85).probabilities(logits), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0])
    squared = (p**2 / (p**2).sum()).tolist()
    close(Sampler([0], temperature=0.5).probabilities(logits), squared)
    draws = Sampler([123], temperature=0.5).draw(logits.expand(20000, 4), torch.zeros(20000, dtype=torch.long))
    frequencies = torch.bincount(draws, minlength=4).float() / 20000
    torch.testing.assert_close(frequencies, torch.tensor(squared), atol=0.015, rtol=0)  # 3 sigma is ~0.01


def test_ban_repeated_ngrams_blocks_exactly_the_completing_tokens():
    def banned(tokens: list[int], n: int) -> list[int]:
        logp = torch.zeros(1, 10)
        ban_repeated_ngrams(logp, torch.tensor([tokens]), n)
        return logp[0].isinf().nonzero().flatten().tolist()

    assert banned([5, 6, 5], 2) == [6]  # "5 6" exists: after 5, 6 is banned
    assert banned([5, 6, 7, 5, 6], 3) == [7]
    assert banned([5, 6, 7, 5, 8], 3) == []
    assert banned([5, 6, 5, 7, 5], 2) == [6, 7]
    assert banned([4, 9, 4], 1) == [4, 9]
    assert banned([5, 6], 3) == [] and banned([5, 6, 5], 0) == []


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeated_ngram_is_ever_emitted_by_greedy_beam_or_sampling(n):
    model = peaked_model(seed=1)
    src = random_batch([9, 12, 7, 10, 11, 8], seed=5)
    base = dict(max_len_a=2.0, max_len_b=10, min_len=12)  # long outputs, where repetition is likely
    searches = [DecodingConfig(beam_size=1, **base), DecodingConfig(beam_size=4, nbest=4, **base),
                DecodingConfig(sampling=True, nbest=3, seed=0, **base)]  # fmt: skip
    for config in searches:
        free = [tokens for hyps in generate(model, src, BOS, EOS, config) for _, tokens in hyps]
        assert any(has_repeat(tokens, n) for tokens in free), "the model must repeat for the test to mean anything"
        blocked = generate(model, src, BOS, EOS, replace(config, no_repeat_ngram_size=n))
        for hyps in blocked:
            for _, tokens in hyps:
                assert not has_repeat(tokens, n), (config, tokens)


def test_decoding_config_rejects_impossible_settings():
    with pytest.raises(ConfigError, match="nbest=5 must be between 1 and decoding.beam_size=4"):
        DecodingConfig(beam_size=4, nbest=5)
    DecodingConfig(beam_size=1, nbest=5, sampling=True)  # sampling draws as many as asked
    impossible = [({"temperature": 0.0}, "temperature=0.0 is outside"), ({"top_k": -1}, "top_k must be >= 0"),
                  ({"top_p": 0.0}, "top_p=0.0 is outside"), ({"top_p": 1.5}, "top_p=1.5 is outside")]  # fmt: skip
    for bad, reason in impossible:
        with pytest.raises(ConfigError, match=reason):
            DecodingConfig(**bad)
    with pytest.raises(ConfigError, match="no_repeat_ngram_size"):
        DecodingConfig(no_repeat_ngram_size=-1)


DEGENERATE = [
    # (setting, part of the one-line reason): values that once gave NaN probabilities or a wrong length budget
    ({"temperature": 1e-300}, "decoding.temperature=1e-300 is outside [0.01, 100]"),
    ({"temperature": -1.5}, "decoding.temperature=-1.5 is outside [0.01, 100]"),
    ({"temperature": 1e300}, "decoding.temperature=1e+300 is outside [0.01, 100]"),
    ({"temperature": math.nan}, "decoding.temperature=nan is outside [0.01, 100]"),
    ({"top_p": 1e-300}, "decoding.top_p=1e-300 is outside [1e-06, 1]"),
    ({"top_p": math.nan}, "decoding.top_p=nan is outside [1e-06, 1]"),
    ({"max_len_a": 1e308}, "decoding.max_len_a=1e+308 is outside [0, 100]"),
    ({"max_len_a": -0.5}, "decoding.max_len_a=-0.5 is outside [0, 100]"),
    ({"max_len_a": math.inf}, "decoding.max_len_a=inf is outside [0, 100]"),
    ({"max_len_b": 10**30}, "decoding.max_len_b=1000000000000000000000000000000 is outside [0, 100000]"),
    ({"max_len_b": -1}, "decoding.max_len_b=-1 is outside [0, 100000]"),
    ({"length_penalty": 1e300}, "decoding.length_penalty=1e+300 is outside [-10, 10]"),
    ({"length_penalty": -11}, "decoding.length_penalty=-11 is outside [-10, 10]"),
    ({"length_penalty": math.nan}, "decoding.length_penalty=nan is outside [-10, 10]"),
]


@pytest.mark.parametrize(("setting", "reason"), DEGENERATE, ids=[r.split(" is")[0] for _, r in DEGENERATE])
def test_decoding_config_bounds_numerically_degenerate_settings(setting, reason):
    with pytest.raises(ConfigError) as caught:
        DecodingConfig(sampling=True, **setting)
    assert str(caught.value).startswith(reason) and "\n" not in str(caught.value)


@pytest.mark.slow  # decodes to the length budget's edge (max_len_b=100000 meets max_positions): ~40 s
def test_the_bounds_keep_every_setting_they_allow_finite():
    """At the edges of the bounds, sampling still draws from finite probabilities and budgets stay in range."""
    model = peaked_model()
    src = random_batch([6, 3, 5], seed=4)
    edges = [{"temperature": 0.01, "top_p": 1e-6}, {"temperature": 100.0}, {"max_len_a": 100.0, "max_len_b": 100000},
             {"length_penalty": -10.0}, {"length_penalty": 10.0}]  # fmt: skip
    for edge in edges:
        config = DecodingConfig(sampling=True, seed=0, nbest=2, **edge)
        for hyps in generate(model, src, BOS, EOS, config):
            assert all(math.isfinite(score) for score, _ in hyps), (edge, hyps)


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory) -> Path:
    """A tiny translation run: a few steps, enough for predict.py to load and answer."""
    root = tmp_path_factory.mktemp("decoding")
    result = run_script("train.py", "task=translation", *TINY_RUN, "trainer.max_steps=4",
                        f"paths.cache_dir={root / 'cache'}", f"hydra.run.dir={root / 'run'}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run"


def test_predict_prints_the_nbest_hypotheses_and_seeded_samples(translation_run, compose_config):
    def predict_lines(*overrides: str, stdin: list[str] | None = None) -> list[str]:
        return predict(compose_config("predict", [f"ckpt={translation_run}", *overrides]), stdin=stdin)

    text = "text='Two dogs run in the park.'"
    lines = [line.split("\t") for line in predict_lines(text, "decoding.beam_size=3", "decoding.nbest=3")]
    assert [line[0] for line in lines] == ["0", "0", "0"]
    scores = [float(line[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    assert predict_lines(text, "decoding.beam_size=3") == [lines[0][2]]  # the n-best list leads with the best

    sample = ["decoding.sampling=true", "decoding.seed=3", "decoding.nbest=2", "decoding.top_p=0.9"]
    stdin = ["a dog\n", "\n", "the cat sleeps\n"]
    one_by_one = predict_lines(*sample, "batch_size=1", stdin=stdin)
    assert predict_lines(*sample, "batch_size=1", stdin=stdin) == one_by_one
    assert [line.split("\t")[0] for line in one_by_one] == ["0", "0", "", "2", "2"]
    # a line's samples depend on the seed and the line's number, not on what shares its batch
    assert predict_lines(*sample, "batch_size=8", stdin=stdin) == one_by_one
    assert predict_lines(*sample[:1], *sample[2:], "batch_size=8", stdin=stdin) != one_by_one  # unseeded: fresh


def test_interactive_predict_answers_each_line_before_the_next_arrives(translation_run, compose_config):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "predict.py"), f"ckpt={translation_run}", "interactive=true"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**env, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    try:
        answers = []
        for line in ("a dog runs", "", "two cats"):
            process.stdin.write(line + "\n")
            process.stdin.flush()
            answers.append(process.stdout.readline())  # blocks until this very line is answered
        process.stdin.close()
        assert process.wait(timeout=60) == 0, process.stderr.read()[-2000:]
    finally:
        process.kill()
    assert answers[1] == "\n" and all(answer.endswith("\n") for answer in answers)
    expected = predict(compose_config("predict", [f"ckpt={translation_run}"]), stdin=["a dog runs", "", "two cats"])
    assert "".join(answers) == "".join(line + "\n" for line in expected)
    assert "ready: type a source text" in process.stderr.read()


def test_interactive_refuses_text_and_input(translation_run, compose_config):
    config = compose_config("predict", [f"ckpt={translation_run}", "interactive=true", "text=hello"])
    with pytest.raises(UserError, match="^interactive=true reads the terminal: drop text= and input=$"):
        predict(config)
