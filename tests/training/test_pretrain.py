"""task=pretrain: MLM and denoising batches are corrupted as specified, pretraining runs on text from samples and
local files, its weights and tokenizer go on to fine-tuning (pretrain_run=[...] as one command), and what cannot
work is refused in one line."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_RUN, run_script

from transformer.checkpoint import Artifacts, load_checkpoint, resolve_checkpoint
from transformer.data import DatasetConfig, prepare_dataset, train_tokenizer
from transformer.data.noising import IGNORE, NoiseConfig, Vocabulary, denoise, example_rng, infill, mask_tokens
from transformer.errors import ConfigError
from transformer.schema import typed
from transformer.training.stages import compose_stage, stage_overrides

WORDS = "the a cat dog sat ran on under mat rug happily slowly very big small red green blue".split()


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    sentences = []
    for _ in range(2000):
        parts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) + rng.choice([" .", " !", " ?"])]
        sentences.append(" ".join(parts * rng.randint(1, 3)))
    return train_tokenizer(sentences, 32, mask=True)


@pytest.fixture(scope="module")
def corpus(tokenizer) -> list[list[int]]:
    rng = random.Random(1)
    texts = [" ".join(" ".join(rng.choice(WORDS) for _ in range(6)) + " ." for _ in range(3)) for _ in range(400)]
    return tokenizer.encode(texts)


def test_mlm_masks_fifteen_percent_eighty_ten_ten(tokenizer, corpus):
    vocab, config = Vocabulary.of(tokenizer), NoiseConfig()
    chosen = masked = randomized = kept = total = 0
    for index, ids in enumerate(corpus):
        inputs, labels = mask_tokens(ids, vocab, config, example_rng(0, 0, index))
        ids = np.asarray(ids)
        picked = labels != IGNORE
        assert (labels[picked] == ids[picked]).all() and (inputs[~picked] == ids[~picked]).all()
        assert picked.any()  # every example has a target
        total += len(ids)
        chosen += picked.sum()
        masked += (inputs[picked] == vocab.mask_id).sum()
        kept += (inputs[picked] == ids[picked]).sum()
        randomized += ((inputs[picked] != ids[picked]) & (inputs[picked] != vocab.mask_id)).sum()
    assert 0.14 < chosen / total < 0.16
    # a random replacement can draw the original token (1 in ~35 here): it then counts as kept
    assert 0.77 < masked / chosen < 0.83 and 0.07 < randomized / chosen < 0.12 and 0.08 < kept / chosen < 0.13
    assert not set(np.unique(inputs)) & (set(tokenizer.special_ids()) - {vocab.mask_id})


def test_mlm_whole_word_masks_every_piece_of_a_word(tokenizer, corpus):
    vocab = Vocabulary.of(tokenizer)
    config = NoiseConfig(whole_word=True)
    split_words = 0
    for index, ids in enumerate(corpus[:100]):
        _, labels = mask_tokens(ids, vocab, config, example_rng(0, 0, index))
        words = np.cumsum(vocab.word_start[np.asarray(ids)])
        for word in np.unique(words):
            picked = labels[words == word] != IGNORE
            assert picked.all() or not picked.any()
            split_words += (words == word).sum() > 1
    assert split_words > 0  # the tokenizer does split some words into several pieces


def test_noise_depends_on_seed_epoch_and_example_only(tokenizer, corpus):
    vocab, config = Vocabulary.of(tokenizer), NoiseConfig()
    ids = corpus[0]
    again = [mask_tokens(ids, vocab, config, example_rng(3, 1, 7))[0] for _ in range(2)]
    assert (again[0] == again[1]).all()
    epochs = {tuple(mask_tokens(ids, vocab, config, example_rng(3, e, 7))[0]) for e in range(6)}
    assert len(epochs) > 1  # dynamic masking: each epoch its own corruption


def test_infilling_replaces_word_spans_by_one_mask_each(tokenizer, corpus):
    vocab = Vocabulary.of(tokenizer)
    config = NoiseConfig(infill_random=0.0, permute_sentences=0.0)
    removed = words = 0
    for index, ids in enumerate(corpus):
        noised = infill(np.asarray(ids), vocab, config, example_rng(0, 0, index)).tolist()
        assert noised.count(vocab.mask_id) >= 1
        # the text between the masks is the original's, in order: each <mask> stands for a span (maybe empty)
        pattern = "".join(r"(?: \d+)*" if i == vocab.mask_id else f" {i}" for i in noised)
        assert re.fullmatch(pattern, "".join(f" {i}" for i in ids)), (ids, noised)
        n_words = int(vocab.word_start[np.asarray(ids)].sum())
        words += n_words
        removed += n_words - int(vocab.word_start[np.asarray([i for i in noised if i != vocab.mask_id])].sum())
    assert 0.25 < removed / words < 0.32  # infill_ratio 0.3 of the words, in spans


def test_sentence_permutation_keeps_the_sentences(tokenizer, corpus):
    vocab = Vocabulary.of(tokenizer)
    config = NoiseConfig(infill_ratio=0.0, permute_sentences=1.0)
    moved = 0
    for index, ids in enumerate(corpus[:50]):
        noised = denoise(ids, vocab, config, example_rng(0, 0, index))
        text, original = tokenizer.decode(noised.tolist()), tokenizer.decode(ids)
        assert sorted(s.strip() for s in text.split(".")) == sorted(s.strip() for s in original.split("."))
        moved += text != original
    assert moved > 25  # 3 sentences: 5 of 6 orders differ


def test_noise_config_and_vocabulary_errors(tokenizer):
    with pytest.raises(ConfigError, match="exceeds 1"):
        NoiseConfig(mask_token=0.9, random_token=0.2)
    with pytest.raises(ConfigError, match="nothing to predict"):
        NoiseConfig(mask_prob=0.0)
    plain = train_tokenizer(["the cat sat on the mat ."] * 50, 16)
    with pytest.raises(ConfigError, match="no <mask> piece"):
        Vocabulary.of(plain)


def test_text_files_many_corpora(tmp_path):
    """format: text reads every line of every file a glob matches (several corpora), .gz included."""
    import gzip

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.txt").write_text("the cat sat .\n\nthe dog ran .\n")
    with gzip.open(tmp_path / "raw" / "b.txt.gz", "wt") as f:
        f.write("a red mat .\n" * 30)
    (tmp_path / "raw" / "val.txt").write_text("the cat ran .\n")
    cfg = DatasetConfig(
        name="corpus",
        objective="text",
        format="text",
        local_dir=str(tmp_path / "raw"),
        splits={"train": "[ab].txt*", "validation": "val.txt"},
        tokenizer={"vocab_size": 20},
    )
    data = prepare_dataset(cfg, None, tmp_path / "cache")
    assert len(data.splits["train"]) == 32 and data.src_tokenizer.mask_id == 4  # the empty line is dropped
    assert data.splits["train"][0]["text"] == "the cat sat ."


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pretrain-cache")


PRETRAIN = ["task=pretrain", "trainer.max_steps=6", "dataset.max_examples=300", "dataset.tokenizer.vocab_size=300"]


def test_mlm_pretraining_then_fine_tuning_in_one_command(cache, tmp_path):
    """pretrain_run: MLM first, then the classifier starts from its encoder and reads with its tokenizer; frozen
    embeddings stay exactly the pretrained ones."""
    stage = [f"'{o}'" for o in (*PRETRAIN, "model=tiny", "noise.whole_word=true")]
    run = run_script(
        "train.py", *TINY_RUN, "trainer.max_steps=3", "optim.freeze_embeddings_steps=100", f"paths.cache_dir={cache}",
        f"pretrain_run=[{','.join(stage)}]", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"val/acc", "val/ppl", "val/loss"} <= set(metrics["pretrain"]) and metrics["total_seconds"] > 0
    assert "init_from" in run.stdout + run.stderr and "newly initialized: head" in run.stdout + run.stderr
    pretrained = load_checkpoint(resolve_checkpoint(tmp_path / "pretrain")[0])
    tuned = load_checkpoint(resolve_checkpoint(tmp_path)[0])
    assert pretrained["transformer"]["objective"] == "pretrain"
    assert Artifacts.of(tuned).src_tokenizer == Artifacts.of(pretrained).src_tokenizer  # the <mask> one
    for name in ("model.encoder.embed.tokens.weight", "model.encoder.layers.0.ffn.fc1.weight"):
        same = torch.equal(tuned["state_dict"][name], pretrained["state_dict"][name])
        assert same == ("embed" in name), name  # frozen embeddings kept; the blocks trained on
    init_from = Path(tuned["transformer"]["config"]["init_from"])
    assert init_from == resolve_checkpoint(tmp_path / "pretrain")[0] and init_from.is_relative_to(tmp_path / "pretrain")

    # relaunching the recipe does not pretrain again, and predict refuses the pretraining checkpoint
    again = run_script(
        "train.py", *TINY_RUN, "trainer.max_steps=3", "optim.freeze_embeddings_steps=100", f"paths.cache_dir={cache}",
        f"pretrain_run=[{','.join(stage)}]", f"hydra.run.dir={tmp_path}", "resume=auto",
    )  # fmt: skip
    assert again.returncode == 0 and "pretraining already done" in again.stdout + again.stderr
    refused = run_script("predict.py", f"ckpt={tmp_path / 'pretrain'}", "text=the cat")
    assert refused.returncode == 2 and "pretraining checkpoint" in refused.stderr
    scored = run_script("evaluate.py", f"ckpt={tmp_path / 'pretrain'}", "split=validation", f"output_dir={tmp_path}")
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert {"validation/acc", "validation/ppl"} <= set(json.loads((tmp_path / "metrics_validation.json").read_text()))


def test_denoising_pretraining_initializes_the_whole_encoder_decoder(cache, tmp_path):
    stage = run_script(
        "train.py", *PRETRAIN, "model=tiny", "model.pretrain_objective=denoising", "dataset.sample=translation",
        "~callbacks.progress_bar", "logger=csv", f"paths.cache_dir={cache}", f"hydra.run.dir={tmp_path / 'pre'}",
    )  # fmt: skip
    assert stage.returncode == 0, stage.stderr[-3000:]
    tuned = run_script(
        "train.py", "task=translation", *TINY_RUN, f"paths.cache_dir={cache}", f"init_from={tmp_path / 'pre'}",
        f"hydra.run.dir={tmp_path / 'tuned'}",
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert "0 newly initialized, 0 unused, 0 shape-mismatched" in tuned.stdout + tuned.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task=pretrain", "dataset=sentiment_sample"], "needs a text dataset"),
        (["task=sentiment", "dataset=pretrain_sample"], "needs a classification dataset"),
        (["task=pretrain", "noise.mask_prob=1.5"], "noise.mask_prob must be in"),
        (["task=pretrain", "model.pretrain_objective=clm"], "pretrain_objective"),
    ],
)
def test_bad_pretraining_configs_are_config_errors(args, message, compose_config):
    with pytest.raises(ConfigError, match=message):
        typed(compose_config("train", [*args, "paths.output_dir=/tmp/x"]))


def test_pretrain_run_must_pretrain(compose_config):
    cfg = compose_config("train", ["task=sentiment", "pretrain_run=['task=sentiment']", "paths.output_dir=/tmp/x"])
    with pytest.raises(ConfigError, match="must train task=pretrain"):
        compose_stage(stage_overrides(cfg, Path("/tmp/x/pretrain")))
