"""The one format table, exporter options, graphs with more than one input, and options / data from YAML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("executorch")

from moto_vision.cli import main  # noqa: E402
from moto_vision.deploy import ExportSession, load  # noqa: E402
from moto_vision.deploy.formats import FORMATS, format_for_path  # noqa: E402
from moto_vision.deploy.source import datamodule_from_config  # noqa: E402
from tests.helpers.deploy import make_checkpoint  # noqa: E402
from tests.helpers.toy import ToyCameraClassifier, ToyClassifier, ToyDataModule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_the_table_names_every_column_once():
    for name, export_format in FORMATS.items():
        assert export_format.name == name and format_for_path(f"model{export_format.suffix}") is export_format
        assert ":" in export_format.exporter and ":" in export_format.predictor
    assert dict(FORMATS["onnx"].options) == {"dynamic_batch": True, "opset_version": None}
    with pytest.raises(ValueError, match="no option"):
        FORMATS["onnx"].resolve_options({"dynamic_batchh": False})
    with pytest.raises(ValueError, match="unknown model format '.py'"):
        load(Path(__file__))  # an existing file of no known format


@pytest.fixture(scope="module")
def camera_session() -> ExportSession:
    torch.manual_seed(0)
    task = ToyCameraClassifier().eval()
    with torch.no_grad():
        task.camera.weight.normal_()  # the second input must matter
    return ExportSession(task, image_size=32, parity_batches=2)


def test_a_graph_with_a_second_input_exports_and_runs(camera_session, tmp_path):
    result = camera_session.export("onnx", "fp32", tmp_path)
    assert result.status == "verified", result.error
    model = load(result.path)
    assert [i["name"] for i in model.metadata["inputs"]] == ["image", "camera"]
    images, camera = torch.rand(2, 3, 32, 32), torch.rand(2, 9)
    with torch.no_grad():
        expected = camera_session.task(images, camera)
    assert torch.allclose(model(images, camera), expected, atol=1e-4)
    assert torch.allclose(model(images, camera=camera), expected, atol=1e-4)
    assert not torch.allclose(model(images, torch.zeros(2, 9)), expected, atol=1e-3)
    with pytest.raises(ValueError, match="camera"):
        model(images)


def test_int8_calibrates_every_input_and_exporter_options_reach_the_exporter(tmp_path):
    session = ExportSession(ToyCameraClassifier().eval(), None, ToyDataModule(batch_size=8), image_size=32)
    session.calibration_count, session.parity_count = 8, 1
    with pytest.raises(ValueError, match="opset"):  # a misspelt option is an error before any work
        session.export("onnx", "int8", tmp_path, options={"onnx": {"opset": 18}})
    result = session.export("onnx", "int8", tmp_path, options={"onnx": {"dynamic_batch": False}})
    assert result.status == "verified", result.error
    assert result.info["calibration_images"] == 8 and len(session.calibration()[0]) == 2  # image and camera
    assert result.info["options"] == {"dynamic_batch": False, "opset_version": None}
    assert not load(result.path).dynamic_batch  # batch 1, as asked


# ------------------------------------------------------------------------------------------- YAML
@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(ToyClassifier(), ToyDataModule(), tmp_path_factory.mktemp("yaml") / "toy.ckpt", steps=1)


def test_export_options_from_a_yaml_file(toy_checkpoint, tmp_path, capsys):
    options = tmp_path / "export.yaml"
    options.write_text(f"format: [onnx]\noutput: {tmp_path / 'out'}\nno_verify: true\nname: from_yaml\n")
    assert main(["export", "--config", str(options), "--ckpt", str(toy_checkpoint)]) == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "from_yaml.onnx").is_file()
    with pytest.raises(SystemExit):  # --print_config writes such a file, with the command line merged in
        main(["export", "--config", str(options), "--name", "other", "--print_config"])
    printed = capsys.readouterr().out
    assert "name: other" in printed and "no_verify: true" in printed
    options.write_text("formatt: onnx\n")
    with pytest.raises(SystemExit) as exit_:  # a misspelt key is an error, never silently ignored
        main(["export", "--config", str(options), "--ckpt", str(toy_checkpoint)])
    assert exit_.value.code == 2 and "formatt" in capsys.readouterr().err


def test_benchmark_reads_a_recipe_passed_as_config_as_before(toy_checkpoint, tmp_path, capsys):
    args = ["benchmark", "--config", str(ROOT / "tests/toy_recipe.yaml"), "--ckpts", str(toy_checkpoint)]
    assert main([*args, "--formats", "pytorch", "--runs", "1", "--warmup", "0", "--output", str(tmp_path)]) == 0
    assert "reading `--config" in capsys.readouterr().err
    assert json.loads((tmp_path / "sweep.json").read_text())["rows"]


def test_data_config_goes_through_the_training_parser(tmp_path):
    pytest.importorskip("omegaconf")  # the recipes' ${...} interpolation, as in `fit`
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model:\n  class_path: tests.helpers.toy.ToyClassifier\n"
        "data:\n  class_path: tests.helpers.toy.ToyDataModule\n"
        "  init_args:\n    train_size: 12\n    batch_size: ${data.init_args.train_size}\n"
        "trainer:\n  max_epochs: 1\n"
    )
    datamodule = datamodule_from_config(recipe)
    assert (datamodule.train_size, datamodule.batch_size) == (12, 12)
    recipe.write_text(recipe.read_text().replace("max_epochs", "max_epoks"))
    with pytest.raises(ValueError, match="max_epoks"):  # the whole recipe is validated, as `fit` would
        datamodule_from_config(recipe)
    data_only = tmp_path / "data.yaml"
    data_only.write_text("data:\n  class_path: tests.helpers.toy.ToyDataModule\n  init_args:\n    batch_size: 4\n")
    assert datamodule_from_config(data_only).batch_size == 4
    data_only.write_text("data:\n  class_path: tests.helpers.toy.ToyDataModule\n  init_args:\n    batch_sise: 4\n")
    with pytest.raises(ValueError, match="batch_sise"):  # no silently dropped keys
        datamodule_from_config(data_only)
