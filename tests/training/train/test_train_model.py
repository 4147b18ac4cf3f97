"""The utility network (training/train/model.py): one or two views through one ResNet-18 trunk."""

from __future__ import annotations

import torch

from training.train.model import build_model, model_from_checkpoint


def test_two_views_share_one_trunk_and_see_each_view() -> None:
    torch.manual_seed(0)
    model = build_model(views=2, aux=3).eval()
    one = build_model(views=1)
    extra = 2 * 512 + 1024 * 3 + 3  # the wider logits head (2 x 1024 inputs) and the soft-target head
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in one.parameters()) == extra
    x = torch.randn(4, 6, 64, 64)
    with torch.no_grad():
        logits, aux = model.forward_all(x)
        assert logits.shape == (4, 2) and aux.shape == (4, 3)
        assert torch.equal(model(x), logits)
        changed = x.clone()
        changed[:, 3:] = 0  # only the second view
        assert not torch.allclose(model(changed), logits)
        # each view is a plain ResNet-18 forward: the batch order of the two views does not leak
        assert torch.allclose(model(x[:1]), logits[:1], atol=1e-5)


def test_a_checkpoint_rebuilds_its_own_architecture() -> None:
    model = build_model(views=2, aux=2)
    ckpt = {"args": {"native_crop": True}, "aux_targets": ["a", "b"], "model": model.state_dict()}
    again = model_from_checkpoint(ckpt)
    assert again.views == 2 and again.aux.out_features == 2 and not again.training
    legacy = {"args": {}, "model": build_model().state_dict()}
    assert model_from_checkpoint(legacy).views == 1


def test_the_quality_plane_reaches_the_heads_and_unknown_differs_from_known() -> None:
    torch.manual_seed(0)
    model = build_model(views=2, aux=2, quality=True).eval()
    x = torch.randn(3, 7, 64, 64)
    x[:, -1] = torch.tensor([0.2, 0.9, -1.0]).view(3, 1, 1)  # q ~ 2.5, q ~ 63, unknown
    with torch.no_grad():
        logits, aux = model.forward_all(x)
        assert logits.shape == (3, 2) and aux.shape == (3, 2)
        other = x.clone()
        other[:, -1] = 0.5
        assert not torch.allclose(model(other), logits)  # the heads read the plane
        same_pixels = x.clone()
        same_pixels[:, :-1] = x[:1, :-1]
        assert not torch.allclose(model(same_pixels)[0], model(same_pixels)[2])  # known vs unknown
    ckpt = {"args": {"native_crop": True, "quality_map": True}, "aux_targets": ["a", "b"], "model": model.state_dict()}
    assert model_from_checkpoint(ckpt).quality is not None
