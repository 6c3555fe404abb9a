"""`moto-vision data label-awb`, the `dng` / `raw_png` AWB formats and the "Camera AWB" test row, on generated DNGs.

The fixture DNGs hold a spectrally rendered scene with a ColorChecker under a known light through a known camera
matrix (tests/helpers/dng_captures.py), so the ground truth is exact.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from moto_vision.callbacks import AWBPredictionWriter
from moto_vision.data import AWBDataModule
from moto_vision.data.awb.formats import index_raw_png, write_capture_ground_truth
from moto_vision.data.curation.cli import data_main
from moto_vision.data.curation.label_awb import label_awb
from moto_vision.tasks import AWBRegressor
from tests.helpers.dng_captures import CaptureSpec, make_capture, patch_area_corners
from tests.helpers.training import quiet_trainer

pytest.importorskip("rawpy")
pytest.importorskip("cv2.mcc")
pytest.importorskip("colour")

SPECS = {
    "warm.dng": CaptureSpec(seed=1, cct=2900, angle=8, chart_width=0.45),
    "phone/rotated.dng": CaptureSpec(seed=2, cct=6500, angle=-12, orientation=6, upside_down=True, perspective=0.08),
    "noisy.dng": CaptureSpec(seed=3, cct=4300, angle=3, full_well=800, read_noise=4),
    "clipped.dng": CaptureSpec(seed=4, exposure=12.0),
    "dark.dng": CaptureSpec(seed=5, exposure=0.008),
    "no_chart.dng": CaptureSpec(seed=6, chart=False),
    "no_matrix.dng": CaptureSpec(seed=7, color_matrix=False),
    "mixed.dng": CaptureSpec(seed=8, size=(384, 640), cct=3000, second_chart_cct=6500, chart_width=0.3),
}
GOOD = ("warm.dng", "phone/rotated.dng", "noisy.dng")
EXPECTED_FAILURES = {
    "clipped.dng": "chart_clipped",
    "dark.dng": "patches_too_dark",
    "no_chart.dng": "no_chart",
    "no_matrix.dng": "missing_color_matrix",
    "mixed.dng": "charts_disagree",
    "truncated.dng": "truncated",
}


def _angle(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*")
            if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("label_awb")
    root, out = base / "captures", base / "dataset"
    captures = {name: make_capture(root / name, spec) for name, spec in SPECS.items()}
    good = (root / "warm.dng").read_bytes()
    (root / "truncated.dng").write_bytes(good[: len(good) // 2])
    before = _digest(root)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = data_main(["label-awb", str(root), "--out", str(out), "--workers", "1", "--no-progress"])
    labels = json.loads((out / "labels.json").read_text())
    return {
        "root": root,
        "out": out,
        "captures": captures,
        "code": code,
        "stdout": stdout.getvalue(),
        "stderr": stderr.getvalue(),
        "before": before,
        "results": {c["image"]: c for c in labels["captures"]},
    }


def test_labels_recover_the_illuminant_and_the_chart_mask(labelled: dict) -> None:
    for name in GOOD:
        result, truth = labelled["results"][name], labelled["captures"][name]
        assert result["code"] is None, result
        assert _angle(result["illuminant"], truth.illuminant) < 0.5, name
        height, width = result["size"]
        polygon = np.asarray(result["charts"][0]["polygon"]) * [width, height]
        corner_error = np.abs(polygon - truth.card * [width, height]).max()
        assert corner_error < 2.0, (name, corner_error)  # pixels of the 256 x 192 half-size image
        assert abs(result["camera_error"] - truth.spec.as_shot_error) < 0.5  # the phone's own AWB, measured
    rotated = labelled["results"]["phone/rotated.dng"]
    # Stored as 384 x 512 portrait (rotated), labelled in the displayed 512 x 384 frame.
    assert rotated["size"] == [192, 256] and rotated["metadata"]["orientation"] == 6
    assert (rotated["metadata"]["width"], rotated["metadata"]["height"]) == (512, 384)


def test_each_bad_capture_gets_one_clear_reason(labelled: dict) -> None:
    assert labelled["code"] == 1  # some captures failed
    assert "Traceback" not in labelled["stdout"] + labelled["stderr"]
    for name, code in EXPECTED_FAILURES.items():
        assert labelled["results"][name]["code"] == code, labelled["results"][name]
        assert labelled["results"][name]["reason"]
    with (labelled["out"] / "failures.csv").open() as handle:
        rows = {row["image"]: row for row in csv.DictReader(handle)}
    assert {name: row["code"] for name, row in rows.items()} == EXPECTED_FAILURES
    assert json.loads((labelled["out"] / "failures.json").read_text())[0]["reason"]
    template = (labelled["out"] / "overrides_template.yaml").read_text()
    assert '"no_chart.dng":' in template and "corners:" in template
    assert "3 labelled, 6 failed" in labelled["stdout"] and "charts_disagree" in labelled["stdout"]
    assert (labelled["out"] / "contact_sheet.png").stat().st_size > 10_000


def test_root_is_never_written_and_out_is_guarded(labelled: dict, tmp_path: Path) -> None:
    root, out = labelled["root"], labelled["out"]
    assert _digest(root) == labelled["before"]
    with pytest.raises(ValueError, match="inside the capture folder"):
        label_awb(root, root / "labels", progress=False)
    with pytest.raises(ValueError, match="not empty"):
        label_awb(root, out, progress=False)


def test_output_is_a_raw_png_dataset_the_tools_read(labelled: dict, tmp_path: Path) -> None:
    out = labelled["out"]
    records = index_raw_png(out)
    assert sorted(r.extra["source"] for r in records) == sorted(GOOD)
    record = next(r for r in records if r.extra["source"] == "warm.dng")
    assert len(record.extra["mask_polygons"]) == 1 and record.extra["camera"] == "Moto Fixture Phone"
    assert record.extra["iso"] == 200 and abs(record.extra["cct"] - 2900) < 60
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert data_main(["check", str(out), "--task", "awb", "--format", "raw_png", "--workers", "1"]) == 0
        assert (
            data_main(["split", str(out), "--task", "awb", "--format", "raw_png", "--out", str(tmp_path / "split")])
            == 0
        )
        report = ["report", str(out), "--task", "awb", "--format", "raw_png", "--out", str(tmp_path / "report")]
        assert data_main([*report, "--workers", "1", "--no-progress"]) == 0
    assert "0 errors" in printed.getvalue()
    rows = list(csv.DictReader((tmp_path / "report" / "samples.csv").open()))
    warm = next(row for row in rows if row["extra.source"] == "warm.dng")
    assert abs(float(warm["cct"]) - 2900) < 60  # the report's CCT goes through the capture's own colour matrix
    data = AWBDataModule(root=str(out), format="raw_png", image_size=64, val_fraction=0.34, test_fraction=0.0)
    data.setup("fit")
    sample = data.train_dataset[0]
    assert sample["image"].shape == (3, 64, 64) and sample["camera_matrices"].shape == (2, 3, 3)
    assert (~sample["valid"]).any()  # the chart is masked


def test_overrides_give_corners_or_exclude(labelled: dict, tmp_path: Path) -> None:
    root = tmp_path / "captures"
    capture = make_capture(root / "a.dng", SPECS["warm.dng"])
    make_capture(root / "b.dng", SPECS["no_chart.dng"])
    corners = patch_area_corners(capture).tolist()
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(json.dumps({"a.dng": {"corners": corners}, "b.dng": {"exclude": "nothing to label"}}))
    summary = label_awb(root, tmp_path / "out", overrides=overrides, workers=1, contact_sheet=False, progress=False)
    assert summary["labelled"] == 1 and summary["failures"] == {"excluded": 1}
    result = json.loads((tmp_path / "out" / "labels.json").read_text())["captures"][0]
    assert result["charts"][0]["source"] == "override"
    assert _angle(result["illuminant"], capture.illuminant) < 0.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"zzz.dng": {"corners": corners}}))
    with pytest.raises(ValueError, match="name no capture"):
        label_awb(root, tmp_path / "out2", overrides=bad, progress=False)


def test_dng_format_trains_and_test_prints_the_camera_awb_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pl.seed_everything(0)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        spec = CaptureSpec(
            size=(192, 256),
            seed=100 + i,
            cct=float(rng.uniform(2500, 8000)),
            chart_width=0.35,
            angle=float(rng.uniform(-20, 20)),
            as_shot_error=float(rng.uniform(1, 5)),
        )
        capture = make_capture(tmp_path / "dng" / f"c{i:02d}.dng", spec)
        rows.append({"image": f"c{i:02d}.dng", "illuminant": capture.illuminant, "charts": [capture.card.tolist()]})
    write_capture_ground_truth(tmp_path / "dng" / "ground_truth.csv", rows)
    data = AWBDataModule(
        root=str(tmp_path / "dng"),
        format="dng",
        image_size=64,
        batch_size=4,
        val_fraction=0.2,
        test_fraction=0.3,
        augmentation="none",
        relight=0.0,
    )
    model = AWBRegressor(backbone="mobilenetv3_small_050", image_size=64, log_predictions=False, lr=0.01)
    trainer = quiet_trainer(tmp_path / "run", max_steps=30, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    capsys.readouterr()
    trainer.test(model, datamodule=data, verbose=False)
    table = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert "Camera AWB (AsShotNeutral)" in table
    results = json.loads((tmp_path / "run" / "awb_test_results.json").read_text())
    camera = results["Camera AWB (AsShotNeutral)"]["recovery_mean"]
    assert 1.0 < camera < 5.0  # the AsShotNeutral errors drawn above
    model_row = next(v for k, v in results.items() if k.startswith("AWBRegressor"))
    assert model_row["recovery_mean"] < results["Gray World"]["recovery_mean"]  # it learned
    grid = model.render_batch(next(iter(data.test_dataloader())), torch.nn.functional.normalize(torch.rand(4, 3)))
    assert grid is not None and grid.shape[0] == 3
    # predict on a folder of DNGs: one CSV row per capture and a preview through its colour matrices
    predict = AWBDataModule(format="dng", root=str(tmp_path / "dng"), predict_root=str(tmp_path / "dng"), batch_size=8)
    writer = AWBPredictionWriter(output_dir=str(tmp_path / "predictions"), preview_size=96)
    quiet_trainer(tmp_path / "run", callbacks=[writer]).predict(model, datamodule=predict, return_predictions=False)
    rows = list(csv.DictReader((tmp_path / "predictions" / "predictions.csv").open()))
    assert len(rows) == 16 and all(1500 < float(row["cct"]) < 12000 for row in rows)
    assert all(0 <= float(row["camera_awb_deg"]) < 20 for row in rows)
    assert len(list((tmp_path / "predictions" / "previews").glob("*.png"))) == 16


def test_spec_counts_each_value_of_a_capture_column() -> None:
    from moto_vision.data.curation.spec import SpecError, evaluate_spec, load_spec, parse_spec

    spec = parse_spec(
        {
            "requirements": [
                {"attribute": "extra.light", "in": ["daylight", "tungsten", "led"], "each": True, "min_count": 2},
                {"attribute": "extra.camera", "each": True, "min_count": 2},
            ]
        }
    )
    rows = [{"extra.light": "daylight", "extra.camera": "A"}] * 2 + [{"extra.light": "tungsten", "extra.camera": "B"}]
    verdicts = {v.requirement: v.met for v in evaluate_spec(spec, rows, {})}
    assert verdicts == {
        "extra.light in ['daylight', 'tungsten', 'led']: daylight": True,
        "extra.light in ['daylight', 'tungsten', 'led']: tungsten": False,
        "extra.light in ['daylight', 'tungsten', 'led']: led": False,  # listed but absent: unmet, not skipped
        "extra.camera (each value): A": True,
        "extra.camera (each value): B": False,
    }
    with pytest.raises(SpecError, match="use in, not range"):
        parse_spec({"requirements": [{"attribute": "cct", "range": [2000, 3000], "each": True, "min_count": 1}]})
    assert load_spec(Path(__file__).resolve().parents[1] / "recipes" / "specs" / "awb_captures.yaml").task == "awb"


def test_summary_suggests_training_only_when_something_was_labelled() -> None:
    from moto_vision.data.curation.label_awb import main_summary

    base = {"captures": 1, "seconds": 1.0, "captures_per_second": 1.0, "workers": 1, "out": "/tmp/out"}
    none = main_summary({**base, "labelled": 0, "failed": 1, "failures": {"unreadable": 1}})
    assert "lightning fit" not in none and "nothing was labelled" in none
    some = main_summary({**base, "labelled": 1, "failed": 0, "failures": {}})
    assert "lightning fit --config recipes/awb.yaml --data.format raw_png --data.root /tmp/out" in some
