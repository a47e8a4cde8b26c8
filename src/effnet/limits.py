"""Documented bounds on every value that sizes work or memory, and the checks that enforce them.

The torch-free core refuses a value outside these bounds with one :class:`~effnet.errors.InvalidValue` line
naming the value and the accepted range, before any work starts: an unbounded φ, multiplier, resolution or
JSON document would otherwise cost minutes of CPU or gigabytes of memory. The bounds are generous: the
largest published EfficientNet (L2: width 4.3, depth 5.3, 800 px) sits well inside them.
Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from effnet.errors import BadFile, InvalidValue, MissingFile

__all__ = [
    "MAX_PHI",
    "MAX_MULTIPLIER",
    "MAX_RESOLUTION",
    "MIN_RESOLUTION",
    "MAX_CHANNELS",
    "MAX_REPEATS",
    "MAX_STAGES",
    "MAX_KERNEL",
    "MAX_STRIDE",
    "MAX_EXPAND_RATIO",
    "MAX_CLASSES",
    "MAX_IN_CHANS",
    "MIN_CROP_FRACTION",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_DOWNLOAD_BYTES",
    "MAX_WALK_DEPTH",
    "MAX_WALK_ENTRIES",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_ASPECT",
    "MAX_RESIZED_PIXELS",
    "MAX_IDX_BYTES",
    "check_number",
    "check_int",
    "json_depth",
    "parse_json",
    "read_json_file",
    # resources, networks and numbers
    "DOWNLOAD_DEADLINE_S",
    "DOWNLOAD_STALL_WINDOW_S",
    "DOWNLOAD_MIN_BYTES_PER_S",
]

MAX_PHI = 20
"""Largest compound coefficient φ (B7 is φ ≈ 7; the paper's α, β, γ reach the resolution bound near φ = 16)."""
MAX_MULTIPLIER = 32.0
"""Largest width or depth multiplier of a network (L2: width 4.3, depth 5.3)."""
MIN_RESOLUTION = 8
"""Smallest input side of a network or a preprocessing crop."""
MAX_RESOLUTION = 2048
"""Largest input side of a network or a preprocessing crop (L2: 800 px)."""
MAX_CHANNELS = 16384
"""Largest baseline channel count of a stem, stage or head (before width scaling)."""
MAX_REPEATS = 256
"""Largest baseline block count of one stage (before depth scaling)."""
MAX_STAGES = 64
"""Largest number of stages in a spec."""
MAX_KERNEL = 31
"""Largest convolution kernel side."""
MAX_STRIDE = 8
"""Largest stride of a stage or stem."""
MAX_EXPAND_RATIO = 64.0
"""Largest MBConv expansion / bottleneck ratio."""
MAX_CLASSES = 1_000_000
"""Largest classifier size."""
MAX_IN_CHANS = 64
"""Largest number of input channels."""
MIN_CROP_FRACTION = 0.5
"""Smallest crop fraction of a preprocessing (published weights use 0.875-1.0); the resize stays <= 2x the crop."""
MAX_JSON_BYTES = 1 << 20
"""Largest spec or header JSON document, in bytes (a B7 spec is about 3 KB)."""
MAX_JSON_DEPTH = 16
"""Deepest nesting of objects/arrays in a spec or header JSON document (a spec nests 3 deep)."""
MAX_DOWNLOAD_BYTES = 1 << 32
"""Largest weights file fetched from a hub (Hugging Face or torchvision's), in bytes (4 GiB; L2's fp32 weights are
1.9 GB)."""

# Files, folders and images: bounds that keep a walk finite and a small file from allocating gigabytes.
MAX_WALK_DEPTH = 32
"""Deepest folder level below a folder of images that is walked (ImageFolder trees nest 2 deep). Each real folder is
walked once, so a symlink loop ends by itself; a deeper tree is refused, naming the folder."""
MAX_WALK_ENTRIES = 10_000_000
"""Most entries (files and folders) examined in one walk of a folder of images (ImageNet's train split has 1.28M
images): a larger tree is refused, naming the folder, before its list outgrows memory."""
MAX_IMAGE_PIXELS = 1 << 26
"""Largest image read, in pixels (67M: 8192 x 8192; a 60 MP photo fits), checked from the header before decoding."""
MAX_IMAGE_ASPECT = 64
"""Largest ratio of an image's long side to its short side: resizing the short side to the model's size multiplies
the long side by as much (a 65000 x 1 PNG of 143 bytes would become 16.6G pixels)."""
MAX_RESIZED_PIXELS = 1 << 26
"""Largest image after the preprocessing's resize, in pixels (a 4096-px resize of a 4:1 panorama is 67M)."""
MAX_IDX_BYTES = 1 << 31
"""Largest decompressed IDX file (Fashion-MNIST's training images are 47 MB): a gzip bomb stops at this size."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    """``value`` as a float when it is a finite number in ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    bracket = "(" if low_open else "["
    accepted = f"a finite number in {bracket}{low:g}, {high:g}]"
    if not _is_number(value):
        raise InvalidValue(f"{name} must be {accepted}, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise InvalidValue(f"{name} must be {accepted}, got {value!r}") from None
    if not math.isfinite(number) or number > high or number < low or (low_open and number == low):
        raise InvalidValue(f"{name} must be {accepted}, got {value!r}")
    return number


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` when it is an integer in ``[low, high]`` (bools are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidValue(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON ``text``, ignoring brackets inside strings (no parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(text: str | bytes, what: str) -> Any:
    """Parse a JSON document of at most :data:`MAX_JSON_BYTES` and :data:`MAX_JSON_DEPTH` levels.

    ``what`` names the document in the one-line :class:`InvalidValue` raised for a size, nesting, encoding or
    syntax problem (e.g. ``"spec file x.json"``). Non-finite numbers (``NaN``, ``Infinity``) are refused.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_JSON_BYTES:
            raise InvalidValue(f"{what}: {len(text):,} bytes of JSON; at most {MAX_JSON_BYTES:,} are accepted")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidValue(f"{what}: not UTF-8 text (byte {exc.start}); expected a JSON document") from None
    if not isinstance(text, str):
        raise InvalidValue(f"{what}: expected JSON text, got {type(text).__name__}")
    if len(text) > MAX_JSON_BYTES:
        raise InvalidValue(f"{what}: {len(text):,} characters of JSON; at most {MAX_JSON_BYTES:,} are accepted")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise InvalidValue(f"{what}: JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted")

    def _no_constant(name: str) -> Any:
        raise InvalidValue(f"{what}: {name} is not a finite number; JSON values must be finite")

    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidValue(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def read_json_file(path: str | os.PathLike[str], what: str) -> Any:
    """Parse the JSON file ``path`` (a regular file of at most :data:`MAX_JSON_BYTES`), naming it in any error."""
    file = Path(path)
    try:
        info = file.stat()
    except FileNotFoundError:
        raise MissingFile(f"{what} not found: {file}") from None
    if not stat.S_ISREG(info.st_mode):
        raise BadFile(f"{what} {file} is not a regular file (a folder, FIFO or device); expected a JSON file")
    if info.st_size > MAX_JSON_BYTES:
        raise BadFile(f"{what} {file} is {info.st_size:,} bytes; at most {MAX_JSON_BYTES:,} are accepted")
    with open(file, "rb") as handle:
        data = handle.read(MAX_JSON_BYTES + 1)
    return parse_json(data, f"{what} {file}")


# --------------------------------------------------------------------------------------------
# Resources, networks and numbers: what a download may take, how many processes and threads a command starts,
# how much memory a network may ask for. Each is checked before the work starts (or, for a download, while it runs)
# and refused or lowered with one line naming the value and the limit.
# --------------------------------------------------------------------------------------------

DOWNLOAD_DEADLINE_S = 3600.0
"""Longest a weights download (Hugging Face Hub or torchvision's host, one file, connection to last byte) may take,
in seconds: 1.9 GB (L2's fp32 weights) at 1 MB/s fits. Past it the download stops and nothing partial is kept."""
DOWNLOAD_STALL_WINDOW_S = 30.0
"""A download that received fewer than ``DOWNLOAD_MIN_BYTES_PER_S × DOWNLOAD_STALL_WINDOW_S`` bytes in the last
window of this many seconds (waiting to connect or for a response included) has stalled and stops: a host that
accepts and never answers, or trickles a byte every few seconds, is given up on after this long, not retried."""
DOWNLOAD_MIN_BYTES_PER_S = 1024
"""The slowest a download may go, in bytes per second averaged over ``DOWNLOAD_STALL_WINDOW_S``."""
