"""Scores and baselines against independent implementations of the literature's definitions (helpers/literature.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from moto_vision.metrics import AngularError, error_statistics, recovery_angular_error, reproduction_angular_error
from moto_vision.metrics.angular import format_table, prctile
from moto_vision.metrics.segmentation import BoundaryFScore, PooledBoundaryFScore, seg2bmap, tolerance_pixels
from moto_vision.models.awb import (
    BrightDarkPCA,
    GrayEdge,
    GrayIndex,
    GrayWorld,
    ShadesOfGray,
    WhitePatch,
    estimation_mask,
    general_colour_constancy,
)
from tests.helpers import literature as ref


# ------------------------------------------------------------------------------------------- angular errors
def test_opposite_estimate_is_180_degrees_and_integers_give_float_angles() -> None:
    est, gt = torch.tensor([[-1, -2, -3]]), torch.tensor([[1, 2, 3]])
    recovery, reproduction = recovery_angular_error(est, gt), reproduction_angular_error(est, gt)
    assert recovery.dtype == torch.float32 and reproduction.dtype == torch.float32
    assert recovery.item() == pytest.approx(180.0) and reproduction.item() == pytest.approx(180.0)
    # Not clamped: a negative channel counts (the old clamp turned this into a small error).
    w = np.array([1.0, 2.0, 3.0]) / np.array([-1.0, 2.0, 3.0])
    expected = math.degrees(math.acos(w.sum() / (np.linalg.norm(w) * math.sqrt(3))))
    assert reproduction_angular_error(torch.tensor([-1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0])).item() == (
        pytest.approx(expected, rel=1e-6)
    )
    assert recovery_angular_error(torch.tensor([1, 0, 0]), torch.tensor([0, 1, 0])).item() == pytest.approx(90.0)


def test_zero_estimates_and_targets_are_undefined_and_counted() -> None:
    gt = torch.tensor([[0.5, 1.0, 0.5]] * 4)
    est = torch.tensor([[0.5, 1.0, 0.5], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.6, 1.0, 0.4]])
    recovery, reproduction = recovery_angular_error(est, gt), reproduction_angular_error(est, gt)
    assert recovery[1].isnan() and not recovery[2].isnan()  # a zero channel is a fine recovery estimate
    assert reproduction[1].isnan() and reproduction[2].isnan()  # but gt / est is infinite there
    assert recovery_angular_error(gt[:1], torch.zeros(1, 3)).isnan().all()
    metric = AngularError()
    metric.update(est, gt)
    values = metric.compute()
    assert values["recovery_undefined"] == 1 and values["reproduction_undefined"] == 2
    # Undefined errors are left out, never averaged in as 0.
    assert values["recovery_mean"].item() == pytest.approx(recovery[[0, 2, 3]].mean().item(), rel=1e-6)
    assert values["reproduction_mean"].item() == pytest.approx(reproduction[[0, 3]].mean().item(), rel=1e-6)
    table = format_table({"m": {k: float(v) for k, v in values.items()}})
    assert "Rec. W5%" in table and "m: 1 recovery, 2 reproduction" in table
    assert error_statistics(torch.tensor([math.nan]))["mean"].isnan()


# ------------------------------------------------------------------------------------------- FFCC statistics
def test_prctile_is_matlab_not_numpy_default() -> None:
    # Values MATLAB prints (MathWorks answers 1861198 and 1619220).
    assert prctile(torch.arange(1.0, 6.0), [20, 40, 60, 80, 100]).tolist() == pytest.approx([1.5, 2.5, 3.5, 4.5, 5])
    assert prctile(torch.arange(1.0, 10.0), [25, 75]).tolist() == pytest.approx([2.75, 7.25])
    for n in (1, 2, 3, 4, 7, 10, 11):  # odd and even samples
        sample = torch.from_numpy(np.random.default_rng(n).gamma(2.0, size=n))
        for q in (0, 5, 25, 50, 75, 95, 100):
            assert prctile(sample, q).item() == pytest.approx(ref.matlab_prctile(sample.numpy(), q), rel=1e-12)
    e = np.arange(1.0, 5.0)
    assert prctile(torch.from_numpy(e), 25).item() != pytest.approx(np.percentile(e, 25))  # 1.5 vs 1.75


@pytest.mark.parametrize("n", [4, 9, 10, 21])
def test_error_statistics_match_ffcc_error_metrics(n: int) -> None:
    errors = np.random.default_rng(n).gamma(1.5, 2.0, size=n)
    ours = error_statistics(torch.from_numpy(errors))
    for name, value in ref.ffcc_error_metrics(errors).items():
        assert ours[name].item() == pytest.approx(value, rel=1e-12), name
    assert ours["p95"].item() == pytest.approx(ref.matlab_prctile(errors, 95), rel=1e-12)
    assert ours["undefined"].item() == 0


# ------------------------------------------------------------------------------------------- general_cc baselines
def _random_image(seed: int, size: tuple[int, int] = (40, 48), masked: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.random((*size, 3)) ** 2 * np.array([0.6, 0.9, 0.4]) * 1.2
    image = np.minimum(image, 1.0)  # some clipped pixels
    if masked:
        image[20:30, 25:35] = 0.0  # a masked chart, as the datasets zero it
        image[2:6, 5:9] = 1.0  # a clipped highlight
    return image


def _ours(image: np.ndarray, order: int, p: float, sigma: float) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    return general_colour_constancy(x, order=order, p=p, sigma=sigma).double()


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(
    ("order", "p", "sigma"),
    [(0, 1, 0), (0, 6, 0), (0, -1, 0), (0, 6, 2), (1, 6, 1), (1, 1, 2.5), (2, 6, 1), (2, 6, 1.5)],
)
def test_general_colour_constancy_matches_general_cc(order: int, p: float, sigma: float, masked: bool) -> None:
    for seed in range(2):
        image = _random_image(seed, masked=masked)
        mask_im = (image.max(axis=2) == 0).astype(np.float64)
        expected = torch.from_numpy(ref.general_cc(image, order, p, sigma, mask_im))[None]
        assert recovery_angular_error(_ours(image, order, p, sigma), expected).item() < 1e-3


def test_baseline_classes_are_the_reference_settings() -> None:
    x = torch.from_numpy(_random_image(3, masked=True)).permute(2, 0, 1)[None].float()
    settings = [(GrayWorld(), (0, 1, 0)), (ShadesOfGray(), (0, 6, 0)), (WhitePatch(), (0, -1, 0))]
    settings += [(GrayEdge(), (1, 6, 1)), (GrayEdge(order=2, sigma=2), (2, 6, 2))]
    for estimator, args in settings:
        expected = ref.general_cc(
            x[0].permute(1, 2, 0).double().numpy(), *args, mask_im=(x[0].amax(0) == 0).double().numpy()
        )
        assert recovery_angular_error(estimator(x).double(), torch.from_numpy(expected)[None]).item() < 1e-3


@pytest.mark.parametrize("percent", [0.1, 1.0, 5.0])
def test_gray_index_matches_the_reference(percent: float) -> None:
    """GrayIndex against the SciPy version of GPconstancy_GI.m, on textured images with charts and highlights."""
    for seed in range(3):
        image = _random_image(seed, size=(48, 64), masked=seed > 0)
        image[30:40, 2:12] = np.random.default_rng(seed).random((10, 10, 1)) * np.array([0.6, 0.9, 0.4])  # grey
        expected = torch.from_numpy(ref.grayness_index(image, npre=percent))[None]
        ours = GrayIndex(percent=percent)(torch.from_numpy(image).permute(2, 0, 1)[None].float()).double()
        assert recovery_angular_error(ours, expected).item() < 1e-2


def test_gray_index_finds_the_grey_surface() -> None:
    """Colourful surfaces with chromatic texture and one grey surface with achromatic texture: GI takes its colour,
    where Gray World is pulled by the colours."""
    rng = torch.Generator().manual_seed(0)
    light = torch.tensor([0.8, 0.5, 0.3])
    reflectance = torch.zeros(3, 128, 128)
    for i, colour in enumerate([(0.8, 0.2, 0.1), (0.1, 0.6, 0.2), (0.2, 0.3, 0.9), (0.7, 0.7, 0.1)]):
        texture = 1 + 0.3 * torch.randn(3, 32, 128, generator=rng)
        reflectance[:, 32 * i : 32 * (i + 1)] = torch.tensor(colour).view(3, 1, 1) * texture
    reflectance[:, 50:80, 50:80] = 0.5 * (1 + 0.3 * torch.randn(1, 30, 30, generator=rng))
    image = (reflectance.clamp_min(0.01) * light.view(3, 1, 1))[None]
    image = image / image.max() * 0.9
    assert recovery_angular_error(GrayIndex()(image), light[None]).item() < 0.5
    assert recovery_angular_error(GrayWorld()(image), light[None]).item() > 3.0


def test_gray_index_is_undefined_without_pixels() -> None:
    assert GrayIndex()(torch.zeros(1, 3, 32, 32)).isnan().all()
    with pytest.raises(ValueError, match="percent"):
        GrayIndex(percent=0)


@pytest.mark.parametrize("percent", [3.5, 10.0, 50.0])
def test_bright_dark_pca_matches_illumpca(percent: float) -> None:
    """BrightDarkPCA against the NumPy version of illumpca, with the baselines' mask of zeroed and clipped pixels."""
    for seed in range(3):
        image = _random_image(seed, masked=seed > 0)
        peak = image.max(axis=2)
        mask = (peak > 0) & (ref.dilation33((peak >= 1.0).astype(np.float64)) == 0)
        expected = torch.from_numpy(ref.illumpca(image, percent, mask))[None]
        ours = BrightDarkPCA(percent)(torch.from_numpy(image).permute(2, 0, 1)[None]).double()
        assert recovery_angular_error(ours, expected).item() < 1e-6


def test_bright_dark_pca_recovers_the_light_of_grey_surfaces_and_is_undefined_without_pixels() -> None:
    """Grey surfaces of any brightness lie on the light's line through the origin: the first component is the light,
    whatever colourful surfaces sit at medium brightness (Gray World is pulled by them)."""
    rng = torch.Generator().manual_seed(0)
    light = torch.tensor([0.8, 0.5, 0.3])
    grey = torch.rand(1, 32, 64, generator=rng) * light.view(3, 1, 1)
    colourful = (0.3 + 0.1 * torch.rand(1, 32, 64, generator=rng)) * torch.tensor([0.9, 0.1, 0.2]).view(3, 1, 1)
    image = torch.cat([grey, colourful * light.view(3, 1, 1)], dim=1)[None]
    assert recovery_angular_error(BrightDarkPCA(percent=10)(image), light[None]).item() < 0.5
    assert recovery_angular_error(GrayWorld()(image), light[None]).item() > 3.0
    assert BrightDarkPCA()(torch.zeros(2, 3, 8, 8)).isnan().all()
    single = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    torch.testing.assert_close(BrightDarkPCA()(single)[0], F.normalize(torch.tensor([0.2, 0.4, 0.6]), dim=0))
    with pytest.raises(ValueError, match="percent"):
        BrightDarkPCA(percent=60)


def test_mask_dilates_clipped_pixels_and_excludes_the_border() -> None:
    x = torch.full((1, 3, 16, 16), 0.5)
    x[..., 8, 8] = 1.0  # one clipped pixel
    x[..., 3, 12] = 0.0  # one masked pixel
    mask = estimation_mask(x, sigma=1.0)[0, 0]
    assert not mask[7:10, 7:10].any() and mask[8, 10] and mask[10, 8]  # 3 x 3 around the clipped pixel
    assert not mask[3, 12] and mask[3, 11] and mask[4, 12]  # masked pixels are not dilated
    assert not mask[:2].any() and not mask[-2:].any() and not mask[:, :2].any() and not mask[:, -2:].any()
    assert mask[2:-2, 2:-2].sum() == 12 * 12 - 9 - 1  # sigma + 1 = 2 border pixels, nothing more
    # Gray World (sigma 0) leaves out the outermost ring of pixels: a coloured frame there does not move it.
    scene = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.2
    framed = scene.clone()
    framed[..., [0, -1], :] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    framed[..., :, [0, -1]] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    assert torch.allclose(GrayWorld()(framed), GrayWorld()(scene), atol=1e-6)
    assert not torch.allclose(ShadesOfGray(sigma=1)(framed), ShadesOfGray(sigma=1)(scene), atol=1e-3)
    assert GrayWorld()(torch.zeros(1, 3, 8, 8)).isnan().all()  # no evidence: NaN, as the reference's 0 / 0


# ------------------------------------------------------------------------------------------- DAVIS boundary F
def _disc(size: int, radius: float, centre: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre) ** 2 + (xx - centre) ** 2 <= radius**2


def _labels(*masks: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(masks)).long()


def _shifted(mask: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    return np.roll(mask, shift, axis=(0, 1))


def test_grown_disc_scores_as_in_davis() -> None:
    truth, grown = _disc(256, 68, 128), _disc(256, 71, 128)
    assert tolerance_pixels(0.008, 256, 256) == 3  # ceil(0.008 * 362.0)
    expected = ref.davis_f_measure(grown, truth)
    assert expected == pytest.approx(0.887, abs=0.005)  # the figure for a disc grown by 3 px
    assert BoundaryFScore(2)(_labels(grown), _labels(truth)).item() == pytest.approx(expected, abs=1e-6)
    assert BoundaryFScore(2, tolerance=1)(_labels(grown), _labels(truth)).item() < 0.2  # 1 px is too tight


def test_boundary_map_and_edge_cases_match_davis() -> None:
    rng = np.random.default_rng(0)
    blobs = [rng.random((24, 40)) > t for t in (0.3, 0.5, 0.8)]
    for blob in blobs:
        assert torch.equal(seg2bmap(torch.from_numpy(blob)), torch.from_numpy(ref.seg2bmap(blob)))
    empty, square = np.zeros((32, 32), bool), _disc(32, 8, 16)
    metric = BoundaryFScore(2)
    assert metric(_labels(empty), _labels(empty)) == 1.0  # two masks without any boundary
    assert BoundaryFScore(2)(_labels(empty), _labels(square)) == 0.0  # nothing predicted
    assert BoundaryFScore(2)(_labels(square), _labels(empty)) == 0.0  # a boundary where there is none
    assert ref.davis_f_measure(empty, empty) == 1.0 and ref.davis_f_measure(empty, square) == 0.0


def test_per_image_mean_against_davis_with_void_and_classes() -> None:
    truths = [_disc(48, r, c) for r, c in ((10, 24), (6, 20), (14, 25))]
    preds = [_shifted(t, s) for t, s in zip(truths, ((1, 2), (4, -3), (0, 0)))]
    void = np.zeros((3, 48, 48), bool)
    void[0, :, :12] = True
    target = _labels(*truths)
    target[torch.from_numpy(void)] = 255
    pred = _labels(*preds)
    per_image = [ref.davis_f_measure(p, t, v) for p, t, v in zip(preds, truths, void)]
    assert BoundaryFScore(2)(pred, target).item() == pytest.approx(np.mean(per_image), abs=1e-6)
    # Multi-class: each class is a DAVIS object, averaged over images; a class nowhere present is not scored.
    target3 = torch.zeros(2, 48, 48, dtype=torch.long)
    target3[:, 10:30, 10:30] = 1
    target3[:, 30:40, 5:20] = 2
    pred3 = torch.stack([target3[0].roll(2, dims=-1), target3[1].roll((5, -4), dims=(0, 1))])
    scores = BoundaryFScore(4, average="none")(pred3, target3)
    for c in (1, 2):
        expected = np.mean([ref.davis_f_measure(p.numpy() == c, t.numpy() == c) for p, t in zip(pred3, target3)])
        assert scores[c].item() == pytest.approx(expected, abs=1e-6)
    assert scores[3].isnan()
    assert BoundaryFScore(4)(pred3, target3).item() == pytest.approx(scores[1:3].mean().item(), abs=1e-6)
    # Classes past the first 62 (one int64 bit field) are scored the same way.
    many = BoundaryFScore(70, average="none")(pred3 * 33, target3 * 33)
    assert many[33].item() == pytest.approx(scores[1].item()) and many[66].item() == pytest.approx(scores[2].item())


def test_pooled_variant_differs_from_the_per_image_mean_and_both_merge_like_ddp() -> None:
    big, small = _disc(64, 28, 32), _disc(64, 4, 32)
    preds, truths = [big, _shifted(small, (5, 5))], [big, small]
    counts = [ref.davis_counts(p, t) for p, t in zip(preds, truths)]
    per_image = np.mean([ref.davis_f_from_counts(*c) for c in counts])
    pooled = ref.davis_f_from_counts(*np.sum(counts, axis=0))
    pred, target = _labels(*preds), _labels(*truths)
    assert BoundaryFScore(2)(pred, target).item() == pytest.approx(per_image, abs=1e-6)
    assert PooledBoundaryFScore(2)(pred, target).item() == pytest.approx(pooled, abs=1e-6)
    assert pooled > per_image + 0.2  # the long, right boundary outweighs the missed small one when pooled
    # DDP sums the states: two half-batches merged give the full-batch score.
    for cls in (BoundaryFScore, PooledBoundaryFScore):
        a, b = cls(2), cls(2)
        a.update(pred[:1], target[:1])
        b.update(pred[1:], target[1:])
        a.merge_state(b)
        assert a.compute().item() == pytest.approx(cls(2)(pred, target).item(), abs=1e-9)
