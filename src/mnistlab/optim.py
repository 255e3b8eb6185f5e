"""Optimizers and learning-rate schedules.

SGD, Adam and AdamW are written out below, following torch.optim's documented algorithms step
for step (tests compare them), with the same `param_groups`, `zero_grad`, `step` and
`state_dict` surface. All three implementations train with them, for two reasons: the
comparison between implementations then differs only in the model, and torch.optim's first
use imports torch._dynamo (every Optimizer method is wrapped to disable it), about 2 s on a
2-core machine: a third of the default run from start to exit.

Adam and AdamW run their update through torch's single-kernel version of it where one exists
(CPU and CUDA; `fused=True` in torch.optim), which reads and writes each parameter's four
tensors once instead of in seven passes: 0.6 -> 0.15 ms a step for the default MLP on two
cores, about 6% of an epoch. The written-out update is the definition the tests hold the
kernel to, and runs everywhere else (`fused=False` asks for it).
"""

import math

import torch


class HandWritten:
    """Shared surface: one parameter group holding the hyper-parameters, per-parameter state."""

    def __init__(self, parameters, **hyper):
        self.params = list(parameters)
        self.param_groups = [hyper]
        self.state: list[dict] = [{} for _ in self.params]
        self._buffers: dict[int, torch.Tensor] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for parameter in self.params:
            parameter.grad = None

    def state_dict(self) -> dict:
        """torch.optim's layout (state by parameter index, `step` as a tensor), so that a
        checkpoint moves between the implementations."""
        state = {}
        for index, entries in enumerate(self.state):
            if entries:
                state[index] = {
                    key: (torch.tensor(float(value)) if key == "step" else value.clone())
                    for key, value in entries.items()
                }
        group = {**self.param_groups[0], "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state: dict) -> None:
        """Load a state_dict of this class or of the torch.optim optimizer it mirrors (its extra
        settings, such as `fused`, are ignored)."""
        saved = state["param_groups"][0]
        self.param_groups = [{key: saved[key] for key in self.param_groups[0]}]
        self.state = [{} for _ in self.params]
        for index, entries in state["state"].items():
            device = self.params[int(index)].device
            self.state[int(index)] = {
                key: (int(value.item()) if key == "step" else value.clone().to(device))
                if torch.is_tensor(value)
                else value
                for key, value in entries.items()
            }

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        for index, (parameter, state) in enumerate(zip(self.params, self.state, strict=True)):
            if parameter.grad is not None:
                self.update(parameter, parameter.grad, state, self._scratch(index), **group)

    def _scratch(self, index: int) -> torch.Tensor:
        """A buffer the size of parameter `index`, reused every step: a fresh 1.6 MB tensor
        per step costs more in page faults than the arithmetic it holds."""
        if index not in self._buffers:
            self._buffers[index] = torch.empty_like(self.params[index], requires_grad=False)
        return self._buffers[index]


class SGD(HandWritten):
    def __init__(self, parameters, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(
            parameters, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )

    @staticmethod
    def update(p, grad, state, scratch, lr, momentum, nesterov, weight_decay):
        if weight_decay:
            grad = torch.add(grad, p, alpha=weight_decay, out=scratch)
        if momentum:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.clone()  # the first step takes the gradient
            else:
                state["momentum_buffer"].mul_(momentum).add_(grad)
            buffer = state["momentum_buffer"]
            grad = torch.add(grad, buffer, alpha=momentum, out=scratch) if nesterov else buffer
        p.add_(grad, alpha=-lr)


def fusable(parameters) -> bool:
    """Whether torch's single-kernel Adam can update these parameters in one call: floating
    point on one CPU or CUDA device, all of one dtype."""
    kinds = {(p.device, p.dtype) for p in parameters}
    if not hasattr(torch, "_fused_adam_") or len(kinds) != 1:
        return False
    ((device, dtype),) = kinds
    return device.type in ("cpu", "cuda") and dtype in (torch.float32, torch.float64)


class Adam(HandWritten):
    decoupled = False  # AdamW decays the weights directly instead of adding to the gradient

    def __init__(self, parameters, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=None):
        super().__init__(parameters, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        self.fused = fusable(self.params) if fused is None else fused

    @torch.no_grad()
    def step(self) -> None:
        if not self.fused:
            return super().step()
        group = self.param_groups[0]
        params, grads, averages, squares, steps = [], [], [], [], []
        for parameter, state in zip(self.params, self.state, strict=True):
            if parameter.grad is None:
                continue
            if not state:
                self._start(state, parameter)
            if not torch.is_tensor(state["step"]):  # the kernel counts on the device
                state["step"] = torch.tensor(float(state["step"]), device=parameter.device)
            params.append(parameter)
            grads.append(parameter.grad)
            averages.append(state["exp_avg"])
            squares.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:  # the kernel takes no empty lists; nothing to update either way
            return
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
        kernel(
            params,
            grads,
            averages,
            squares,
            [],  # no AMSGrad maxima
            steps,
            lr=group["lr"],
            beta1=group["betas"][0],
            beta2=group["betas"][1],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
        )

    @staticmethod
    def _start(state: dict, parameter: torch.Tensor) -> None:
        """A parameter's first step: no steps taken, both moments zero."""
        state.update(
            step=0, exp_avg=torch.zeros_like(parameter), exp_avg_sq=torch.zeros_like(parameter)
        )

    def update(self, p, grad, state, scratch, lr, betas, eps, weight_decay):
        beta1, beta2 = betas
        if weight_decay and self.decoupled:
            p.mul_(1 - lr * weight_decay)
        elif weight_decay:
            grad = torch.add(grad, p, alpha=weight_decay, out=scratch)
        if not state:
            self._start(state, p)
        state["step"] += 1
        step = state["step"]
        state["exp_avg"].lerp_(grad, 1 - beta1)  # m = β1·m + (1-β1)·g
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v, with g²
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        # p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps); the scratch buffer may hold the decayed
        # gradient, which is no longer needed.
        denom = torch.sqrt(state["exp_avg_sq"], out=scratch)
        denom.div_(math.sqrt(bias_correction2)).add_(eps)
        p.addcdiv_(state["exp_avg"], denom, value=-lr / bias_correction1)


class AdamW(Adam):
    decoupled = True

    def __init__(self, parameters, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, fused=None):
        super().__init__(parameters, lr, betas, eps, weight_decay, fused)


def build(config, model, fused: bool | None = None) -> HandWritten:
    """The optimizer the config names, over the model's parameters in their named order.

    `fused` chooses Adam's single-kernel update (True) or the written-out one (False); by
    default the kernel wherever it runs."""
    parameters = [value for _, value in model.named_parameters()]
    if config.optimizer == "sgd":
        return SGD(
            parameters,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    kind = AdamW if config.optimizer == "adamw" else Adam
    return kind(
        parameters,
        lr=config.lr,
        betas=config.betas,
        weight_decay=config.weight_decay,
        fused=fused,
    )


def learning_rate(step: int, total: int, peak: float, schedule: str, warmup: float = 0.1) -> float:
    """The learning rate at `step` (0-based) of `total` steps.

    constant: `peak` throughout; cosine: from `peak` down to 0; onecycle: a linear warm-up from
    peak/25 over the first `warmup` fraction of steps, then cosine decay to 0.
    """
    if schedule == "constant":
        return peak
    warmup_steps = round(warmup * total) if schedule == "onecycle" else 0
    if step < warmup_steps:
        start = peak / 25
        return start + (peak - start) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def set_learning_rate(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
