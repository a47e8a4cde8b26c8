"""torch.hub entry points: every named effnet model, and ``compound_model``.

    model = torch.hub.load("path/to/effnet", "efficientnet_b0", source="local")
    model = torch.hub.load("path/to/effnet", "efficientnet_b0", source="local", pretrained=True)
    model = torch.hub.load("path/to/effnet", "efficientnet_lite0", source="local", pretrained="local-dir:my_folder")
    model = torch.hub.load("path/to/effnet", "compound_model", source="local", phi=2)

Each named entry is ``effnet.create_model(name, pretrained=..., **options)``: ``pretrained`` as there (``True``: the
model's default weights; a string: a weights file, Hub folder or ``hf-hub:`` / ``torchvision:`` reference), and the
same options (``num_classes``, ``in_chans``, ``features_only``, ``out_indices``, ...). The package is imported from
this checkout's ``src/`` (unless an ``effnet`` is already imported).
"""

import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "safetensors", "huggingface_hub"]

_SRC = Path(__file__).resolve().parent / "src"
if _SRC.is_dir() and "effnet" not in sys.modules and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from effnet.architectures import list_models as _list_models  # noqa: E402  (after the path of this checkout)
from effnet.models.factory import compound_model  # noqa: E402
from effnet.models.factory import create_model as _create_model  # noqa: E402


def _entry(name):
    def entry(pretrained=False, **options):
        return _create_model(name, pretrained=pretrained, **options)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (
        f"effnet.create_model({name!r}, pretrained=..., **options): pretrained=True loads the default weights, a "
        "string a weights file, Hub folder or hf-hub:/torchvision: reference."
    )
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)

__all__ = ["compound_model", *_list_models()]
