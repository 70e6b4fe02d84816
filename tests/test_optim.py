"""Optimizer setup: the default two parameter groups, layer-wise lr decay, the frozen-embedding warm-up."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transformer import EncoderClassifier, EncoderDecoder, ModelConfig
from transformer.errors import ConfigError
from transformer.optim import OptimConfig, build_optimizer, parameter_depths
from transformer.schema import build

TOTAL_STEPS = 100


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine they wait for them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> ModelConfig:
    return ModelConfig.named("tiny", vocab_size=50, dropout=0.0, **overrides)


def classifier(**overrides) -> EncoderClassifier:
    torch.manual_seed(0)
    return EncoderClassifier(tiny(num_classes=3, **overrides))


def encoder_decoder(**overrides) -> EncoderDecoder:
    torch.manual_seed(0)
    return EncoderDecoder(tiny(**overrides))


def group_of(optimizer: torch.optim.Optimizer) -> dict[int, dict]:
    """{id(param): its group}, checking that no parameter is in two groups."""
    groups = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            assert id(param) not in groups, "a parameter is in two groups"
            groups[id(param)] = group
    return groups


def test_defaults_give_the_two_groups_of_before():
    model = encoder_decoder(copy_attention=True)
    config = OptimConfig()
    optimizer, scheduler = build_optimizer(model, config, TOTAL_STEPS)
    # the grouping before layer_decay and freeze_embeddings_steps existed
    skip = ("bias", "norm", "embed")
    decay = [p for n, p in model.named_parameters() if not any(k in n for k in skip)]
    no_decay = [p for n, p in model.named_parameters() if any(k in n for k in skip)]
    assert [[id(p) for p in g["params"]] for g in optimizer.param_groups] == [
        list(map(id, decay)),
        list(map(id, no_decay)),
    ]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [config.weight_decay, 0.0]
    assert [g["initial_lr"] for g in optimizer.param_groups] == [config.lr, config.lr]
    assert all("name" not in g for g in optimizer.param_groups)
    assert scheduler["interval"] == "step"

    # an optimizer state saved by the old code (one lr lambda) loads into the new one
    old_groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    old = torch.optim.AdamW(old_groups, lr=config.lr, betas=config.betas, eps=config.eps)
    old_scheduler = torch.optim.lr_scheduler.LambdaLR(old, lambda step: 1.0)
    model.loss(*seq2seq_batch()).backward()
    old.step()
    old_scheduler.step()
    optimizer.load_state_dict(old.state_dict())
    scheduler["scheduler"].load_state_dict(old_scheduler.state_dict())
    assert scheduler["scheduler"].last_epoch == 1


def test_parameter_depths_of_a_classifier_and_an_encoder_decoder():
    depths = parameter_depths(classifier(positional="learned"))  # 2 encoder blocks: L = 2
    assert depths["encoder.embed.tokens.weight"] == depths["encoder.embed.positions.weight"] == 0
    assert depths["encoder.layers.0.ffn.fc1.weight"] == 1 and depths["encoder.layers.1.ffn.fc1.weight"] == 2
    assert depths["encoder.norm.weight"] == depths["head.weight"] == 3

    # 2 + 2 blocks: L = 4; the shared token embedding is listed once, under the encoder
    depths = parameter_depths(encoder_decoder(copy_attention=True))
    assert "decoder.embed.tokens.weight" not in depths and depths["encoder.embed.tokens.weight"] == 0
    assert depths["encoder.layers.1.self_attn.in_proj.weight"] == 2
    assert depths["decoder.layers.0.ffn.fc2.bias"] == 3 and depths["decoder.layers.1.ffn.fc2.bias"] == 4
    assert depths["encoder.norm.weight"] == depths["decoder.norm.weight"] == depths["copy.gate.weight"] == 5

    unshared = encoder_decoder(share_embeddings=False, tie_output=False, positional="learned", target_vocab_size=60)
    depths = parameter_depths(unshared)
    assert depths["decoder.embed.tokens.weight"] == depths["decoder.embed.positions.weight"] == 0
    assert depths["output.weight"] == 5

    class MaskedLM(torch.nn.Module):  # an unknown top-level module sits on top
        def __init__(self) -> None:
            super().__init__()
            self.encoder = classifier().encoder
            self.lm_head = torch.nn.Linear(32, 50)

    assert parameter_depths(MaskedLM())["lm_head.weight"] == 3


@pytest.mark.parametrize(
    "make,top,checks",
    [
        (
            lambda: classifier(positional="learned"),
            3,
            {
                "encoder.embed.tokens.weight": 0,
                "encoder.embed.positions.weight": 0,
                "encoder.layers.0.ffn.fc1.weight": 1,
                "encoder.layers.1.attn_residual.norm.bias": 2,
                "head.weight": 3,
            },
        ),
        (
            lambda: encoder_decoder(),
            5,
            {
                "encoder.embed.tokens.weight": 0,
                "encoder.layers.0.ffn.fc1.weight": 1,
                "decoder.layers.0.ffn.fc1.bias": 3,
                "decoder.layers.1.ffn.fc1.weight": 4,
                "decoder.norm.weight": 5,
            },
        ),
    ],
    ids=["classifier", "encoder_decoder"],
)
def test_layer_decay_scales_each_depth(make, top, checks):
    model = make()
    config = OptimConfig(lr=2e-3, layer_decay=0.5)
    optimizer, _ = build_optimizer(model, config, TOTAL_STEPS)
    groups = group_of(optimizer)
    params = dict(model.named_parameters())
    assert set(groups) == {id(p) for p in params.values()}  # every trainable parameter, each in one group
    for name, depth in checks.items():
        assert groups[id(params[name])]["initial_lr"] == config.lr * 0.5 ** (top - depth), name
    for name, param in params.items():  # the weight-decay split holds inside each depth
        decays = not any(key in name for key in config.no_decay)
        assert groups[id(param)]["weight_decay"] == (config.weight_decay if decays else 0.0), name
    names = [g["name"] for g in optimizer.param_groups]
    assert len(set(names)) == len(names) and names[0] == "embeddings_no_decay" and names[-1].startswith("top")
    assert [g["initial_lr"] for g in optimizer.param_groups] == sorted(g["initial_lr"] for g in optimizer.param_groups)


def test_frozen_parameters_stay_out_of_the_groups():
    model = classifier()
    model.encoder.layers[0].requires_grad_(False)
    optimizer, _ = build_optimizer(model, OptimConfig(layer_decay=0.5), TOTAL_STEPS)
    groups = group_of(optimizer)
    assert set(groups) == {id(p) for p in model.parameters() if p.requires_grad}
    # the depths still count the frozen block: the second block is depth 2
    assert groups[id(model.encoder.layers[1].ffn.fc1.weight)]["initial_lr"] == 1e-3 * 0.5


def classification_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randint(4, 50, (4, 6), generator=g), torch.randint(0, 3, (4,), generator=g)


def seq2seq_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    src, tgt = torch.randint(4, 50, (3, 5), generator=g), torch.randint(4, 50, (3, 5), generator=g)
    return src, tgt[:, :-1], tgt[:, 1:]


def train(model, optimizer, scheduler, loss_fn, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn().backward()
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"no_decay": ["bias", "norm"]},  # decayed embeddings: AdamW's decay is lr * weight_decay, 0 while frozen
        {"layer_decay": 0.75, "schedule": "cosine", "warmup_steps": 2},
    ],
    ids=["defaults", "decayed_embeddings", "with_layer_decay"],
)
def test_embeddings_are_frozen_for_the_first_steps(overrides):
    model = classifier(positional="learned")
    config = OptimConfig(
        **{"lr": 1e-2, "warmup_steps": 0, "weight_decay": 0.1, "freeze_embeddings_steps": 3, **overrides}
    )
    optimizer, scheduler = build_optimizer(model, config, TOTAL_STEPS)
    scheduler = scheduler["scheduler"]
    src, labels = classification_batch()
    frozen = {"tokens": model.encoder.embed.tokens.weight, "positions": model.encoder.embed.positions.weight}
    trained = {"fc1": model.encoder.layers[0].ffn.fc1.weight, "head": model.head.weight}
    before = {name: p.detach().clone() for name, p in {**frozen, **trained}.items()}

    def loss():
        return F.cross_entropy(model(src), labels)

    train(model, optimizer, scheduler, loss, 3)
    for name, param in frozen.items():
        assert torch.equal(param, before[name]), f"{name} changed while frozen"
        assert param.grad is not None and param.grad.abs().sum() > 0  # it had gradients, only the lr was 0
    for name, param in trained.items():
        assert not torch.equal(param, before[name]), f"{name} did not train"

    train(model, optimizer, scheduler, loss, 2)
    for name, param in frozen.items():
        assert not torch.equal(param, before[name]), f"{name} still frozen after freeze_embeddings_steps"
    # after the warm-up the embeddings follow the usual schedule
    groups = group_of(optimizer)
    embedding, head = groups[id(frozen["tokens"])], groups[id(trained["head"])]
    assert embedding["lr"] / embedding["initial_lr"] == pytest.approx(head["lr"] / head["initial_lr"])


def test_shared_embedding_and_tied_output_are_frozen_together():
    model = encoder_decoder()  # one token embedding for encoder, decoder and output projection
    optimizer, scheduler = build_optimizer(model, OptimConfig(warmup_steps=0, freeze_embeddings_steps=2), 100)
    tokens = model.encoder.embed.tokens.weight
    assert tokens is model.decoder.embed.tokens.weight
    before, fc1 = tokens.detach().clone(), model.decoder.layers[1].ffn.fc1.weight.detach().clone()
    batch = seq2seq_batch()
    train(model, optimizer, scheduler["scheduler"], lambda: model.loss(*batch), 2)
    assert torch.equal(tokens, before) and not torch.equal(model.decoder.layers[1].ffn.fc1.weight, fc1)
    assert [g["name"] for g in optimizer.param_groups] == ["embeddings_no_decay", "rest", "rest_no_decay"]
    train(model, optimizer, scheduler["scheduler"], lambda: model.loss(*batch), 1)
    assert not torch.equal(tokens, before)


@pytest.mark.parametrize(
    "values,message",
    [
        ({"layer_decay": 0.0}, "optim.layer_decay must be in (0, 1], got 0.0"),
        ({"layer_decay": -0.5}, "optim.layer_decay must be in (0, 1]"),
        ({"layer_decay": 1.5}, "optim.layer_decay must be in (0, 1]"),
        ({"layer_decay": math.nan}, "optim.layer_decay must be in (0, 1]"),
        ({"freeze_embeddings_steps": -1}, "optim.freeze_embeddings_steps must be >= 0, got -1"),
    ],
)
def test_invalid_values_are_config_errors(values, message):
    with pytest.raises(ConfigError) as error:
        OptimConfig(**values)
    assert message in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="must be"):  # the same check where Hydra builds the config
        build(OptimConfig, values, "optim")


def test_options_come_from_the_command_line(compose_config):
    cfg = compose_config("train", ["task=sentiment", "optim.layer_decay=0.75", "optim.freeze_embeddings_steps=10"])
    optim = build(OptimConfig, cfg.optim, "optim")
    assert optim.layer_decay == 0.75 and optim.freeze_embeddings_steps == 10
    defaults = build(OptimConfig, compose_config("train", ["task=sentiment"]).optim, "optim")
    assert defaults.layer_decay == 1.0 and defaults.freeze_embeddings_steps == 0
