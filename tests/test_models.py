"""The three implementations agree: same weights in, same logits, loss, gradients and
updates out, in float64 where rounding cannot hide a real difference."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from mnistlab import models, optim
from mnistlab.config import ACTIVATIONS, TrainConfig
from mnistlab.models import manual, scratch

IMPLS = ("module", "scratch", "manual")
SIZES = (784, 32, 16, 10)  # two hidden layers exercise the chain through a hidden layer too


def twins(sizes=SIZES, activation="relu", dropout=0.0, model="mlp"):
    """The three implementations, all loaded with one set of float64 weights."""
    reference = models.build(
        model, "module", sizes, activation, dropout, torch.Generator().manual_seed(0), torch.float64
    )
    state = reference.state_dict()
    built = {}
    for impl in IMPLS:
        twin = models.build(model, impl, sizes, activation, dropout, dtype=torch.float64)
        twin.load_state_dict(state)
        built[impl] = twin
    return built


def batch(count=24, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, 784, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, 10, (count,), generator=generator)


def forward_backward(model, x, y, seed=5):
    # The same dropout draws in every implementation, from a generator of their own.
    model.dropout_generator = torch.Generator().manual_seed(seed)
    logits = model(x)
    loss = models.cross_entropy(model, logits, y)
    loss.backward()
    grads = {name: value.grad.clone() for name, value in model.named_parameters()}
    return logits.detach(), loss.detach(), grads


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_logits_loss_and_gradients_agree(activation, dropout):
    x, y = batch()
    results = {
        impl: forward_backward(model, x, y)
        for impl, model in twins(activation=activation, dropout=dropout).items()
    }
    logits, loss, grads = results["module"]
    assert loss.item() > 0 and all(g.abs().sum() > 0 for g in grads.values())
    for impl in ("scratch", "manual"):
        other_logits, other_loss, other_grads = results[impl]
        assert_close(other_logits, logits, rtol=1e-12, atol=1e-12)
        assert_close(other_loss, loss, rtol=1e-12, atol=1e-12)
        assert other_grads.keys() == grads.keys()
        for name in grads:
            assert_close(other_grads[name], grads[name], rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("smoothing", [0.1, 0.4])
def test_label_smoothing_agrees_and_means_the_smoothed_target(smoothing):
    x, y = batch()
    built = twins()
    results = {}
    for impl, model in built.items():
        logits = model(x)
        loss = models.cross_entropy(model, logits, y, smoothing)
        loss.backward()
        grads = {name: value.grad.clone() for name, value in model.named_parameters()}
        results[impl] = (logits.detach(), loss.detach(), grads)
    logits, loss, grads = results["module"]
    # The definition: cross-entropy against (1-ε)·one_hot + ε/C.
    target = torch.full_like(logits, smoothing / 10)
    target[torch.arange(len(y)), y] += 1 - smoothing
    expected = -(target * torch.log_softmax(logits, 1)).sum(1).mean()
    assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    assert abs(loss - F.cross_entropy(logits, y)) > 1e-3  # smoothing changed the loss
    for impl in ("scratch", "manual"):
        assert_close(results[impl][1], loss, rtol=1e-12, atol=1e-12)
        for name in grads:
            assert_close(results[impl][2][name], grads[name], rtol=1e-10, atol=1e-12, msg=name)


def test_dropout_really_drops_and_eval_mode_does_not():
    model = twins(dropout=0.5)["manual"]
    x, _ = batch()
    model.dropout_generator = torch.Generator().manual_seed(0)
    first = model(x)
    model.dropout_generator = torch.Generator().manual_seed(1)
    assert not torch.equal(first, model(x))  # other draws, other units dropped
    model.dropout_generator = torch.Generator().manual_seed(0)
    assert torch.equal(first, model(x))  # the same generator state, the same units
    model.eval()
    assert torch.equal(model(x), model(x))


def test_logistic_regression_agrees():
    x, y = batch()
    results = {
        impl: forward_backward(model, x, y)
        for impl, model in twins(sizes=(784, 10), model="logreg").items()
    }
    for impl in ("scratch", "manual"):
        assert_close(results[impl][0], results["module"][0])
        for name, grad in results["module"][2].items():
            assert_close(results[impl][2][name], grad)


def test_manual_gradients_match_finite_differences():
    # Independent of autograd: a central difference on a few weights of a tiny model.
    model = twins(sizes=(784, 6, 10), activation="gelu")["manual"]
    x, y = batch(8)
    _, _, grads = forward_backward(model, x, y)
    weight = dict(model.named_parameters())["hidden.0.weight"]
    for row, column in [(0, 0), (3, 400), (5, 783)]:
        original = weight[row, column].item()
        losses = []
        for delta in (1e-6, -1e-6):
            weight[row, column] = original + delta
            losses.append(models.cross_entropy(model, model(x), y).item())
        weight[row, column] = original
        numeric = (losses[0] - losses[1]) / 2e-6
        assert grads["hidden.0.weight"][row, column].item() == pytest.approx(
            numeric, rel=1e-5, abs=1e-9
        )


OPTIMIZERS = {
    "sgd": dict(optimizer="sgd", lr=0.1),
    "sgd-momentum": dict(optimizer="sgd", lr=0.05, momentum=0.9),
    "sgd-nesterov-decay": dict(
        optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3
    ),
    "adam": dict(optimizer="adam", lr=1e-3),
    "adam-decay": dict(optimizer="adam", lr=1e-3, weight_decay=1e-2),
    "adamw": dict(optimizer="adamw", lr=1e-3, weight_decay=1e-2),
}


def torch_optimizer(config, model):
    """torch.optim's optimizer for `config`: the reference the hand-written ones follow."""
    parameters = [value for _, value in model.named_parameters()]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(parameters, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_k_optimizer_steps_end_at_the_same_parameters(name):
    # Each implementation with the hand-written optimizer, and the module with torch.optim:
    # six steps with a changing learning rate must end at the same weights in all four.
    config = TrainConfig(hidden=SIZES[1:-1], **OPTIMIZERS[name])
    built = twins()
    start = {name: value.clone() for name, value in built["module"].state_dict().items()}
    reference = twins()["module"]
    runs = {impl: (model, optim.build(config, model)) for impl, model in built.items()}
    written_out = twins()["module"]  # Adam's arithmetic as written, not torch's kernel
    runs["written out"] = (written_out, optim.build(config, written_out, fused=False))
    runs["torch.optim"] = (reference, torch_optimizer(config, reference))
    if config.optimizer != "sgd":  # the default is the kernel, which this test holds to
        assert runs["module"][1].fused and not runs["written out"][1].fused
    finals = {}
    for impl, (model, optimizer) in runs.items():
        for step in range(6):
            x, y = batch(seed=10 + step)
            optim.set_learning_rate(
                optimizer, optim.learning_rate(step, 6, config.lr, "onecycle", 0.3)
            )
            optimizer.zero_grad()
            loss = models.cross_entropy(model, model(x), y)
            loss.backward()
            optimizer.step()
        finals[impl] = model.state_dict()
    for parameter, value in finals["torch.optim"].items():
        assert (value - start[parameter]).abs().max() > 1e-6  # training moved it
        for impl in (*IMPLS, "written out"):
            assert_close(
                finals[impl][parameter], value, rtol=1e-10, atol=1e-12, msg=f"{impl} {parameter}"
            )


def test_scratch_parameters_are_leaves_that_learn():
    model = scratch.MLP((784, 500, 10), generator=torch.Generator().manual_seed(0))
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    before = model.state_dict()
    x, y = batch()
    models.cross_entropy(model, model(x.float()), y).backward()
    for name, value in model.named_parameters():
        assert value.is_leaf and value.requires_grad, name
        assert value.grad is not None and value.grad.abs().sum() > 0, name
    optimizer.step()
    for name, value in model.named_parameters():
        assert not torch.equal(value.detach(), before[name]), name


def test_the_notebooks_mistake_is_what_we_avoid():
    # The course notebook's parameter: the product of a leaf is not a leaf, gets no .grad.
    weight = torch.randn(784, 500, requires_grad=True) * 0.01
    assert not weight.is_leaf


def test_manual_model_uses_no_autograd():
    model = manual.MLP((784, 500, 10), generator=torch.Generator().manual_seed(0))
    assert not any(value.requires_grad for value in model.parameters())
    x, y = batch()
    loss = models.cross_entropy(model, model(x.float()), y)
    assert not loss.value.requires_grad
    loss.backward()
    assert all(value.grad is not None for value in model.parameters())


@pytest.mark.parametrize("impl", IMPLS)
def test_parameter_counts_come_from_the_models(impl):
    assert models.count_parameters(models.build("mlp", impl, (784, 500, 10))) == 397_510
    assert models.count_parameters(models.build("logreg", impl)) == 7_850


def test_same_seed_same_weights_in_every_implementation():
    states = [
        models.build("mlp", impl, SIZES, generator=torch.Generator().manual_seed(3)).state_dict()
        for impl in IMPLS
    ]
    for state in states[1:]:
        assert state.keys() == states[0].keys()
        for name in state:
            assert torch.equal(state[name], states[0][name])
    # nn.Linear's shapes and initial range: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert states[0]["hidden.0.weight"].shape == (32, 784)
    assert states[0]["hidden.0.weight"].abs().max() <= 1 / 784**0.5


def test_wrong_architecture_state_dict_is_refused():
    small = models.build("mlp", "scratch", (784, 20, 10))
    with pytest.raises(RuntimeError, match="does not match"):
        small.load_state_dict(models.build("mlp", "module", (784, 30, 10)).state_dict())


def test_learning_rate_schedules():
    assert [optim.learning_rate(s, 10, 1.0, "constant") for s in (0, 9)] == [1.0, 1.0]
    cosine = [optim.learning_rate(s, 10, 1.0, "cosine") for s in range(10)]
    assert cosine[0] == 1.0 and all(a > b for a, b in zip(cosine, cosine[1:], strict=False))
    one = [optim.learning_rate(s, 100, 1.0, "onecycle", 0.1) for s in range(100)]
    assert one[0] == pytest.approx(1 / 25) and max(one) == one[10] == 1.0
    assert one[-1] < 0.01 and one.index(max(one)) == 10


@pytest.mark.parametrize("name", ["sgd-momentum", "adamw"])
@pytest.mark.parametrize("direction", ["torch->hand", "hand->torch"])
def test_optimizer_state_moves_to_and_from_torch_optim(name, direction):
    # Three steps in one implementation, then the state moves to the other, which must take
    # the fourth step exactly as the first would have.
    config = TrainConfig(hidden=SIZES[1:-1], **OPTIMIZERS[name])
    source_impl, target_impl = (
        ("module", "scratch") if direction == "torch->hand" else ("scratch", "module")
    )
    built = twins()

    def step(model, optimizer, seed):
        x, y = batch(seed=seed)
        optimizer.zero_grad()
        models.cross_entropy(model, model(x), y).backward()
        optimizer.step()

    source = built[source_impl]
    source_optimizer = (
        torch_optimizer(config, source)
        if direction == "torch->hand"
        else optim.build(config, source)
    )
    for seed in range(3):
        step(source, source_optimizer, seed)
    target = built[target_impl]
    target.load_state_dict(source.state_dict())
    if direction == "torch->hand":
        target_optimizer = optim.build(config, target)
        target_optimizer.load_state_dict(source_optimizer.state_dict())
    else:  # torch.optim fills in the settings it has and the hand-written state lacks
        target_optimizer = torch_optimizer(config, target)
        saved = source_optimizer.state_dict()
        group = {**target_optimizer.state_dict()["param_groups"][0], **saved["param_groups"][0]}
        target_optimizer.load_state_dict({"state": saved["state"], "param_groups": [group]})
    step(source, source_optimizer, 3)
    step(target, target_optimizer, 3)
    for name_, value in source.state_dict().items():
        assert_close(target.state_dict()[name_], value, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["adam", "adamw"])
@pytest.mark.parametrize("direction", ["kernel->written", "written->kernel"])
def test_adam_state_moves_between_the_kernel_and_the_written_out_update(name, direction):
    config = TrainConfig(hidden=SIZES[1:-1], **OPTIMIZERS[name])
    first, second = direction == "kernel->written", direction != "kernel->written"
    source, target = twins()["module"], twins()["scratch"]
    source_optimizer = optim.build(config, source, fused=first)
    for seed in range(3):
        x, y = batch(seed=seed)
        source_optimizer.zero_grad()
        models.cross_entropy(source, source(x), y).backward()
        source_optimizer.step()
    target.load_state_dict(source.state_dict())
    target_optimizer = optim.build(config, target, fused=second)
    target_optimizer.load_state_dict(source_optimizer.state_dict())
    assert target_optimizer.state_dict()["state"][0]["step"] == 3
    for model, optimizer in ((source, source_optimizer), (target, target_optimizer)):
        x, y = batch(seed=3)
        optimizer.zero_grad()
        models.cross_entropy(model, model(x), y).backward()
        optimizer.step()
    for name_, value in source.state_dict().items():
        assert_close(target.state_dict()[name_], value, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_adam_step_without_gradients_changes_nothing(fused):
    model = twins()["module"]
    optimizer = optim.build(TrainConfig(hidden=SIZES[1:-1], optimizer="adam"), model, fused)
    before = model.state_dict()
    optimizer.step()  # no backward yet: no parameter has a gradient
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert optimizer.state_dict()["state"] == {}


def test_the_adam_kernel_is_used_only_where_it_can_run():
    assert optim.fusable([torch.zeros(3), torch.zeros(2, 2)])
    assert not optim.fusable([torch.zeros(3), torch.zeros(3, dtype=torch.float64)])  # 2 calls
    assert not optim.fusable([torch.zeros(3, dtype=torch.int64)])
    assert not optim.fusable([torch.zeros(3, device="meta")])
    assert not optim.fusable([])
