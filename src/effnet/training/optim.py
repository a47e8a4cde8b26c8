"""Optimisation pieces of the training recipes: TF-style RMSProp, LR schedules, parameter groups, weight EMA.

The paper trains with TensorFlow's RMSProp, which differs from ``torch.optim.RMSprop`` in three ways that
matter: epsilon is added *inside* the square root, the squared-gradient accumulator starts at 1 (not 0), and
the learning rate is applied inside the momentum buffer (so a change of LR does not rescale past momentum).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from effnet.config.training import OPTIMIZERS, SCHEDULES
from effnet.errors import InvalidValue, Unsupported, WrongType, check_type
from effnet.limits import check_number

__all__ = [
    "TFRMSprop",
    "LRSchedule",
    "param_groups",
    "build_optimizer",
    "ModelEMA",
]


class TFRMSprop(Optimizer):
    """RMSProp as in TensorFlow 1 (``tf.train.RMSPropOptimizer``), the optimizer of the EfficientNet paper.

    Per parameter, with gradient ``g`` (plus ``weight_decay * p``, i.e. L2 added to the loss as TF does)::

        ms  = decay * ms + (1 - decay) * g**2          # ms starts at ``initial_accumulator`` (1.0)
        mom = momentum * mom + lr * g / sqrt(ms + eps)  # eps inside the root; lr inside the momentum
        p   = p - mom
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.016,
        decay: float = 0.9,
        momentum: float = 0.9,
        eps: float = 1e-3,
        weight_decay: float = 0.0,
        initial_accumulator: float = 1.0,
    ) -> None:
        for label, value, low, high in (
            ("lr", lr, 0.0, math.inf),
            ("decay", decay, 0.0, 1.0),
            ("momentum", momentum, 0.0, 1.0),
            ("eps", eps, 0.0, math.inf),
            ("weight_decay", weight_decay, 0.0, math.inf),
            ("initial_accumulator", initial_accumulator, 0.0, math.inf),
        ):
            check_number(f"TFRMSprop {label}", value, low, high)
            if label in ("decay", "momentum") and value == 1.0:
                raise InvalidValue(f"TFRMSprop {label} must be below 1, got {value}")
        defaults = {
            "lr": lr,
            "decay": decay,
            "momentum": momentum,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator": initial_accumulator,
        }
        try:
            super().__init__(params, defaults)
        except (TypeError, ValueError) as exc:  # torch's own check of the parameters
            raise WrongType(f"TFRMSprop params: {exc}") from None

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            decay, momentum, eps = group["decay"], group["momentum"], group["eps"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise Unsupported("TFRMSprop does not support sparse gradients")
                grad = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["square_avg"] = torch.full_like(p, group["initial_accumulator"])
                    if momentum > 0:
                        state["momentum_buffer"] = torch.zeros_like(p)
                state["step"] += 1
                square_avg = state["square_avg"]
                square_avg.mul_(decay).addcmul_(grad, grad, value=1.0 - decay)
                update = grad / square_avg.add(eps).sqrt_()
                if momentum > 0:
                    buf = state["momentum_buffer"]
                    buf.mul_(momentum).add_(update, alpha=lr)
                    p.sub_(buf)
                else:
                    p.sub_(update, alpha=lr)
        return loss


class LRSchedule:
    """LR as a pure function of the optimizer step, applied to every param group's ``initial_lr``.

    ``step`` (the paper): linear warmup from 0 over ``warmup_epochs``, times ``decay_rate ** floor(step /
    (decay_epochs * steps_per_epoch))`` (TF's staircase ``exponential_decay``, counted from step 0).
    ``cosine``: linear warmup then half-cosine from the peak to ``min_lr_ratio * peak`` at ``epochs``.
    ``constant``: warmup then flat. The only state is the step counter, so resuming reproduces the schedule.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        kind: str,
        steps_per_epoch: int,
        *,
        epochs: float,
        warmup_epochs: float = 5.0,
        decay_rate: float = 0.97,
        decay_epochs: float = 2.4,
        min_lr_ratio: float = 0.0,
    ) -> None:
        if kind not in SCHEDULES:
            raise InvalidValue(f"schedule must be one of {', '.join(SCHEDULES)}; got {kind!r}")
        if steps_per_epoch < 1:
            raise InvalidValue(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if warmup_epochs < 0 or decay_epochs <= 0 or not 0 < decay_rate <= 1:
            raise InvalidValue("warmup_epochs must be >= 0, decay_epochs > 0 and decay_rate in (0, 1]")
        self.optimizer = optimizer
        self.kind = kind
        self.steps_per_epoch = steps_per_epoch
        self.warmup_steps = int(round(warmup_epochs * steps_per_epoch))
        self.decay_steps = decay_epochs * steps_per_epoch
        self.decay_rate = decay_rate
        self.total_steps = max(1, int(round(epochs * steps_per_epoch)))
        self.min_lr_ratio = min_lr_ratio
        self.step_count = 0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self._apply()

    def factor(self, step: int) -> float:
        """Multiplier of the peak LR at optimizer step ``step`` (0-based: the LR used by the step-th update)."""
        if self.kind == "step":
            value = self.decay_rate ** math.floor(step / self.decay_steps)
        elif self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            t = min(1.0, max(0.0, (step - self.warmup_steps) / span))
            value = self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        else:
            value = 1.0
        if step < self.warmup_steps:
            value *= step / self.warmup_steps
        return value

    def _apply(self) -> None:
        f = self.factor(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * f

    def step(self) -> None:
        """Advance one optimizer step and set the LR of the next update."""
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """Current LR of each param group."""
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Step counter and the settings it was created with (checked on load)."""
        return {"step_count": self.step_count, "kind": self.kind, "steps_per_epoch": self.steps_per_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the step counter; the schedule's shape must match."""
        if state["kind"] != self.kind or state["steps_per_epoch"] != self.steps_per_epoch:
            raise InvalidValue(
                f"checkpoint schedule ({state['kind']}, {state['steps_per_epoch']} steps/epoch) does not match "
                f"this run ({self.kind}, {self.steps_per_epoch} steps/epoch)"
            )
        self.step_count = int(state["step_count"])
        self._apply()


def _is_head(name: str) -> bool:
    return name.startswith("classifier.")


def param_groups(model: nn.Module, lr: float, weight_decay: float, body_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """Param groups: weight decay only on conv/linear weights (ndim > 1), never on BN or biases.

    ``body_lr_scale`` < 1 gives everything but the classifier a lower LR (fine-tuning). Empty groups are dropped.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = (p.ndim > 1, _is_head(name))
        groups.setdefault(key, []).append(p)
    out = []
    for (decay, head), params in sorted(groups.items()):
        scale = 1.0 if head else body_lr_scale
        out.append(
            {
                "params": params,
                "lr": lr * scale,
                "weight_decay": weight_decay if decay else 0.0,
                "name": f"{'head' if head else 'body'}_{'decay' if decay else 'no_decay'}",
            }
        )
    return out


def build_optimizer(
    name: str,
    groups: list[dict[str, Any]],
    lr: float,
    *,
    momentum: float = 0.9,
    rmsprop_decay: float = 0.9,
    eps: float | None = None,
    nesterov: bool = True,
) -> Optimizer:
    """Create optimizer ``name`` (see :data:`OPTIMIZERS`) over ``groups`` from :func:`param_groups`.

    ``eps`` None means each optimizer's own default (1e-3 for the RMSProps as in the paper, 1e-8 for AdamW).
    SGD and AdamW use PyTorch's fused kernels for parameters on CPU or CUDA, RMSprop its multi-tensor one: on CPU
    the default single-tensor AdamW step of the search's small candidate took 6-8 ms, the fused one 0.8 ms
    (``docs/speed.md``). A resumed run keeps the setting its checkpoint was written with.
    """
    devices = {p.device.type for g in groups for p in g["params"]}
    fused = {"fused": True} if devices and devices <= {"cpu", "cuda"} else {}
    if name == "rmsprop_tf":
        return TFRMSprop(groups, lr=lr, decay=rmsprop_decay, momentum=momentum, eps=1e-3 if eps is None else eps)
    if name == "rmsprop":
        return torch.optim.RMSprop(
            groups, lr=lr, alpha=rmsprop_decay, momentum=momentum, eps=1e-3 if eps is None else eps, foreach=True
        )
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, **fused)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, eps=1e-8 if eps is None else eps, **fused)
    raise InvalidValue(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")


class ModelEMA:
    """Exponential moving average of a model's parameters and buffers (TF ``ExponentialMovingAverage``).

    With ``warmup`` the decay used at update ``n`` is ``min(decay, (1 + n) / (10 + n))`` as TF does when given
    ``num_updates``, so early averages are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True) -> None:
        check_type("model", model, nn.Module, "a torch nn.Module")
        if check_number("EMA decay", decay, 0, 1) == 1.0:
            raise InvalidValue(f"EMA decay must be in [0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0

    def current_decay(self) -> float:
        """Decay applied by the next update."""
        if self.warmup:
            return min(self.decay, (1 + self.updates) / (10 + self.updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights."""
        d = self.current_decay()
        self.updates += 1
        source = model.state_dict()
        for name, value in self.module.state_dict().items():
            new = source[name].detach()
            if value.dtype.is_floating_point:
                value.lerp_(new.to(value.dtype), 1.0 - d)
            else:
                value.copy_(new)

    def state_dict(self) -> dict[str, Any]:
        """Averaged weights plus the update counter."""
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
