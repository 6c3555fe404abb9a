"""Cameras and spectra of the synthetic AWB data: the pool, the fairness rule, spectral rendering, ground truth,
leave-cameras-out splits, one-sensor data and the camera-aware model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from moto_vision.data import AWBDataModule
from moto_vision.data.awb.synthetic import MondrianConfig, render_mondrians
from moto_vision.isp import spectral
from moto_vision.isp.camera_matrices import ADOBE_XYZ_TO_RAW, BENCHMARK_CAMERAS, is_benchmark_camera
from moto_vision.isp.cameras import CameraPool, camera_from_spec
from moto_vision.metrics import recovery_angular_error
from moto_vision.tasks import AWBRegressor

colour = pytest.importorskip("colour")


def _angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return recovery_angular_error(a.double().reshape(-1, 3), b.double().reshape(-1, 3))


def test_no_benchmark_camera_in_the_pool() -> None:
    benchmark_matrices = {m for _, m in BENCHMARK_CAMERAS.values() if m is not None}
    for name, matrix in ADOBE_XYZ_TO_RAW.items():
        assert is_benchmark_camera(name, matrix) is None, name
        assert tuple(matrix) not in benchmark_matrices, name
    for name in CameraPool.default().names:  # the measured cameras too (no Canon EOS 5D Mark II)
        assert is_benchmark_camera(name) is None, name
    # The rule catches variants and other names of a benchmark sensor.
    assert is_benchmark_camera("Canon EOS 5D Mark II") and is_benchmark_camera("Nikon D810A")
    assert is_benchmark_camera("Olympus E-PM2", (8380, -2630, -639, -2887, 10725, 2496, -627, 1427, 5438))
    assert len(ADOBE_XYZ_TO_RAW) > 300


def _binned(sd) -> np.ndarray:
    sd = sd.copy().align(colour.SpectralShape(380, 780, 1))
    w, v = sd.wavelengths, sd.values
    return np.stack([v[(w >= c - 5) & (w < c + 5)].mean(axis=0) for c in spectral.WAVELENGTHS.numpy()])


def test_spectral_rendering_matches_colour_science() -> None:
    data = spectral.spectral_data()
    sens = data["camera_sensitivities"][data["camera_names"].index("Nikon D5100 (NPL measured)")]
    npl = colour.characterisation.MSDS_CAMERA_SENSITIVITIES["Nikon 5100 (NPL)"]
    patches = list(colour.characterisation.SDS_COLOURCHECKERS["BabelColor Average"].values())[:6]
    for light_name, spd in (("A", spectral.planck_spd(2856.0)), ("D50", spectral.daylight_spd(5003.0))):
        reference = colour.SDS_ILLUMINANTS[light_name]
        # The analytic lights have the shape of the CIE tables.
        assert np.corrcoef(spd.numpy(), _binned(reference))[0, 1] > 0.999
        for patch in patches:
            shape = colour.SpectralShape(400, 700, 5)
            s = npl.copy().align(shape).values
            e = reference.copy().align(shape).values
            r = patch.copy().align(shape).values
            expected = (s * (e * r)[:, None]).sum(axis=0)  # colour-science's tables at 5 nm
            ours = spectral.camera_response(sens, spd * torch.from_numpy(_binned(patch)))
            assert _angle(ours, torch.from_numpy(expected)).item() < 0.5


def test_sensitivities_from_a_matrix_resemble_the_measured_camera() -> None:
    data = spectral.spectral_data()
    measured = data["camera_sensitivities"][data["camera_names"].index("Nikon D5100 (NPL measured)")]
    adobe = torch.tensor(ADOBE_XYZ_TO_RAW["Nikon D5100"], dtype=torch.float64).view(3, 3) / 1e4
    fitted = spectral.sensitivities_from_matrix(adobe)
    assert (fitted >= 0).all()
    assert (torch.nn.functional.cosine_similarity(fitted, measured, dim=0) > 0.95).all()
    refit = spectral.fit_xyz_to_raw(fitted)
    assert ((refit - adobe).norm() / adobe.norm()).item() < 0.1  # its colour matrix is the one asked for


def test_ground_truth_is_the_grey_surfaces_raw_colour_in_each_scenes_camera() -> None:
    # Grey surfaces only, no jitter / glints / second light / noise: every pixel has the colour of the light.
    config = MondrianConfig(
        neutral_share=1.0,
        neutral_tint=0.0,
        theme_strength=(0.0, 0.0),
        measured_share=0.0,
        specular_share=0.0,
        two_light_share=0.0,
        shot_range=(1e-12, 1e-12),
        masked_share=0.0,
        jitter=0.0,
    )
    generators = [torch.Generator().manual_seed(i) for i in range(6)]
    out = render_mondrians(generators, 32, config)
    assert not torch.allclose(out["camera"][0], out["camera"][1])  # a camera per scene
    for image, light, valid in zip(out["image"], out["illuminant"], out["valid"]):
        pixels = image.flatten(1).T[valid.flatten()]
        assert _angle(pixels, light.expand_as(pixels)).max().item() < 0.05
    # Reproducible: a scene is a function of its generator.
    again = render_mondrians([torch.Generator().manual_seed(3)], 32, config)
    assert torch.equal(again["image"][0], out["image"][3])


def test_leave_cameras_out_splits_are_disjoint_and_evaluation_uses_pool_cameras() -> None:
    data = AWBDataModule(train_size=8, val_size=8, test_size=8, image_size=32)
    data.setup("fit")
    pools = data.camera_pools
    names = {split: set(pool.names) for split, pool in pools.items()}
    assert not names["train"] & names["val"] and not names["train"] & names["test"] and not names["val"] & names["test"]
    assert len(names["train"]) > 200 and len(names["test"]) > 40
    data.setup("test")
    test_cameras = torch.stack([data.test_dataset[i]["camera"] for i in range(8)]).double()
    held_out = pools["test"].xyz_to_raw()
    for camera in test_cameras:  # exactly one of the held-out cameras, no variation
        assert (held_out - camera).flatten(1).norm(dim=1).min() < 1e-4 * camera.norm()


def test_one_sensor_from_a_name_a_matrix_or_a_file(tmp_path: Path) -> None:
    matrix = [v / 1e4 for v in ADOBE_XYZ_TO_RAW["Sony ILCE-7M3"]]
    (tmp_path / "cam.json").write_text(json.dumps({"xyz_to_raw": matrix}))
    data = spectral.spectral_data()
    sens = data["camera_sensitivities"][0].numpy()
    rows = ["wavelength,r,g,b"] + [f"{w},{r},{g},{b}" for w, (r, g, b) in zip(spectral.WAVELENGTHS.tolist(), sens)]
    (tmp_path / "sens.csv").write_text("\n".join(rows) + "\n")
    from_json = camera_from_spec(str(tmp_path / "cam.json"))
    assert torch.allclose(from_json.sensitivities, camera_from_spec(matrix).sensitivities)
    assert torch.allclose(
        camera_from_spec(str(tmp_path / "sens.csv")).sensitivities, CameraPool.default().sensitivities[:1]
    )
    with pytest.raises(ValueError, match="did you mean"):
        camera_from_spec("Sony ILCE")
    dm = AWBDataModule(camera=str(tmp_path / "cam.json"), train_size=4, val_size=4, test_size=4, image_size=32)
    dm.setup("test")
    cameras = torch.stack([dm.test_dataset[i]["camera"] for i in range(4)])
    assert torch.allclose(cameras, cameras[0].expand_as(cameras))


def test_camera_aware_model_is_gain_equivariant_and_exports_with_a_baked_camera(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = AWBRegressor(
        backbone="mobilenetv3_small_050", feature_level=1, gain_equivariant=True, camera_input=True
    ).eval()
    for p in model.camera_head.mlp[-1].parameters():  # a trained-looking, non-zero refinement
        torch.nn.init.normal_(p, std=0.3)
    x = torch.rand(2, 3, 64, 64) * 0.5
    camera = (torch.tensor(ADOBE_XYZ_TO_RAW["Nikon D750"]).float().view(3, 3) / 1e4).expand(2, 3, 3)
    gains = torch.tensor([1.8, 1.0, 0.6])
    with torch.no_grad():
        plain, aware = model(x), model(x, camera)
        moved = model(x * gains[:, None, None], gains[:, None] * camera)
    assert not torch.allclose(plain, aware, atol=1e-3)  # the camera is used
    assert _angle(moved, torch.nn.functional.normalize(aware * gains, dim=1)).max().item() < 1e-3
    assert _angle(model(x * gains[:, None, None]), torch.nn.functional.normalize(plain * gains, dim=1)).max() < 1e-3
    baked = AWBRegressor(
        backbone="mobilenetv3_small_050",
        feature_level=1,
        gain_equivariant=True,
        camera_input=True,
        export_camera=camera[0].flatten().tolist(),
    ).eval()
    baked.load_state_dict(model.state_dict())
    graph = baked.export_module()
    with torch.no_grad():
        assert torch.allclose(graph(x), aware, atol=1e-6)
    program = torch.export.export(graph, (x[:1],))  # what the ExecuTorch and ONNX exporters trace
    assert torch.allclose(program.module()(x[:1]), aware[:1], atol=1e-5)
    # Without a baked camera the graph takes the image and the camera, as `moto-vision export` gets them.
    inputs = model.export_inputs(x[:1])
    assert list(inputs) == ["image", "camera"] and inputs["camera"].shape == (1, 3, 3)
    two = torch.export.export(model.export_module(), (x[:1], camera[:1]))
    assert torch.allclose(two.module()(x[:1], camera[:1]), aware[:1], atol=1e-5)


def test_one_sensor_from_one_of_its_dngs(tmp_path: Path) -> None:
    pytest.importorskip("pidng")
    pytest.importorskip("tifffile")
    from moto_vision.data.raw import dng_camera_matrix, read_raw_metadata
    from moto_vision.isp import interpolate_xyz_to_camera
    from tests.helpers.dng_captures import CaptureSpec, make_capture

    capture = make_capture(tmp_path / "sensor.dng", CaptureSpec(size=(32, 48)))
    matrices, ccts = read_raw_metadata(capture.path).xyz_to_camera()
    # The matrix the DNG colour model uses for D65, written here from the two tags (ColorMatrix2 is D65's).
    d65 = matrices[int(torch.argmin((ccts - 6504.0).abs()))]
    found = torch.tensor(dng_camera_matrix(capture.path), dtype=torch.float64).view(3, 3)
    assert torch.allclose(found, d65.double(), atol=1e-9)
    assert torch.allclose(interpolate_xyz_to_camera(matrices, ccts, 6504.0), d65.double())
    from_dng = AWBDataModule(camera=str(capture.path)).synthetic_cameras()["train"]
    assert torch.allclose(from_dng.sensitivities, camera_from_spec(d65.flatten().tolist()).sensitivities)
    bare = CaptureSpec(size=(32, 48), color_matrix=False)
    with pytest.raises(ValueError, match="no ColorMatrix1/2 tag"):
        AWBDataModule(camera=str(make_capture(tmp_path / "bare.dng", bare).path)).synthetic_cameras()


def _distance_to_locus(estimate: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Written from the definition: the smallest log-chromaticity distance to 4000 locus points (1800-16000 K)."""
    from moto_vision.isp.color import planckian_xyz

    cct = torch.exp(torch.linspace(np.log(1800.0), np.log(16000.0), 4000, dtype=torch.float64))
    locus = torch.einsum("ij,kj->ki", camera.double(), planckian_xyz(cct))

    def chroma(v: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.log(v[..., 0] / v[..., 1]), torch.log(v[..., 2] / v[..., 1])], dim=-1)

    return (chroma(estimate.double())[:, None] - chroma(locus)[None]).norm(dim=-1).min(dim=1).values


def test_locus_prior_keeps_estimates_within_the_band_of_the_cameras_locus() -> None:
    from moto_vision.isp.color import planckian_xyz
    from moto_vision.models import LocusPrior

    camera = torch.tensor(ADOBE_XYZ_TO_RAW["Nikon D750"]).double().view(3, 3) / 1e4
    on_locus = torch.nn.functional.normalize(
        torch.einsum("ij,kj->ki", camera, planckian_xyz(torch.tensor([2300.0, 3100.0, 5200.0, 9000.0]).double())), dim=1
    )
    cameras = camera.float().expand(4, 3, 3)
    # A light on the locus stays where it is; estimates pushed off it (green, magenta) come back to the band.
    assert _angle(LocusPrior(0.0)(on_locus.float(), cameras), on_locus).max() < 0.02
    off = on_locus * torch.tensor([[1.0, 1.25, 1.0], [1.0, 0.8, 1.0], [1.0, 1.15, 1.0], [1.0, 0.9, 1.0]]).double()
    assert (_distance_to_locus(off, camera) > 0.08).all()
    for band in (0.0, 0.03, 0.05):
        kept = LocusPrior(band)(off.float(), cameras)
        assert torch.allclose(_distance_to_locus(kept, camera), torch.full((4,), band, dtype=torch.float64), atol=2e-3)
        assert torch.allclose(kept.norm(dim=1), torch.ones(4), atol=1e-6)
    near = on_locus * torch.tensor([1.0, 1.02, 1.0]).double()  # within the band: untouched
    assert _angle(LocusPrior(0.05)(near.float(), cameras), near).max() < 1e-3
    # Gains on the raw channels move the locus with the estimate: the prior commutes with them.
    gains = torch.tensor([1.8, 1.0, 0.6])
    moved = LocusPrior(0.03)(off.float() * gains, gains[:, None] * cameras)
    assert _angle(moved, LocusPrior(0.03)(off.float(), cameras) * gains).max() < 1e-3
    with pytest.raises(ValueError, match="band must be >= 0"):
        LocusPrior(-0.1)


def test_locus_band_acts_only_when_the_camera_is_known_and_exports_with_it() -> None:
    torch.manual_seed(0)
    options = dict(backbone="mobilenetv3_small_050", feature_level=1, classical_votes=True, head_channels=16)
    options.update(vote_features=False, local_votes="training", vote_chromaticity="relative")
    plain = AWBRegressor(**options).eval()
    model = AWBRegressor(**options, locus_band=0.05).eval()
    model.load_state_dict(plain.state_dict())  # the prior has no weights
    x = torch.rand(3, 3, 64, 64) * torch.tensor([0.3, 1.0, 0.9])[:, None, None]
    camera = (torch.tensor(ADOBE_XYZ_TO_RAW["Nikon D750"]).float().view(3, 3) / 1e4).expand(3, 3, 3)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))  # no camera: the camera-agnostic estimate
        kept = model(x, camera)
        assert torch.equal(plain(x, camera), plain(x))  # a model without the option ignores the camera
    assert (_distance_to_locus(kept, camera[0]) <= 0.05 + 2e-3).all()
    assert model.takes_camera and not plain.takes_camera
    training, plain_training = copy.deepcopy(model).train(), copy.deepcopy(plain).train()  # (BatchNorm statistics)
    assert torch.equal(training(x, camera), plain_training(x))  # not in training: the network learns without it
    # Exported: the camera is a second input, or baked in with export_camera (one file per sensor).
    inputs = model.export_inputs(x[:1])
    assert list(inputs) == ["image", "camera"]
    program = torch.export.export(model.export_module(), (x[:1], camera[:1]))
    with torch.no_grad():
        one = model(x[:1], camera[:1])  # (batch 1 and batch 3 convolutions round differently, by ~1e-4)
        assert torch.allclose(program.module()(x[:1], camera[:1]), one, atol=1e-5)
    baked = AWBRegressor(**options, locus_band=0.05, export_camera=camera[0].flatten().tolist()).eval()
    baked.load_state_dict(plain.state_dict())
    assert list(baked.export_inputs(x[:1])) == ["image"]
    with torch.no_grad():
        assert torch.allclose(baked.export_module()(x), kept, atol=1e-5)
    # export_camera also takes what --data.camera takes, recorded as the matrix the one-sensor batches carry.
    named = AWBRegressor(**options, locus_band=0.05, export_camera="Nikon D750")
    d750 = AWBDataModule(camera="Nikon D750").synthetic_cameras()["val"].xyz_to_raw()[0].flatten()
    assert torch.allclose(torch.tensor(named.hparams.export_camera, dtype=torch.float64), d750, atol=1e-9)
    with pytest.raises(ValueError, match="export_camera: 'Nikon D7500000'"):
        AWBRegressor(**options, locus_band=0.05, export_camera="Nikon D7500000")
    # int8 exports keep the prior in float (logs and exponentials of channel ratios): an ExecuTorch int8 export of a
    # trained model moved a component of the estimate by 2.76 with it quantized, by 0.003 with it in float.
    from moto_vision.deploy.quantize import float_only_classes
    from moto_vision.models import LocusPrior

    assert LocusPrior in float_only_classes(model)
    # A trained checkpoint takes it afterwards.
    plain.set_locus_band(0.05)
    with torch.no_grad():
        assert torch.allclose(plain(x, camera), kept) and plain.hparams.locus_band == 0.05
    with pytest.raises(ValueError, match="locus_band must be >= 0"):
        AWBRegressor(**options, locus_band=-1.0)
