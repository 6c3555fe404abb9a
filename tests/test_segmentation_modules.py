"""Segmentation building blocks: boundary F-score, decoders, loss."""

from __future__ import annotations

import pytest
import torch

from moto_vision.backbones import create_backbone
from moto_vision.metrics import BoundaryFScore
from moto_vision.metrics.segmentation import label_boundaries, tolerance_pixels
from moto_vision.models import DECODERS, SegmentationLoss, create_segmentation_decoder


def _square(offset: int = 0, size: int = 32) -> torch.Tensor:
    mask = torch.zeros(1, size, size, dtype=torch.long)
    mask[:, 8 + offset : 24 + offset, 8 + offset : 24 + offset] = 1
    return mask


# ------------------------------------------------------------------------------------------- boundary F
def test_boundary_f_tolerance_band():
    target = _square()
    assert tolerance_pixels(0.008, 32, 32) == 1  # DAVIS default: ceil(0.008 * 45.25)
    assert BoundaryFScore(2)(target, target) == 1.0
    assert BoundaryFScore(2, tolerance=2)(_square(1), target) == 1.0  # one pixel off diagonally: inside the band
    assert 0.95 < BoundaryFScore(2)(_square(1), target) < 1.0  # sqrt(2) px off: outside the 1 px disk at the corners
    far = BoundaryFScore(2, tolerance=1)(_square(4), target)
    assert 0.0 < far < 0.4  # four pixels off: only the crossing points still match
    assert BoundaryFScore(2)(torch.zeros_like(target), target) == 0.0
    with pytest.raises(ValueError, match="whole number"):
        BoundaryFScore(2, tolerance=2.5)


def test_boundary_f_accepts_logits_and_ignores_unlabelled():
    target = _square()
    logits = torch.where(target.bool(), 4.0, -4.0).unsqueeze(1)
    assert BoundaryFScore(2)(logits, target) == 1.0
    ignored = target.clone()
    ignored[:, :, :16] = 255  # the left half is void: a prediction there cannot count
    wrong_left = target.clone()
    wrong_left[:, 4:28, 2:16] = 1
    assert BoundaryFScore(2)(wrong_left, ignored) == 1.0
    assert BoundaryFScore(2)(wrong_left, target) < 1.0


def test_boundary_f_per_class():
    target = torch.zeros(1, 32, 32, dtype=torch.long)
    target[:, 4:12, 4:12] = 1
    target[:, 20:28, 20:28] = 2
    preds = target.clone()
    preds[preds == 2] = 0  # class 2 missed entirely
    scores = BoundaryFScore(4, average="none")(preds, target)
    assert scores[1] == 1.0 and scores[2] == 0.0 and scores[3].isnan()
    assert BoundaryFScore(4)(preds, target) == 0.5  # mean over classes with a boundary (1 and 2)
    assert label_boundaries(target, 3)[0, 1].sum() == 28  # the ring of an 8x8 square (the loss's helper)


# ------------------------------------------------------------------------------------------- decoders
@pytest.mark.parametrize("backbone", ["mobilenetv3_small_050", "test_convnext"])
@pytest.mark.parametrize("name", DECODERS)
def test_decoders_return_logits_at_input_size(backbone, name):
    encoder = create_backbone(backbone)
    decoder = create_segmentation_decoder(name, encoder.channels, encoder.reductions, num_classes=3)
    x = torch.rand(2, 3, 64, 96)
    logits = decoder(encoder(x), size=x.shape[-2:])
    assert logits.shape == (2, 3, 64, 96)
    logits.mean().backward()
    assert all(p.grad is not None for p in decoder.parameters() if p.requires_grad)


def test_default_portrait_model_fits_the_parameter_budget():
    encoder = create_backbone("mobilenetv3_small_050")
    decoder = create_segmentation_decoder("mobile", encoder.channels, encoder.reductions, num_classes=1)
    params = sum(p.numel() for p in [*encoder.parameters(), *decoder.parameters()])
    assert params <= 500_000


# ------------------------------------------------------------------------------------------- loss
def test_loss_terms_ignore_index_and_class_weights():
    target = _square().repeat(2, 1, 1)
    perfect = torch.where(target.bool(), 8.0, -8.0).unsqueeze(1)
    loss = SegmentationLoss(1, boundary_weight=1.0)
    terms = loss(perfect, target)
    assert set(terms) == {"loss", "ce", "dice", "boundary"} and terms["loss"] < 0.01
    wrong = -perfect
    assert loss(wrong, target)["boundary"] > 1.0
    ignored = target.clone()
    ignored[:] = 255
    ignored[:, :2] = 0
    assert loss(perfect, ignored)["ce"] < 0.01  # only the labelled rows count
    weighted = SegmentationLoss(3, dice_weight=0.0, class_weights=[1.0, 5.0, 1.0])
    logits = torch.zeros(2, 3, 32, 32)
    assert torch.isclose(weighted(logits, target)["ce"], torch.log(torch.tensor(3.0)))
    with pytest.raises(ValueError, match="class_weights has 2 entries"):
        SegmentationLoss(3, class_weights=[1.0, 2.0])
