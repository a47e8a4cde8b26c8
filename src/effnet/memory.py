"""The memory a network needs, estimated from its exact cost before anything is built or allocated (torch-free).

A spec inside every documented bound can still ask for more memory than any machine has (a 1 KB spec of 256-block
stages of 16,384 channels asks ~2·10^19 parameters), and so can a batch size (``scale --batch 100000``). The cost
model (:func:`effnet.cost.cost`) knows parameters and activations exactly, so :func:`estimate_memory` turns them into
bytes, and :func:`check_memory` refuses, in one :class:`~effnet.errors.InvalidValue` line naming the estimate and
the limit, what cannot fit. The estimate is a *lower bound* (float32 values; only what must exist: the weights;
for training their gradients and optimizer state, and every conv/linear output of the batch, which backward needs;
for inference the input batch and its largest single feature map), so a refused command could never have run,
while one let through may still need more (allocator overheads, BN/activation outputs, workspace).

The limit is the memory available now (:func:`effnet.machine.available_memory`, or a CUDA device's free memory),
lowered by a command's ``--max-memory`` (GiB).
"""

from __future__ import annotations

from dataclasses import dataclass

from effnet.cost import Cost, cost
from effnet.errors import InvalidValue
from effnet.specs import NetworkSpec, ResolvedNetwork, resolve

__all__ = ["BYTES_PER_VALUE", "GIB", "MemoryEstimate", "estimate_memory", "memory_limit", "check_memory", "show_bytes"]

BYTES_PER_VALUE = 4
"""Bytes of one float32 value (weights, gradients, optimizer state; activations without autocast)."""
GIB = 1 << 30
"""Bytes in a GiB (the unit of ``--max-memory``)."""


def show_bytes(n: int) -> str:
    """``n`` bytes for a person: ``512 bytes``, ``10.7 kB``, ``512 MB``, ``12.3 GB``, ``8.99e+04 GB``."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class MemoryEstimate:
    """A lower bound on the bytes a network needs at a batch size: weights, training state, activations."""

    name: str
    batch: int
    resolution: int
    weights: int
    training_state: int
    activations: int

    @property
    def total(self) -> int:
        """All of it, in bytes."""
        return self.weights + self.training_state + self.activations

    def describe(self) -> str:
        """``efficientnet_b0 at batch 256, 224 px needs at least 9.8 GB (weights 21.2 MB, ...)``."""
        parts = [f"weights {show_bytes(self.weights)}"] if self.weights else []
        if self.training_state:
            parts.append(f"gradients and optimizer state {show_bytes(self.training_state)}")
        if self.batch:
            parts.append(f"activations {show_bytes(self.activations)}")
        at = f" at batch {self.batch}, {self.resolution} px" if self.batch else ""
        return f"{self.name}{at} needs at least {show_bytes(self.total)} ({', '.join(parts)})"


def _largest_map(net: ResolvedNetwork, costed: Cost) -> int:
    """Values of the largest single feature map of one image (the input, a stage's expanded or output map, the
    head's): a lower bound on the inference working set."""
    largest = net.spec.in_chans * costed.resolution**2
    stages = [p for p in costed.parts if p.name.startswith("stage")]
    for part, blocks in zip(stages, net.stages, strict=True):
        widest = max(max(b.mid_channels, b.out_channels) for b in blocks)
        largest = max(largest, widest * part.output_size**2)
    for part in costed.parts:
        if part.name == "head":
            largest = max(largest, part.out_channels * part.output_size**2)
    return largest


def estimate_memory(
    network: NetworkSpec | ResolvedNetwork,
    batch: int = 1,
    *,
    resolution: int | None = None,
    training: bool = False,
    state_copies: int = 2,
    activation_bytes: int = BYTES_PER_VALUE,
    recompute: bool = False,
    weights: bool = True,
) -> MemoryEstimate:
    """A lower bound on the memory ``network`` needs at ``batch`` images of ``resolution`` (default: its own).

    ``batch`` 0 counts the weights only (building the module). ``training``: ``state_copies`` more copies of the
    weights (gradients, optimizer slots, an EMA) and every conv/linear output of the batch kept for backward
    (``recompute``: gradient checkpointing keeps only the largest stage's); otherwise the input batch and its
    largest feature map. ``activation_bytes``: 2 under bf16/fp16 autocast. ``weights=False`` leaves out the
    weights (already in the memory the estimate is compared with).
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise InvalidValue(f"batch must be an integer >= 0, got {batch!r}")
    net = network if isinstance(network, ResolvedNetwork) else resolve(network)
    costed = cost(net, resolution)
    values = costed.params * BYTES_PER_VALUE
    state = values * state_copies if training else 0
    if training:
        per_image = max(p.activations for p in costed.parts) if recompute else costed.activations
    else:
        per_image = net.spec.in_chans * costed.resolution**2 + _largest_map(net, costed)
    kept = values if weights else 0
    return MemoryEstimate(net.spec.name, batch, costed.resolution, kept, state, per_image * batch * activation_bytes)


def memory_limit(available: int | None, max_memory_gib: float | None = None) -> int | None:
    """The bytes a command may use: ``available`` (None: unknown), lowered to ``max_memory_gib`` GiB if given."""
    limits = [n for n in (available, None if max_memory_gib is None else int(max_memory_gib * GIB)) if n is not None]
    return min(limits) if limits else None


def check_memory(
    estimate: MemoryEstimate, available: int | None, where: str, max_memory_gib: float | None = None
) -> MemoryEstimate:
    """``estimate`` when it fits the limit (:func:`memory_limit`), else one :class:`~effnet.errors.InvalidValue`
    line naming the estimate, the limit and where it comes from (``where``: ``"this machine's available memory"``,
    ``"cuda:0's free memory"``)."""
    limit = memory_limit(available, max_memory_gib)
    if limit is None or estimate.total <= limit:
        return estimate
    capped = max_memory_gib is not None and limit == int(max_memory_gib * GIB)
    source = f"--max-memory {max_memory_gib:g}" if capped else where
    smaller = "a smaller batch size, resolution or network" if estimate.batch else "a smaller network"
    raise InvalidValue(f"{estimate.describe()}, more than the {show_bytes(limit)} of {source}; use {smaller}")
