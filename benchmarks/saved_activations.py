"""Bytes autograd keeps for backward after one training forward: effnet (lean and plain BN-act) vs peers.

    python benchmarks/saved_activations.py                  # B0, batch 16, 224px, fp32 and bf16 autocast

Deterministic (no timing), so unlike RSS or speed it is not disturbed by a busy machine: it is the
activation memory a training step holds at the end of the forward pass (distinct storages counted once).
Writes ``saved_activations.json`` and ``.md`` under ``--out-dir``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

import effnet
import effnet.models.layers
from common import COMMITTED_OUT, DEFAULT_OUT, machine_info, markdown_table, write_outputs


def saved_mb(model: torch.nn.Module, x: torch.Tensor, bf16: bool) -> float:
    """MiB of distinct tensors saved for backward by one forward of ``model`` on ``x``."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)
    return sum(seen.values()) / 2**20


def main(argv: list[str] | None = None) -> int:
    """Measure every model in fp32 and bf16 autocast; write JSON and Markdown."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT,
        help=f"default {DEFAULT_OUT}; the committed results: {COMMITTED_OUT}",
    )
    args = p.parse_args(argv)
    import timm
    import torchvision

    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution)
    models = {
        "torchvision": getattr(torchvision.models, args.model)(weights=None),
        "timm": timm.create_model(args.model, pretrained=False),
        "effnet (lean BN-act)": effnet.create_model(args.model),
    }
    rows: list[dict[str, Any]] = []
    for bf16 in (False, True):
        for name, model in models.items():
            rows.append(
                {
                    "model": name,
                    "precision": "bf16 autocast" if bf16 else "fp32",
                    "saved_mb": saved_mb(model.train(), x, bf16),
                }
            )
        lean = effnet.models.layers._lean_kind
        effnet.models.layers._lean_kind = lambda bn, act: None  # ablation in this process only
        try:
            plain = saved_mb(models["effnet (lean BN-act)"], x, bf16)
        finally:
            effnet.models.layers._lean_kind = lean
        rows.append(
            {"model": "effnet (plain BN-act)", "precision": "bf16 autocast" if bf16 else "fp32", "saved_mb": plain}
        )
    base = next(r["saved_mb"] for r in rows if r["model"] == "torchvision" and r["precision"] == "fp32")
    for r in rows:
        r["vs_torchvision_fp32"] = r["saved_mb"] / base
    meta = machine_info() | {"model": args.model, "batch": args.batch, "resolution": args.resolution}
    table = (
        f"{args.model} training forward, batch {args.batch} at {args.resolution}px: memory saved for backward\n\n"
        + markdown_table(rows, ["model", "precision", "saved_mb", "vs_torchvision_fp32"])
    )
    write_outputs(args.out_dir, "saved_activations", {"meta": meta, "rows": rows}, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
