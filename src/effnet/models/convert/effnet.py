"""effnet's own layout: the keys of :class:`~effnet.models.efficientnet.EfficientNet` itself (an identity map).

In a ``.safetensors`` file written by :func:`~effnet.models.factory.save_pretrained` the header also holds the spec
and the preprocessing (:mod:`effnet.models.weight_files`); a plain state dict takes the spec it is loaded into.
"""

from __future__ import annotations

from effnet.models.convert.layout import Layout
from effnet.specs import NetworkSpec

__all__ = ["LAYOUT"]


def _model_keys(spec: NetworkSpec) -> list[str]:
    """The parameter and buffer names of the model ``spec`` builds (on the meta device: nothing allocated)."""
    import torch  # lazy: the layout registry stays torch-free

    from effnet.models.efficientnet import EfficientNet  # lazy: it imports torch at its top

    with torch.device("meta"):
        return list(EfficientNet(spec).state_dict())


LAYOUT = Layout(
    name="effnet",
    summary="effnet's own .safetensors (from save_pretrained, spec and preprocessing in the header) or state dict",
    marker="stem.conv.weight",
    classifier="classifier",
    own_keys=_model_keys,
)
