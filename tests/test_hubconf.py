"""``hubconf.py``: ``torch.hub.load(REPO, name, source="local")`` for every named model and ``compound_model``."""

from __future__ import annotations

from pathlib import Path

import torch

import effnet
from effnet.models.hub_folder import save_hub_folder

REPO = str(Path(__file__).resolve().parents[1])


def test_every_named_model_loads_through_torch_hub():
    with torch.device("meta"):  # the architecture only: L2 and V2-XL without allocating their weights
        for name in effnet.list_models():
            model = torch.hub.load(REPO, name, source="local", trust_repo=True, verbose=False)
            assert model.spec == effnet.get_spec(name), name
            assert sum(p.numel() for p in model.parameters()) == effnet.cost(name).params, name


def test_options_compound_model_and_pretrained_as_in_create_model(tmp_path):
    model = torch.hub.load(REPO, "efficientnet_b0", source="local", num_classes=4, in_chans=1, resolution=32)
    assert (model.num_classes, model.spec.in_chans) == (4, 1)
    features = torch.hub.load(REPO, "efficientnet_b0", source="local", features_only=True, out_indices=(2, 4))
    assert features.feature_info.channels() == [40, 320]
    scaled = torch.hub.load(REPO, "compound_model", source="local", phi=2, num_classes=3)
    assert scaled.spec == effnet.compound_model(2, num_classes=3).spec
    save_hub_folder(model, tmp_path / "hub")
    loaded = torch.hub.load(REPO, "efficientnet_b0", source="local", pretrained=f"local-dir:{tmp_path / 'hub'}")
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
