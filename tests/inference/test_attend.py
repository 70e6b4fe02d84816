"""Attention maps (transformer/attend.py, scripts/attend.py) and what TensorBoard shows during training.

The maps must be the model's real attention: rows sum to 1, padded keys get 0, causal maps are lower-triangular,
recording does not change the prediction (fused and explicit paths agree), and the teacher-forced maps of a seq2seq
output are those incremental decoding computed step by step. Then the files users open: the PNGs, JSON and HTML
page of scripts/attend.py (the page in headless Chromium), and the TensorBoard event files of a training run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import ROOT, TINY_RUN, run_script

from transformer.attend import (
    AttentionMaps,
    head_summaries,
    merge_words,
    pooled_rollout,
    record_attention,
    rollout,
    stack_layers,
    word_groups,
)
from transformer.config import ModelConfig
from transformer.decoding import greedy_search
from transformer.model import EncoderClassifier, EncoderDecoder

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))


def tiny(backend: str = "explicit", **changes) -> ModelConfig:
    return ModelConfig.named("tiny", vocab_size=50, dropout=0.0, max_positions=64, backend=backend, **changes)


def padded_batch() -> torch.Tensor:
    torch.manual_seed(0)
    src = torch.randint(4, 50, (3, 9))
    src[1, 6:] = 0  # padding (pad_id 0)
    src[2, 3:] = 0
    return src


def test_recorded_weights_are_probabilities_with_zero_on_padding():
    torch.manual_seed(0)
    model = EncoderClassifier(tiny()).eval()
    src = padded_batch()
    with record_attention(model) as recorded:
        model(src)
    assert len(recorded) == model.config.n_encoder_layers
    for weights_list in recorded.values():
        (weights,) = weights_list  # one call per layer: (B, H, S, S)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
        pad = src.eq(0)[:, None, None, :].expand_as(weights)
        assert weights[pad].abs().max() == 0
        assert weights[~pad].min() > 0
    assert all(m.record is None for m in model.modules() if hasattr(m, "record"))  # recording ends with the block


def test_recording_does_not_change_the_prediction_fused_or_explicit():
    torch.manual_seed(0)
    fused = EncoderDecoder(tiny("sdpa")).eval()
    explicit = EncoderDecoder(tiny("explicit")).eval()
    explicit.load_state_dict(fused.state_dict())
    src, tgt_in = padded_batch(), torch.randint(4, 50, (3, 7))
    with torch.no_grad():
        plain = fused(src, tgt_in)
        with record_attention(fused) as recorded:
            recorded_fused = fused(src, tgt_in)
        with record_attention(explicit):
            recorded_explicit = explicit(src, tgt_in)
    torch.testing.assert_close(recorded_fused, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(recorded_explicit, plain, rtol=1e-5, atol=1e-5)
    decoder = stack_layers(recorded, "decoder")  # (L, H, T, T) of the first example: causal
    assert decoder.shape[-2:] == (7, 7)
    assert decoder.triu(diagonal=1).abs().max() == 0
    cross = stack_layers(recorded, "cross")  # (L, H, T, S)
    assert cross.shape[-2:] == (7, 9)
    torch.testing.assert_close(cross.sum(-1), torch.ones(cross.shape[:-1]))


def test_teacher_forced_maps_equal_those_of_incremental_decoding():
    torch.manual_seed(0)
    model = EncoderDecoder(tiny()).eval()
    src = torch.randint(4, 50, (1, 8))
    with record_attention(model) as steps:
        out = greedy_search(model, src, bos_id=2, eos_id=3, max_len_a=0.0, max_len_b=6)[0]
    tgt_in = torch.tensor([[2, *out]])
    with record_attention(model) as forced, torch.no_grad():
        model(src, tgt_in)
    T = tgt_in.size(1)
    for name, calls in forced.items():
        if not name.startswith("decoder."):
            continue
        full = calls[0][0]  # (H, T, K)
        per_step = steps[name]  # one call per decoding step: (1, H, 1, keys so far)
        assert len(per_step) >= T
        for t in range(T):
            row = per_step[t][0, :, 0]  # (H, keys)
            torch.testing.assert_close(full[:, t, : row.size(-1)], row, rtol=1e-4, atol=1e-6)


def test_words_rollout_and_head_summaries():
    tokens = ["▁not", "▁b", "ad", "▁at", "▁all", "."]
    words, groups = word_groups(tokens)
    assert words == ["not", "bad", "at", "all."] and groups == [[0], [1, 2], [3], [4, 5]]
    torch.manual_seed(0)
    encoder = torch.rand(2, 3, 6, 6).softmax(-1)  # (L, H, S, S)
    previous = torch.zeros(6, 6)
    previous[0, 0] = 1
    for i in range(1, 6):
        previous[i, i - 1] = 1
    encoder[1, 0] = previous  # layer 1, head 0 attends to the previous token
    maps = AttentionMaps("classification", tokens, encoder, "positive", pooling="mean")
    merged = merge_words(maps)
    assert merged.source == words and merged.encoder.shape == (2, 3, 4, 4)
    torch.testing.assert_close(merged.encoder.sum(-1), torch.ones(2, 3, 4))
    torch.testing.assert_close(rollout(encoder).sum(-1), torch.ones(6))
    shares = pooled_rollout(maps)
    assert shares.shape == (6,) and abs(float(shares.sum()) - 1) < 1e-5
    summaries = head_summaries(maps, "encoder")
    assert summaries[1][0]["pattern"] == "previous token" and summaries[1][0]["to_previous"] > 0.8
    assert summaries[1][0]["entropy"] < 1e-3 and summaries[0][1]["relative_entropy"] > 0.5


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny sentiment run (TensorBoard logger) and a tiny translation run, a few steps each."""
    root = tmp_path_factory.mktemp("attend")
    made = {}
    for task in ("sentiment", "translation"):
        tensorboard = [arg for arg in TINY_RUN if arg != "logger=csv"]  # the default logger: TensorBoard
        result = run_script(
            "train.py",
            f"task={task}",
            *tensorboard,
            "trainer.max_steps=4",
            f"paths.cache_dir={root / 'cache'}",
            f"hydra.run.dir={root / task}",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        made[task] = root / task
    return made


def test_attend_writes_figures_json_and_page_for_each_task(runs, tmp_path):
    out = tmp_path / "sentiment"
    result = run_script("attend.py", f"ckpt={runs['sentiment']}", "text=not bad at all", "words=true",
                        f"output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "attention.json").read_text())
    assert data["tokens"]["source"] == ["not", "bad", "at", "all"] and data["axes"] == "words"
    encoder = torch.tensor(data["maps"]["encoder"])  # (L, H, S, S)
    torch.testing.assert_close(encoder.sum(-1), torch.ones(encoder.shape[:-1]), atol=1e-4, rtol=0)
    assert abs(sum(data["rollout"]["shares"]) - 1) < 1e-3 and data["prediction"] in data["probabilities"]
    assert len(data["heads"]["encoder"]) == encoder.size(0)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["encoder_layer0.png", "encoder_layer1.png", "rollout.png"]
    assert "<script>" in (out / "attention.html").read_text() and "http" not in (out / "attention.html").read_text()

    out = tmp_path / "translation"
    result = run_script("attend.py", f"ckpt={runs['translation']}", "text='ein Mann fährt Fahrrad .'",
                        "target=a man rides a bike .", f"output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "attention.json").read_text())
    assert data["prediction"] == "a man rides a bike ."
    cross = torch.tensor(data["maps"]["cross"])  # (L, H, T, S)
    assert cross.shape[-2:] == (len(data["tokens"]["target"]), len(data["tokens"]["source"]))
    assert len(data["alignment"]["hard"]) == len(data["tokens"]["target"])
    decoder = torch.tensor(data["maps"]["decoder"])
    assert decoder.triu(diagonal=1).abs().max() == 0
    assert {"alignment.png", "cross_layer1.png", "decoder_layer0.png", "encoder_layer1.png"} <= {
        p.name for p in out.glob("*.png")
    }

    # several inputs on stdin: one folder each; bad requests: one line each
    result = run_script("attend.py", f"ckpt={runs['sentiment']}", f"output_dir={tmp_path / 'many'}",
                        stdin="good\n\nbad movie\n")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["001", "002"]
    for args, message in [
        ([f"ckpt={runs['sentiment']}", "text=fine", "target=x"], "target= force-decodes one given output"),
        ([f"ckpt={runs['translation']}", "text=ein Mann", "alignment_layer=7"], "alignment_layer=7 does not exist"),
        ([f"ckpt={tmp_path / 'nothing'}", "text=x"], "does not exist"),
    ]:
        result = run_script("attend.py", *args, f"output_dir={tmp_path / 'bad'}")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and lines[-1].startswith("error: ") and message in lines[-1], result.stderr


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(chromium() is None, reason="no Chromium (.ci/run installs Debian's chromium)")
def test_attention_page_in_a_browser(runs, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    out = tmp_path / "page"
    result = run_script("attend.py", f"ckpt={runs['translation']}", "text='ein Mann fährt Fahrrad .'",
                        f"output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((out / "attention.html").as_uri())

        def canvas() -> str:
            return page.evaluate("document.getElementById('map').toDataURL()")

        def ink() -> int:  # pixels of the drawing that are not white
            return page.evaluate(
                """() => { const c = document.getElementById('map');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 250 || d[i + 1] < 250) n++;
                return n; }"""
            )

        kinds = page.eval_on_selector_all("#kind option", "options => options.map(o => o.value)")
        assert kinds == ["encoder", "decoder", "cross", "alignment"]
        first = canvas()
        assert ink() > 100  # not blank
        page.select_option("#layer", "1")
        second = canvas()
        page.select_option("#head", "0")
        third = canvas()
        page.select_option("#kind", "cross")
        fourth = canvas()
        assert len({first, second, third, fourth}) == 4  # every switch redraws the map
        page.hover("#queries span:nth-child(2)")
        shaded = page.eval_on_selector_all("#keys span", "spans => spans.map(s => s.style.background)")
        assert len(set(shaded)) > 1  # the hovered token's attention shades the source tokens
        assert page.eval_on_selector("#queries span:nth-child(2)", "s => s.className") == "active"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "attention_page.png"), full_page=True)
        browser.close()
    assert not errors, errors


def test_tensorboard_shows_attention_samples_confusion_and_hparams(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def events(run: Path, sub: str = "") -> EventAccumulator:
        folder = run / "tensorboard" / run.name / sub  # tensorboard/<run name>/ (run_label)
        assert list(folder.glob("events.out.tfevents.*")), f"no TensorBoard event file in {folder}"
        accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
        accumulator.Reload()
        return accumulator

    sentiment = events(runs["sentiment"])
    images = set(sentiment.Tags()["images"]) | set(sentiment.PluginTagToContent("images"))  # PNG or tensor form
    assert {"views/attention/example0", "views/attention/example1", "views/confusion_matrix"} <= images
    width, height, png = sentiment.Tensors("views/attention/example0")[-1].tensor_proto.string_val  # captioned
    assert int(width) > 300 and int(height) > 200 and png[:4] == b"\x89PNG"
    caption = sentiment.SummaryMetadata("views/attention/example0").summary_description
    assert caption.startswith("text: ") and "predicted: " in caption
    plugins = sentiment.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in plugins
    start = plugins["_hparams_/session_start_info"].decode("latin-1")
    assert "1.lr" in start and "model/d_model" in start
    assert not [tag for tag in sentiment.Tags()["scalars"] if tag.startswith("hparams/") or tag == "epoch"]
    assert "val/acc" in events(runs["sentiment"], "test").Tags()["scalars"]  # test/acc, beside the curve

    translation = events(runs["translation"])
    assert "views/attention/example0" in translation.PluginTagToContent("images")
    caption = translation.SummaryMetadata("views/attention/example0").summary_description
    assert caption.startswith("source: ") and "reference: " in caption and "output: " in caption
    texts = [t for t in translation.Tags()["tensors"] if t.startswith("samples/validation")]
    assert texts, translation.Tags()
    sample = translation.Tensors(texts[0])[-1].tensor_proto.string_val[0].decode()
    assert sample.startswith("| example | output | reference |")
