"""Memory-lean training BN+activation in ``ConvBNAct``: same numbers as ``act(bn(x))``, fewer saved bytes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from effnet import create_model, get_spec
from effnet.models.layers import ConvBNAct, batch_norm_act


def _tiny() -> nn.Module:
    spec = get_spec("efficientnet_b0")
    return create_model(
        spec.replace(stages=spec.stages[:3], head_channels=64, num_classes=10, drop_path_rate=0.0, dropout=0.0)
    )


def _saved_bytes(fn) -> int:
    """Bytes of distinct tensors autograd keeps for backward while ``fn`` runs its forward."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


@pytest.mark.parametrize("activation", ["silu", "relu"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_lean_bn_act_matches_composition(activation: str, channels_last: bool) -> None:
    torch.manual_seed(0)
    lean = ConvBNAct(6, 12, 3, activation=activation).train()
    ref = copy.deepcopy(lean)
    x = torch.randn(4, 6, 10, 10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        lean, ref = lean.to(memory_format=torch.channels_last), ref.to(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = lean(x1), ref.act(ref.bn(ref.conv(x2)))
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    tol = {"atol": 1e-5, "rtol": 1e-5}
    torch.testing.assert_close(y1, y2, **tol)
    torch.testing.assert_close(x1.grad, x2.grad, **tol)
    for (name, p1), p2 in zip(lean.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, **tol, msg=name)
    for name, b1 in lean.named_buffers():
        torch.testing.assert_close(b1, dict(ref.named_buffers())[name], msg=name)
    assert lean.bn.num_batches_tracked.item() == 1


def test_lean_bn_act_bf16_autocast_matches() -> None:
    torch.manual_seed(1)
    lean = ConvBNAct(8, 16, 3).train()
    ref = copy.deepcopy(lean)
    x1 = torch.randn(2, 8, 12, 12, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y1, y2 = lean(x1), ref.act(ref.bn(ref.conv(x2)))
    assert y1.dtype == torch.bfloat16
    y1.float().sum().backward()
    y2.float().sum().backward()
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(lean.conv.weight.grad, ref.conv.weight.grad)


def test_plain_path_outside_training() -> None:
    m = ConvBNAct(4, 4, 1).eval()
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    assert batch_norm_act(m.conv(x), m.bn, m.act).grad_fn.name() != "_BatchNormActFnBackward"
    m.train()
    with torch.no_grad():
        m(x)
    assert m.bn.num_batches_tracked.item() == 1  # plain BN counted it; lean path not taken without grad
    assert m(x).grad_fn.name() == "_BatchNormActFnBackward"


def test_model_training_step_equal_and_leaner() -> None:
    torch.manual_seed(2)
    lean = _tiny().train()
    ref = copy.deepcopy(lean)
    ref.set_lean_activations(False)  # the plain act(bn(x)) composition everywhere
    x = torch.randn(4, 3, 64, 64)
    lean_bytes, out1 = _saved_bytes(lambda: lean(x))
    ref_bytes, out2 = _saved_bytes(lambda: ref(x))
    out1.square().mean().backward()
    out2.square().mean().backward()
    torch.testing.assert_close(out1, out2, atol=1e-5, rtol=1e-5)
    for (name, p1), p2 in zip(lean.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert list(lean.state_dict()) == list(ref.state_dict())
    assert lean_bytes < 0.8 * ref_bytes, (lean_bytes, ref_bytes)


def test_trace_in_train_mode_uses_plain_path() -> None:
    torch.manual_seed(3)
    model = _tiny().train()
    x = torch.randn(2, 3, 32, 32)
    traced = torch.jit.trace(model, x, check_trace=False)
    assert "PythonOp" not in str(traced.inlined_graph)


def test_compiled_training_step_matches_eager() -> None:
    # aot_eager: Dynamo + AOTAutograd tracing (where the plain path must be taken) without Inductor's slow codegen.
    torch.manual_seed(4)
    eager = _tiny().train()
    compiled_model = copy.deepcopy(eager)
    step = torch.compile(compiled_model, backend="aot_eager")
    x = torch.randn(2, 3, 32, 32)
    out1, out2 = eager(x), step(x)
    out1.sum().backward()
    out2.sum().backward()
    torch.testing.assert_close(out1, out2, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(eager.stem.conv.weight.grad, compiled_model.stem.conv.weight.grad, atol=1e-4, rtol=1e-3)
