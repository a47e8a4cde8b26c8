"""The ONNX Runtime handle: a CPU inference session configured as every effnet engine, export check and benchmark
uses it. A leaf: it imports no other serving module; ``onnxruntime`` is imported when a session is made.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ort_session"]


def ort_session(model: bytes | str, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session: all graph optimizations, sequential, ``threads`` intra-op threads (torch's)."""
    import onnxruntime as ort  # lazy: onnxruntime is an optional engine, imported only when one is made

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
