"""`check`'s last question: is a student's model, whatever its names, an MLP mnistlab
knows? Its parameters are matched to mnistlab's MLP by shape, in order ((in, out) weights
transposed to nn.Linear's (out, in)), and the same weights must give the same logits under
one of the activations."""

import torch

from mnistlab import models
from mnistlab.config import ACTIVATIONS
from mnistlab.datasets import CLASSES, INPUTS


def call(model, x):
    """The model's logits for x, whether it is an nn.Module or has only `forward` or
    `__call__`."""
    return model.forward(x) if hasattr(model, "forward") else model(x)


def agreement(report, model, parameters, x) -> None:
    """Same weights in mnistlab's MLP, same logits? Shapes matched in order, (in, out) weights
    transposed to nn.Linear's (out, in)."""
    shapes = [tuple(p.shape) for _, p in parameters]
    if len(shapes) < 2 or len(shapes) % 2 or any(len(s) != 2 for s in shapes[::2]):
        return
    sizes, state, mapping = [INPUTS], {}, []
    depth = len(shapes) // 2 - 1
    layers = [f"hidden.{index}" for index in range(depth)] + ["output"]
    names = [f"{layer}.{kind}" for layer in layers for kind in ("weight", "bias")]
    for index in range(0, len(shapes), 2):
        (weight_name, weight), (bias_name, bias) = parameters[index], parameters[index + 1]
        fan_in = sizes[-1]
        if weight.shape[1] == fan_in:
            out, transposed = weight.shape[0], False
        elif weight.shape[0] == fan_in:
            out, transposed = weight.shape[1], True
        else:
            return
        if tuple(bias.shape) != (out,):
            return
        sizes.append(out)
        ours_weight, ours_bias = names[index], names[index + 1]
        state[ours_weight] = (weight.T if transposed else weight).detach().float()
        state[ours_bias] = bias.detach().float()
        mapping.append(f"{weight_name} -> {ours_weight}{' (transposed)' if transposed else ''}")
        mapping.append(f"{bias_name} -> {ours_bias}")
    if sizes[-1] != CLASSES:
        return
    was_training = getattr(model, "training", None)
    if isinstance(model, torch.nn.Module):
        model.eval()  # no dropout while comparing
    with torch.no_grad():
        theirs = call(model, x).float()
    if was_training is not None and isinstance(model, torch.nn.Module):
        model.train(was_training)
    # A model that ends in a softmax is compared after one (its own finding says to drop it).
    softmax = bool((theirs >= 0).all()) and torch.allclose(theirs.sum(1), torch.ones(len(x)))
    with torch.no_grad():
        differences = {}
        for activation in ACTIVATIONS:
            kind = "mlp" if len(sizes) > 2 else "logreg"
            # Its own generator: the weights are replaced below, torch's global one untouched.
            ours = models.build(kind, "module", tuple(sizes), activation, 0.0, torch.Generator())
            ours.load_state_dict(state)
            logits = ours.eval()(x)
            logits = logits.softmax(1) if softmax else logits
            differences[activation] = (logits - theirs).abs().max().item()
    best = min(differences, key=differences.get)
    report.values.update(agreement_error=differences[best], agreement_activation=best)
    shape = "-".join(map(str, sizes)) + (" and a softmax" if softmax else "")
    # float32 sums in another order differ by rounding, in proportion to the logits' size.
    if differences[best] <= 1e-5 * max(1.0, theirs.abs().max().item()):
        report.add(
            "agrees",
            True,
            f"the same weights in mnistlab's MLP {shape} ({best}) give the same logits "
            f"(largest difference {differences[best]:.1g}); names: {'; '.join(mapping)}",
        )
    else:
        report.add(
            "agrees",
            False,
            f"with the same weights, mnistlab's MLP {shape} gives other logits under every "
            f"activation (closest: {best}, largest difference {differences[best]:.3g}); "
            f"names: {'; '.join(mapping)}",
            "check forward: the order of layers, the activation between them, x @ W against W.T",
        )
