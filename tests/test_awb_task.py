"""AWBRegressor: model contract, baselines in the test table, checkpoints, recipes, and that it learns."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from moto_vision.callbacks import CPUThreads
from moto_vision.cli import main
from moto_vision.data import AWBDataModule
from moto_vision.metrics import recovery_angular_error
from moto_vision.models import GrayWorld
from moto_vision.tasks import AWBRegressor
from tests.helpers import awb_fixtures
from tests.helpers.training import quiet_trainer

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    return quiet_trainer(tmp_path, **kwargs)


def test_forward_contract_any_size_unit_norm() -> None:
    model = AWBRegressor(backbone="mobilenetv3_small_050", feature_level=2, image_size=64).eval()
    for shape in [(2, 3, 64, 64), (1, 3, 64, 96), (1, 3, 80, 64)]:
        out = model(torch.rand(*shape))
        assert out.shape == (shape[0], 3)
        assert torch.allclose(out.norm(dim=1), torch.ones(shape[0]), atol=1e-5) and (out > 0).all()
    # Exposure does not change the estimate (normalised inside the model).
    x = torch.rand(1, 3, 64, 64) * 0.5
    assert torch.allclose(model(x), model(x * 0.25), atol=1e-4)


def test_unused_backbone_stages_are_dropped() -> None:
    shallow = AWBRegressor(backbone="mobilenetv3_small_050", feature_level=2)
    deep = AWBRegressor(backbone="mobilenetv3_small_050", feature_level=4)
    assert sum(p.numel() for p in shallow.parameters()) < sum(p.numel() for p in deep.parameters()) / 5


def test_baseline_method_is_a_task_and_cannot_be_fitted(tmp_path: Path) -> None:
    model = AWBRegressor(backbone="mobilenetv3_small_050", feature_level=2, method="gray_world")
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(model(x), GrayWorld()(x))
    data = AWBDataModule(image_size=64, train_size=8, val_size=8, test_size=8, batch_size=4)
    with pytest.raises(RuntimeError, match="nothing to train"):
        _trainer(tmp_path, max_steps=1).fit(model, datamodule=data)


def test_every_baseline_is_a_method() -> None:
    """``method`` (a Literal, so that LightningCLI lists and checks it) names exactly the registered baselines."""
    from typing import get_args

    from moto_vision.models.awb import BASELINE_TITLES, BASELINES
    from moto_vision.tasks.awb import Method

    assert set(get_args(Method)) == {"learned", *BASELINES} and set(BASELINE_TITLES) == set(BASELINES)
    x = torch.rand(1, 3, 64, 64)
    model = AWBRegressor(backbone="mobilenetv3_small_050", method="gray_index")
    assert torch.allclose(model(x), BASELINES["gray_index"]()(x))


def test_test_prints_one_table_with_baselines_and_saves_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = AWBRegressor(backbone="mobilenetv3_small_050", feature_level=2, image_size=64)
    data = AWBDataModule(image_size=64, train_size=8, val_size=8, test_size=24, batch_size=8)
    trainer = _trainer(tmp_path)
    results = trainer.test(model, datamodule=data, verbose=False)[0]
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names == [
        "Gray World",
        "White Patch (max-RGB)",
        "White Patch (99th pct, not general_cc)",
        "Shades of Gray (p=6)",
        "Gray Edge (1st order, p=6, sigma=1)",
        "Grayness Index (0.1% gray pixels)",
        "Cheng PCA (3.5% brightest + darkest)",
        "AWBRegressor (mobilenetv3_small_050, confidence head)",
    ]
    assert "Rec. Med." in rows[0] and "Rep. Med." in rows[0]
    saved = json.loads((tmp_path / "awb_test_results.json").read_text())
    assert saved["AWBRegressor (mobilenetv3_small_050, confidence head)"]["recovery_median"] == pytest.approx(
        results["test_recovery_median"], rel=1e-5
    )
    # The Gray World row is Gray World on the very same test images.
    images = torch.stack([data.test_dataset[i]["image"] for i in range(24)])
    lights = torch.stack([data.test_dataset[i]["illuminant"] for i in range(24)])
    gw_errors = recovery_angular_error(GrayWorld()(images), lights).double()
    assert saved["Gray World"]["recovery_median"] == pytest.approx(float(torch.quantile(gw_errors, 0.5)), rel=1e-4)


def test_render_batch_grid() -> None:
    model = AWBRegressor(backbone="mobilenetv3_small_050", feature_level=2)
    images = torch.rand(3, 3, 64, 64) * 0.3
    lights = torch.nn.functional.normalize(torch.rand(3, 3) + 0.1, dim=1)
    grid = model.render_batch({"image": images, "illuminant": lights}, lights, max_images=2)
    assert grid.shape[0] == 3 and grid.min() >= 0 and grid.max() <= 1
    assert grid.shape[1] > grid.shape[2] / 3  # two rows of three panels


@pytest.mark.slow
def test_short_training_beats_gray_world(tmp_path: Path) -> None:
    pl.seed_everything(0)
    threads = torch.get_num_threads()
    data = AWBDataModule(image_size=64, train_size=512, val_size=32, test_size=192, batch_size=32, seed=0)
    model = AWBRegressor(backbone="mobilenetv3_small_050", image_size=64, log_predictions=False)
    trainer = _trainer(tmp_path, max_steps=250, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[CPUThreads(1)])
    trainer.fit(model, datamodule=data)
    assert torch.get_num_threads() == threads  # CPUThreads gave the threads back
    data.setup("test")
    model.eval()
    images = torch.stack([data.test_dataset[i]["image"] for i in range(192)])
    lights = torch.stack([data.test_dataset[i]["illuminant"] for i in range(192)])
    with torch.no_grad():
        ours = recovery_angular_error(model(images), lights).median().item()
    gray_world = recovery_angular_error(GrayWorld()(images), lights).median().item()
    print(f"median recovery error after 250 steps: ours {ours:.2f}, Gray World {gray_world:.2f}")
    assert ours < 0.6 * gray_world, (ours, gray_world)


def test_recipe_fit_then_test_best_prints_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = [
        "--config",
        str(RECIPES / "awb.yaml"),
        "--trainer.default_root_dir",
        str(tmp_path),
        "--data.train_size",
        "64",
        "--data.val_size",
        "32",
        "--data.test_size",
        "32",
    ]
    assert main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.enable_model_summary", "false"]) == 0
    assert list(tmp_path.rglob("best.ckpt")) and list(tmp_path.rglob("last.ckpt"))
    capsys.readouterr()
    assert main(["test", *common, "--ckpt_path", "best"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "replace the config" not in captured.err  # the recipe leaves locus_band unset: no choice was replaced
    title = "AWBRegressor (classical votes, trained beside mobilenetv3_small_100 local votes)"  # no backbone deployed
    assert "| Gray World |" in out and f"| {title} |" in out
    model = AWBRegressor.load_from_checkpoint(next(tmp_path.rglob("best.ckpt")))
    assert model.hparams.feature_level == 1 and model(torch.rand(1, 3, 64, 64)).shape == (1, 3)
    assert model.hparams.classical_votes and model.head.classical_votes  # the recipe's options reach the head
    assert model.head.vote_chromaticity == "relative" and model.head.local_votes == "training"
    assert not model.head.vote_features and not model.eval().kit.needs_features(model)  # deployed: no backbone
    assert model.head.vote_mlp[0].out_features == model.hparams.vote_hidden == 8


def test_last_checkpoint_is_the_last_epoch_when_the_best_is_an_earlier_one(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # lr 0: the validation score never improves after epoch 0, so best.ckpt stays at epoch 0; last.ckpt must still be
    # the state after the final epoch (Lightning's save_last=True would leave it at the best epoch too).
    common = ["--config", str(RECIPES / "awb.yaml"), "--trainer.default_root_dir", str(tmp_path)]
    common += ["--data.train_size", "32", "--data.val_size", "16", "--data.test_size", "16"]
    args = ["--model.init_args.lr", "0", "--trainer.max_epochs", "3", "--trainer.enable_model_summary", "false"]
    assert main(["fit", *common, *args]) == 0
    err = capsys.readouterr().err
    best, last = next(tmp_path.rglob("best.ckpt")), next(tmp_path.rglob("last.ckpt"))
    assert f"Last checkpoint: {last}" in err
    best_state = torch.load(best, map_location="cpu", weights_only=True)
    last_state = torch.load(last, map_location="cpu", weights_only=True)
    assert best_state["epoch"] == 0 and last_state["epoch"] == 2
    assert sorted(p.name for p in best.parent.iterdir()) == ["best.ckpt", "last.ckpt"]  # nothing else written


def test_locus_prior_rows_and_a_replaced_option_is_said(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["--config", str(RECIPES / "awb.yaml"), "--trainer.default_root_dir", str(tmp_path)]
    common += ["--data.train_size", "32", "--data.val_size", "16", "--data.test_size", "16"]
    fit = [
        "--trainer.max_epochs",
        "1",
        "--trainer.enable_model_summary",
        "false",
        "--model.init_args.locus_band",
        "0.05",
    ]
    assert main(["fit", *common, *fit]) == 0
    capsys.readouterr()
    assert main(["test", *common, "--ckpt_path", "best"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "replace the config" not in captured.err  # the recipe leaves locus_band unset: no choice was replaced
    # With the camera known (synthetic batches carry it), the baselines are also scored with the prior: its own gain.
    assert "| White Patch (max-RGB) |" in out and "| White Patch (max-RGB) + locus prior |" in out
    assert "local votes) + locus prior |" in out
    # Lightning builds the model from the checkpoint's options: a different one on the command line is not used, and
    # that is said rather than silent.
    assert main(["test", *common, "--ckpt_path", "best", "--model.init_args.locus_band", "0.1"]) == 0
    captured = capsys.readouterr()
    assert "replace the config's: locus_band 0.05 (config: 0.1)" in captured.err
    assert "| White Patch (max-RGB) + locus prior |" in captured.out


@pytest.mark.parametrize(
    "recipe,maker", [("awb_cube_plus.yaml", "make_cube_plus"), ("awb_gehler_shi.yaml", "make_gehler_shi")]
)
def test_real_dataset_recipes_run_on_fixtures(tmp_path: Path, recipe: str, maker: str) -> None:
    getattr(awb_fixtures, maker)(tmp_path / "data")
    code = main(
        [
            "fit",
            "--config",
            str(RECIPES / recipe),
            "--data.root",
            str(tmp_path / "data"),
            "--data.image_size",
            "64",
            "--model.image_size",
            "64",
            "--data.batch_size",
            "2",
            "--trainer.fast_dev_run",
            "true",
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0
