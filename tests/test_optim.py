"""TF-style RMSProp, LR schedules, parameter groups and weight EMA."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from effnet.training.optim import LRSchedule, ModelEMA, TFRMSprop, build_optimizer, param_groups


def _two_steps(opt_factory, p0: list[float], lrs: tuple[float, float] | None = None) -> list[list[float]]:
    """Minimise 0.5 * sum(p^2) (gradient = p) for two steps; return p after each step."""
    p = nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = opt_factory([p])
    out = []
    for step in range(2):
        if lrs is not None:
            for g in opt.param_groups:
                g["lr"] = lrs[step]
        opt.zero_grad()
        (0.5 * (p**2).sum()).backward()
        opt.step()
        out.append(p.detach().tolist())
    return out


def test_tf_rmsprop_matches_hand_computed_two_steps():
    lr, decay, mom, eps = 0.1, 0.9, 0.9, 1e-3
    got = _two_steps(lambda ps: TFRMSprop(ps, lr=lr, decay=decay, momentum=mom, eps=eps), [1.0, -2.0])
    # by hand, accumulator starting at 1, eps inside the root, lr inside the momentum:
    for i, p0 in enumerate([1.0, -2.0]):
        ms1 = decay * 1.0 + (1 - decay) * p0**2
        m1 = lr * p0 / math.sqrt(ms1 + eps)
        p1 = p0 - m1
        ms2 = decay * ms1 + (1 - decay) * p1**2
        m2 = mom * m1 + lr * p1 / math.sqrt(ms2 + eps)
        p2 = p1 - m2
        assert got[0][i] == pytest.approx(p1, abs=1e-12)
        assert got[1][i] == pytest.approx(p2, abs=1e-12)
    # the same numbers written out for p0 = 1: ms1 = 1.0, m1 = 0.1 / sqrt(1.001) = 0.0999500375,
    # p1 = 0.9000499625, ms2 = 0.9 + 0.1 * p1^2 = 0.9810089935, p2 = p1 - (0.9 m1 + 0.1 p1 / sqrt(ms2 + 1e-3))
    assert got[0][0] == pytest.approx(0.9000499625, abs=1e-9)
    assert got[1][0] == pytest.approx(0.7192692012, abs=1e-9)


def test_tf_rmsprop_differs_from_torch_as_expected():
    torch_rms = lambda ps: torch.optim.RMSprop(ps, lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9)
    tf_rms = lambda ps: TFRMSprop(ps, lr=0.1, decay=0.9, eps=1e-3, momentum=0.9)
    tf, pt = _two_steps(tf_rms, [1.0]), _two_steps(torch_rms, [1.0])
    # torch's accumulator starts at 0, so its first step is lr * g / (sqrt(0.1 g^2) + eps) ~ 3.15x the TF step
    assert 1 - pt[0][0] == pytest.approx(0.1 / (math.sqrt(0.1) + 1e-3), rel=1e-9)
    assert (1 - pt[0][0]) / (1 - tf[0][0]) == pytest.approx(math.sqrt(1.001) / (math.sqrt(0.1) + 1e-3))  # 3.1539
    # with accumulator 0, eps 0 and a constant LR the two algorithms coincide ...
    same_tf = _two_steps(lambda ps: TFRMSprop(ps, lr=0.1, eps=0.0, initial_accumulator=0.0), [1.0, -2.0])
    same_pt = _two_steps(lambda ps: torch.optim.RMSprop(ps, lr=0.1, alpha=0.9, eps=0.0, momentum=0.9), [1.0, -2.0])
    assert torch.allclose(torch.tensor(same_tf), torch.tensor(same_pt), rtol=0, atol=1e-12)
    # ... but not when the LR changes: TF keeps lr inside the momentum buffer, torch rescales all of it
    lrs = (0.1, 0.01)
    tf2 = _two_steps(lambda ps: TFRMSprop(ps, lr=0.1, eps=0.0, initial_accumulator=0.0), [1.0], lrs)
    pt2 = _two_steps(lambda ps: torch.optim.RMSprop(ps, lr=0.1, alpha=0.9, eps=0.0, momentum=0.9), [1.0], lrs)
    assert tf2[0][0] == pytest.approx(pt2[0][0], abs=1e-12)
    assert abs(tf2[1][0] - pt2[1][0]) > 1e-3


def test_tf_rmsprop_state_dict_roundtrip_and_weight_decay():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    oa = TFRMSprop(a.parameters(), lr=0.01, weight_decay=0.1)
    x = torch.randn(4, 3)
    a(x).sum().backward()
    oa.step()
    ob = TFRMSprop(b.parameters(), lr=0.01, weight_decay=0.1)
    b.load_state_dict(a.state_dict())
    ob.load_state_dict(copy.deepcopy(oa.state_dict()))
    for m, o in ((a, oa), (b, ob)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    assert torch.equal(a.weight, b.weight)
    with pytest.raises(ValueError, match="decay"):
        TFRMSprop(a.parameters(), decay=1.0)


def test_paper_schedule_warmup_and_staircase():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.016)
    sched = LRSchedule(opt, "step", steps_per_epoch=10, epochs=10, warmup_epochs=5, decay_rate=0.97, decay_epochs=2.4)
    assert opt.param_groups[0]["lr"] == 0.0  # the first update of a warmup has LR 0 as in TF
    assert sched.factor(25) == pytest.approx(25 / 50 * 0.97)  # 25 steps = 1.04 decay periods of 24 steps
    assert sched.factor(23) == pytest.approx(23 / 50)
    assert sched.factor(50) == pytest.approx(0.97**2)
    assert sched.factor(71) == pytest.approx(0.97**2)
    assert sched.factor(72) == pytest.approx(0.97**3)
    for _ in range(72):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.016 * 0.97**3)
    state = sched.state_dict()
    other = LRSchedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.016), "step", 10, epochs=10)
    other.load_state_dict(state)
    assert other.get_last_lr() == pytest.approx(sched.get_last_lr())
    with pytest.raises(ValueError, match="steps/epoch"):
        LRSchedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1), "step", 11, epochs=1).load_state_dict(state)


def test_cosine_schedule_endpoints():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = LRSchedule(opt, "cosine", steps_per_epoch=10, epochs=5, warmup_epochs=1, min_lr_ratio=0.1)
    assert sched.factor(5) == pytest.approx(0.5)
    assert sched.factor(10) == pytest.approx(1.0)
    assert sched.factor(30) == pytest.approx(0.1 + 0.9 * 0.5)
    assert sched.factor(50) == pytest.approx(0.1)


def test_weight_decay_only_on_conv_and_linear_weights():
    from effnet.models.factory import create_model

    model = create_model("efficientnet_b0", num_classes=7)
    groups = param_groups(model, lr=0.1, weight_decay=1e-5, body_lr_scale=0.1)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"body_decay", "body_no_decay", "head_decay", "head_no_decay"}
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        is_weight = name.endswith("weight") and p.ndim > 1
        assert (id(p) in decayed) == is_weight, name
    assert by_name["head_decay"]["lr"] == 0.1 and by_name["body_decay"]["lr"] == pytest.approx(0.01)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert isinstance(build_optimizer("rmsprop_tf", groups, 0.1), TFRMSprop)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        build_optimizer("lamb", groups, 0.1)


def test_ema_tracks_weights_and_buffers_with_tf_warmup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9999)
    assert ema.current_decay() == pytest.approx(1 / 10)  # min(0.9999, (1 + 0) / (10 + 0))
    before = ema.module[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(2.0)
    ema.update(model)
    assert torch.allclose(ema.module[0].weight, 0.1 * before + 0.9 * model[0].weight)
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), 1.8))
    assert ema.current_decay() == pytest.approx(2 / 11)
    plain = ModelEMA(model, decay=0.9, warmup=False)
    assert plain.current_decay() == 0.9
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_sgd_and_adamw_use_fused_kernels_on_cpu_rmsprop_multi_tensor():
    groups = lambda: [{"params": [torch.nn.Parameter(torch.ones(3))]}]
    assert build_optimizer("adamw", groups(), 0.1).defaults["fused"] is True
    assert build_optimizer("sgd", groups(), 0.1).defaults["fused"] is True
    assert build_optimizer("rmsprop", groups(), 0.1).defaults["foreach"] is True
