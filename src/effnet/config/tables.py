"""Every setting of the torch-free reports ``effnet table`` and ``effnet info``.

Each command builds its flags from its config here (:class:`TableConfig`, :class:`InfoConfig`;
:mod:`effnet.cli.flags`). Bounds of the values themselves (φ, coefficients, resolution) are checked by the core
functions that compute the rows, with the messages of :mod:`effnet.scaling` and :mod:`effnet.cost`.
"""

from __future__ import annotations

from dataclasses import dataclass

from effnet.config.fields import check_fields, setting
from effnet.report import TABLE_FORMATS
from effnet.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA

__all__ = ["TABLE_SECTIONS", "TableConfig", "InfoConfig"]

TABLE_SECTIONS = ("official", "v2", "table3", "compound", "all")
"""Values of ``effnet table --section``."""


@dataclass(frozen=True)
class TableConfig:
    """Every setting of ``effnet table``: which section, in which format, and the compound family's coefficients."""

    format: str = setting("markdown", "output format", choices=TABLE_FORMATS)
    section: str = setting(
        "all",
        "paper's B0-B7 table, V2 paper's table, paper's Table 3 (scaling MobileNetV1/V2 and ResNet-50), exact "
        "compound family, or all",
        choices=TABLE_SECTIONS,
    )
    phi_max: int = setting(7, "largest phi of the compound family")
    alpha: float = setting(PAPER_ALPHA, "depth coefficient")
    beta: float = setting(PAPER_BETA, "width coefficient")
    gamma: float = setting(PAPER_GAMMA, "resolution coefficient")

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class InfoConfig:
    """Every setting of ``effnet info``: the model (a name or a spec file), its input size, the format, and a latency
    profile to predict each stage's latency with."""

    model: str = setting(help="model name (see `effnet table`/list_models) or a NetworkSpec JSON file", positional=True)
    resolution: int | None = setting(None, "input size (default: the model's own)")
    format: str = setting("markdown", "output format", choices=TABLE_FORMATS)
    profile: str | None = setting(
        None,
        "latency profile (effnet profile) to predict each stage's latency and the peak memory with",
        metavar="FILE",
    )
    accept_foreign_profile: bool = setting(
        False, "use a --profile measured on another machine, with other threads or another engine version"
    )

    def __post_init__(self) -> None:
        check_fields(self)
