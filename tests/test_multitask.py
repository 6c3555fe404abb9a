"""MultiTaskPerception and MultiTaskDataModule: partial labels, loss weighting, per-head metrics, head subsets,
backbone transfer, learning on every head, the export graph and the recipe."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from moto_vision.backbones import create_backbone
from moto_vision.cli import main, recipe_datamodule
from moto_vision.data import MultiTaskDataModule
from moto_vision.data.multitask import (
    AWBDataOptions,
    PortraitDataOptions,
    SceneDataOptions,
    UnprocessToCamera,
    merge_task_batches,
)
from moto_vision.deploy.source import build_datamodule
from moto_vision.metrics.angular import recovery_angular_error
from moto_vision.models import FixedWeighting, GradNormWeighting, GrayWorld, UncertaintyWeighting
from moto_vision.tasks import MultiTaskPerception, SceneClassifier
from tests.helpers.training import quiet_trainer

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "mobilenetv3_small_050"
SIZE = 48


def _batch(parts: tuple[str, ...] = ("awb", "portrait", "scene"), n: int = 4, size: int = SIZE) -> dict:
    pieces = {}
    if "awb" in parts:
        generator = torch.Generator().manual_seed(0)
        light = torch.rand(n, 3, generator=generator) + 0.2
        pieces["awb"] = {
            "image": torch.rand(n, 3, size, size, generator=generator),
            "illuminant": light / light.norm(dim=1, keepdim=True),
        }
    if "portrait" in parts:
        generator = torch.Generator().manual_seed(1)
        pieces["portrait"] = {
            "image": torch.rand(n, 3, size, size, generator=generator),
            "mask": torch.randint(0, 2, (n, size, size), generator=generator),
        }
    if "scene" in parts:
        generator = torch.Generator().manual_seed(2)
        pieces["scene"] = {
            "image": torch.rand(n, 3, size, size, generator=generator),
            "label": torch.randint(0, 9, (n,), generator=generator),
        }
    return merge_task_batches(pieces, ["awb", "portrait", "scene"])


def _model(**kwargs) -> MultiTaskPerception:
    kwargs.setdefault("backbone", BACKBONE)
    kwargs.setdefault("image_size", SIZE)
    kwargs.setdefault("log_predictions", False)
    return MultiTaskPerception(**kwargs)


# ----------------------------------------------------------------------------------------- partial labels
def test_merged_batch_marks_labelled_rows_and_fills_the_rest() -> None:
    batch = _batch(("awb", "scene"), n=3)
    assert batch["image"].shape == (6, 3, SIZE, SIZE)
    assert batch["has_awb"].tolist() == [True] * 3 + [False] * 3
    assert batch["has_scene"].tolist() == [False] * 3 + [True] * 3
    assert not batch["has_portrait"].any() and "mask" not in batch
    assert (batch["label"][:3] == -1).all() and (batch["illuminant"][3:] == 0).all()


def test_partial_label_batches_contribute_only_their_losses() -> None:
    torch.manual_seed(0)
    model = _model()
    batch = _batch(("scene",))
    losses = model.compute_loss(model.forward_labelled(batch), batch)
    assert set(losses) == {"loss", "scene_loss", "scene_weight"}
    losses["loss"].backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is None for n, g in grads.items() if n.startswith(("branches.awb", "branches.portrait")))
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("branches.scene"))
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("backbone"))
    # Unlabelled rows do not change a head's loss: the scene loss of a mixed batch equals that of its scene rows.
    model.eval()
    mixed = _batch(("awb", "portrait", "scene"))
    with torch.no_grad():
        alone = model.compute_loss(model.forward_labelled(_batch(("scene",))), _batch(("scene",)))["scene_loss"]
        within = model.compute_loss(model.forward_labelled(mixed), mixed)["scene_loss"]
    torch.testing.assert_close(alone, within, rtol=1e-4, atol=1e-5)


def test_uncertainty_weights_are_learned_and_reach_one_over_the_loss() -> None:
    weighting = UncertaintyWeighting(["awb", "scene"], warm_start=False)
    optimizer = torch.optim.Adam(weighting.parameters(), lr=0.05)
    losses = {"awb": torch.tensor(8.0), "scene": torch.tensor(0.5)}
    for _ in range(400):
        total, _ = weighting(losses)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    weights = weighting.weights()
    # The optimum of exp(-s) L + s is s = log L: each loss is brought to scale 1.
    assert abs(float(weights["awb"]) - 1 / 8) < 0.01 and abs(float(weights["scene"]) - 2.0) < 0.1
    warm = UncertaintyWeighting(["awb"]).train()
    warm({"awb": torch.tensor(8.0)})
    assert abs(float(warm.weights()["awb"]) - 1 / 8) < 1e-4 and bool(warm.initialised[0])
    fixed_total, fixed_weights = FixedWeighting({"awb": 0.1})(losses)
    assert float(fixed_total) == pytest.approx(0.8 + 0.5) and float(fixed_weights["scene"]) == 1.0


def test_gradnorm_weights_equalise_gradient_norms_and_favour_slow_tasks() -> None:
    features = torch.randn(4, 8, requires_grad=True)

    def losses(scale_a: float = 1.0, scale_b: float = 1.0) -> dict[str, torch.Tensor]:
        return {"a": scale_a * (10 * features).pow(2).mean(), "b": scale_b * features.pow(2).mean()}

    # alpha = 0: weights that give both tasks the same weighted gradient norm (a's gradients are 100x larger).
    equal = GradNormWeighting(["a", "b"], alpha=0.0, momentum=0.0).train()
    _, weights = equal(losses(), features=[features])
    assert float(weights["b"] / weights["a"]) == pytest.approx(100.0, rel=1e-3)
    assert float(weights["a"] + weights["b"]) == pytest.approx(2.0)
    # alpha = 1: a's loss has fallen to 1/4 of its first value, b's not at all. a's gradients are now 25x b's, so
    # equal norms alone would give b/a = 25; b's slower training (relative rates 1.6 vs 0.4) multiplies that by 4.
    rate = GradNormWeighting(["a", "b"], alpha=1.0, momentum=0.0).train()
    rate(losses(), features=[features])
    _, balanced = rate(losses(0.25, 1.0), features=[features])
    assert float(balanced["b"] / balanced["a"]) == pytest.approx(25.0 * 4.0, rel=1e-3)
    # Without features (validation) the weights stay as they are; a task missing from a batch keeps its weight.
    before = rate.weights()
    rate.eval()({"a": torch.tensor(1.0), "b": torch.tensor(1.0)})
    assert all(torch.equal(before[t], rate.weights()[t]) for t in before)
    three = GradNormWeighting(["a", "b", "c"], momentum=0.0).train()
    three(losses(), features=[features])
    assert float(three.weights()["c"]) == pytest.approx(1.0)


def test_gradnorm_weighting_trains_the_model() -> None:
    torch.manual_seed(0)
    model = _model(weighting="gradnorm").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = _batch()
    for _ in range(3):  # the AWB head's zero-initialised last layer passes no gradient at the first step
        optimizer.zero_grad()
        losses = model.compute_loss(model.forward_labelled(batch), batch)
        losses["loss"].backward()
        optimizer.step()
    weights = {h: float(losses[f"{h}_weight"]) for h in ("awb", "portrait", "scene")}
    assert sum(weights.values()) == pytest.approx(3.0, rel=1e-4) and len(set(weights.values())) == 3
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("backbone.model.conv_stem"))
    assert model._shared_features is None  # the step's activations are not kept


@pytest.mark.parametrize("heads", [["awb"], ["portrait"], ["scene"], ["awb", "scene"], ["portrait", "scene"]])
def test_any_subset_of_heads(heads: list[str]) -> None:
    model = _model(heads=heads)
    assert list(model.branches) == heads
    outputs = model(torch.rand(2, 3, SIZE, SIZE))
    assert list(outputs) == heads
    batch = _batch()
    losses = model.compute_loss(model.forward_labelled(batch), batch)
    assert {k.removesuffix("_loss") for k in losses if k.endswith("_loss")} == set(heads)
    losses["loss"].backward()
    keys = list(model.configure_metrics().keys(keep_base=True))
    assert {k.split("_")[0] for k in keys} == set(heads)
    # One headline metric per head for `moto-vision benchmark`.
    assert [m.split("_")[0] for m in model.report_metrics] == heads
    if heads == ["awb"]:  # only the early levels are built, as in the single-task AWB model
        assert len(model.backbone.channels) == 2
        # At 4x the training size the AWB head still votes on at most 16 x 16 regions.
        features = model.backbone(model.normalize(torch.rand(1, 3, 256, 256)))
        _, votes = model.branches["awb"].head.local_estimates(features[1], torch.rand(1, 3, 256, 256))
        assert features[1].shape[-1] == 64 and votes.shape == (1, 1, 16, 16)


def test_head_options_are_sections_and_the_flat_names_of_0_1_still_work() -> None:
    torch.manual_seed(0)
    nested = _model(head_options={"awb": {"vote_grid": 8}, "portrait": {"decoder_channels": 16}})
    with pytest.warns(FutureWarning, match="awb_vote_grid"):
        torch.manual_seed(0)
        flat = _model(awb_vote_grid=8, portrait_decoder_channels=16)
    assert dict(flat.hparams.head_options) == dict(nested.hparams.head_options)
    assert "awb_vote_grid" not in flat.hparams and nested.hparams.head_options["awb"]["vote_grid"] == 8
    for (name, ours), theirs in zip(nested.state_dict().items(), flat.state_dict().values()):
        torch.testing.assert_close(ours, theirs, msg=name)
    # The scene classes are stored resolved; unknown options and heads are refused by name.
    assert nested.hparams.head_options["scene"]["class_names"][0] == "portrait"
    with pytest.raises(ValueError, match="no option"):
        _model(head_options={"awb": {"vote_gird": 8}})
    with pytest.raises(ValueError, match="not registered"):
        _model(head_options={"sky": {}})


def test_head_lr_trains_each_named_head_at_its_rate_and_everything_else_at_lr() -> None:
    model = _model(lr=0.01, head_lr={"awb": 0.005, "scene": 0.004})
    optimizer = model.configure_optimizers()["optimizer"]
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    grouped = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert len(grouped) == len(set(grouped)) == sum(1 for p in model.parameters() if p.requires_grad)
    assert {rate[id(p)] for p in model.branches["awb"].parameters()} == {0.005}
    assert {rate[id(p)] for p in model.branches["scene"].parameters()} == {0.004}
    assert {rate[id(p)] for p in model.branches["portrait"].parameters()} == {0.01}
    assert {rate[id(p)] for p in model.backbone.parameters()} == {0.01}
    # Norms and biases keep no weight decay in every group.
    for group in optimizer.param_groups:
        if any(p.ndim <= 1 for p in group["params"]):
            assert group["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="head_lr names \\['sky'\\]"):
        _model(head_lr={"sky": 0.1})
    with pytest.raises(ValueError, match="head_lr must be positive"):
        _model(head_lr={"awb": 0.0})


def test_eval_cameras_are_fixed_per_sample_and_training_cameras_vary() -> None:
    image = torch.rand(2, 3, 16, 16)
    fixed = UnprocessToCamera(fixed=True, seed=3)
    a, params = fixed(image, torch.tensor([5, 9]))
    b, _ = fixed(image, torch.tensor([5, 9]))
    torch.testing.assert_close(a, b)
    assert params["illuminant"].shape == (2, 3) and a.max() <= 1 and a.min() >= 0
    c, _ = UnprocessToCamera(fixed=False)(image)
    assert not torch.allclose(a, c)


def test_pool_unprocessing_holds_out_the_awb_data_cameras_and_follows_its_one_sensor() -> None:
    data = MultiTaskDataModule(tasks=["portrait", "scene"], image_size=16, unprocess_cameras="pool")
    pools = data.unprocess_camera_pools()
    names = {split: set(pool.names) for split, (pool, _) in pools.items()}
    assert not names["train"] & names["test"] and not names["train"] & names["val"]
    test_matrices = pools["test"][0].xyz_to_raw().float()
    modules = data.build_augmentations()
    image = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for task in ("portrait", "scene"):
        _, params = modules["test"][task](image, torch.arange(6))
        # Every test image is seen by one held-out camera exactly as it is (no variation).
        gap = (params["xyz2cam"][:, None] - test_matrices[None]).abs().flatten(2).amax(dim=2).amin(dim=1)
        assert gap.max() < 1e-5
        assert modules["train"][task].variation.mix > 0  # training: imaginary cameras between the pool's
    # One sensor for the AWB data puts the portraits and scenes through it too.
    one = MultiTaskDataModule(
        tasks=["portrait"], image_size=16, awb=AWBDataOptions(camera="Canon EOS R6"), unprocess_cameras="pool"
    )
    r6 = one.unprocess_camera_pools()["test"][0].xyz_to_raw()[0].float()
    _, params = one.build_augmentations()["test"]["portrait"](image, torch.arange(6))
    torch.testing.assert_close(params["xyz2cam"], r6.expand(6, 3, 3))
    # brooks (the default): the four camera matrices of Brooks et al.
    brooks = MultiTaskDataModule(tasks=["portrait"], image_size=16)
    assert brooks.unprocess_camera_pools() == {}
    _, params = brooks.build_augmentations()["test"]["portrait"](image, torch.arange(6))
    assert "cct" in params
    with pytest.raises(ValueError, match="unprocess_cameras"):
        MultiTaskDataModule(unprocess_cameras="canon")


def test_datamodule_rejects_unknown_and_per_task_size_arguments() -> None:
    with pytest.warns(FutureWarning, match="deprecated"), pytest.raises(ValueError, match="accepts"):
        MultiTaskDataModule(awb={"trainsize": 5})
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="share one input size"):
        MultiTaskDataModule(image_size=64, scene={"image_size": 32})
    # The typed sections have no such fields at all.
    with pytest.raises(TypeError):
        AWBDataOptions(trainsize=5)
    assert "image_size" not in {f.name for f in dataclasses.fields(SceneDataOptions)}


def test_typed_data_sections_match_the_deprecated_dicts_and_record_primitives(tmp_path) -> None:
    typed = MultiTaskDataModule(
        awb=AWBDataOptions(train_size=40, batch_size=4), portrait=PortraitDataOptions(synthetic_train_size=24)
    )
    with pytest.warns(FutureWarning, match="AWBDataOptions|PortraitDataOptions"):
        legacy = MultiTaskDataModule(awb={"train_size": 40, "batch_size": 4}, portrait={"synthetic_train_size": 24})
    for data in (typed, legacy):
        assert data.datamodules["awb"].hparams["train_size"] == 40 and data.datamodules["awb"].batch_size == 4
        assert data.datamodules["portrait"].batch_size == 16  # not set in the section: the multi-task value
    # Checkpoints record only what a section sets, as primitives, and rebuild it without the deprecation warning.
    assert typed.hparams["awb"] == {"train_size": 40, "batch_size": 4} and typed.hparams["scene"] == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        rebuilt = build_datamodule(MultiTaskDataModule, dict(typed.hparams))
    assert rebuilt.hparams["awb"] == typed.hparams["awb"]
    # The training parser validates the sections (unknown options are errors) and builds them.
    recipe = tmp_path / "data.yaml"
    recipe.write_text("data:\n  class_path: MultiTaskDataModule\n  init_args: {awb: {train_size: 40}}\n")
    assert recipe_datamodule(recipe).datamodules["awb"].hparams["train_size"] == 40
    recipe.write_text("data:\n  class_path: MultiTaskDataModule\n  init_args: {awb: {trainsize: 40}}\n")
    with pytest.raises(ValueError, match="trainsize"):
        recipe_datamodule(recipe)


# ----------------------------------------------------------------------------------------- one short training run
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A short multi-task run on the three synthetic datasets (all heads, uncertainty weighting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("multitask")
    L.seed_everything(0)
    data = MultiTaskDataModule(
        image_size=SIZE,
        batch_size=12,
        awb=AWBDataOptions(train_size=480, val_size=24, test_size=96),
        portrait=PortraitDataOptions(
            synthetic_train_size=240, synthetic_val_size=24, synthetic_test_size=64, isp_preset="light"
        ),
        scene=SceneDataOptions(synthetic_train_size=360, synthetic_eval_size=72, isp_preset="light"),
    )
    model = _model(lr=1e-2)
    start = {k: v.detach().clone() for k, v in model.weighting.state_dict().items()}
    trainer = quiet_trainer(root, max_epochs=5, num_sanity_val_steps=0, limit_val_batches=1)
    trainer.fit(model, data)
    val = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    test = trainer.test(model, data, verbose=False)[0]
    trainer.save_checkpoint(root / "multitask.ckpt")
    torch.set_num_threads(threads)
    return {"model": model, "data": data, "val": val, "test": test, "root": root, "start": start}


def test_short_run_learns_every_head_beyond_a_trivial_baseline(trained) -> None:
    data, test, model = trained["data"], trained["test"], trained["model"]
    # AWB: Gray World on the same (linear) test images.
    awb = data.datamodules["awb"].test_dataset
    images = torch.stack([awb[i]["image"] for i in range(len(awb))])
    lights = torch.stack([awb[i]["illuminant"] for i in range(len(awb))])
    gray_world = recovery_angular_error(GrayWorld()(images), lights).mean().item()
    assert test["test_awb_recovery_mean"] < 0.75 * gray_world, (test["test_awb_recovery_mean"], gray_world)
    # Portrait: the per-pixel mean training mask, thresholded.
    portrait = data.datamodules["portrait"]
    masks = torch.stack([portrait.train_dataset[i]["mask"] for i in range(len(portrait.train_dataset))]).float()
    mean_mask = masks.mean(0) > 0.5
    truth = torch.stack([portrait.test_dataset[i]["mask"] for i in range(len(portrait.test_dataset))]).bool()
    baseline = float((mean_mask & truth).sum() / (mean_mask | truth).sum())
    assert test["test_portrait_iou"] > baseline + 0.05, (test["test_portrait_iou"], baseline)
    print(
        f"AWB {test['test_awb_recovery_mean']:.2f} deg (Gray World {gray_world:.2f}), portrait IoU "
        f"{test['test_portrait_iou']:.3f} (mean mask {baseline:.3f}), scene top-1 {test['test_scene_top1']:.3f}"
    )
    # Scene: nine balanced classes, chance is 1/9.
    assert test["test_scene_top1"] > 0.35, test["test_scene_top1"]
    # The learned weights moved away from where they started.
    log_vars = model.weighting.log_vars
    assert all(
        float(log_vars[h].detach()) != float(trained["start"][f"log_vars.{h}"]) for h in ("awb", "portrait", "scene")
    )
    assert bool(model.weighting.initialised.all())


def test_metrics_are_prefixed_per_task(trained) -> None:
    val, test = trained["val"], trained["test"]
    for key in ("val_awb_recovery_mean", "val_portrait_iou", "val_portrait_iou_person", "val_scene_top1"):
        assert key in val, key
    for key in (
        "test_awb_recovery_median",
        "test_portrait_iou",
        "test_portrait_boundary_f",
        "test_scene_top3",
        "test_scene_ece",
    ):
        assert key in test, key
    assert "train_awb_weight" in val and "val_scene_temperature" in val
    heads = ("awb_", "portrait_", "scene_")
    assert all(k == "test_loss" or k.removeprefix("test_").startswith(heads) for k in test), sorted(test)
    assert (trained["root"] / "multitask_test_results.json").is_file()


def test_backbone_transfers_both_ways(trained, tmp_path: Path) -> None:
    model, checkpoint = trained["model"], trained["root"] / "multitask.ckpt"
    # Multi-task -> anything: create_backbone reads the backbone out of the multi-task checkpoint.
    backbone = create_backbone(BACKBONE, pretrained=checkpoint)
    for (name, ours), theirs in zip(model.backbone.state_dict().items(), backbone.state_dict().values()):
        torch.testing.assert_close(ours, theirs, msg=name)
    scene = SceneClassifier(backbone=BACKBONE, pretrained=str(checkpoint), log_predictions=False)
    torch.testing.assert_close(scene.backbone.state_dict(), model.backbone.state_dict())
    # Single-task -> multi-task: a scene checkpoint initialises the shared backbone.
    torch.manual_seed(1)
    single = SceneClassifier(backbone=BACKBONE, log_predictions=False)
    path = tmp_path / "scene.ckpt"
    torch.save({"state_dict": single.state_dict(), "hyper_parameters": dict(single.hparams)}, path)
    multi = _model(pretrained=str(path))
    torch.testing.assert_close(multi.backbone.state_dict(), single.backbone.state_dict())
    reloaded = MultiTaskPerception.load_from_checkpoint(checkpoint)
    assert reloaded.hparams.pretrained is False and reloaded.hparams.heads == ["awb", "portrait", "scene"]


def test_export_module_returns_every_head(trained) -> None:
    model = trained["model"].eval()
    graph = model.export_module().eval()
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        out = graph(x)
        raw = model(x)
    assert out["awb"].shape == (2, 3) and torch.allclose(out["awb"].norm(dim=1), torch.ones(2), atol=1e-5)
    assert out["portrait"].shape == (2, 1, 64, 80)
    assert out["scene"].shape == (2, 9) and torch.allclose(out["scene"].sum(1), torch.ones(2), atol=1e-5)
    # Exported scene scores map back to logits that score like the model's own.
    back = model.outputs_from_export(out)["scene"]
    torch.testing.assert_close(back.softmax(1), raw["scene"].softmax(1), rtol=1e-4, atol=1e-5)
    meta = model.export_metadata()
    assert meta["color_domain"] == "linear" and set(meta["heads"]) == {"awb", "portrait", "scene"}
    assert meta["heads"]["scene"]["class_names"][0] == "portrait"
    program = torch.export.export(graph, (torch.rand(1, 3, SIZE, SIZE),))
    assert {spec.arg.name for spec in program.graph_signature.output_specs} and len(
        program.graph_signature.output_specs
    ) == 3


def test_recipe_runs_through_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = [
        "--config",
        str(REPO / "recipes" / "multitask.yaml"),
        "--trainer.default_root_dir",
        str(tmp_path),
        "--model.backbone",
        BACKBONE,
        "--data.awb",
        "{train_size: 32, val_size: 16, test_size: 16}",
        "--data.portrait",
        "{synthetic_train_size: 32, synthetic_val_size: 16, synthetic_test_size: 16}",
        "--data.scene",
        "{synthetic_train_size: 32, synthetic_eval_size: 16}",
    ]
    assert main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.enable_model_summary", "false"]) == 0
    assert list(tmp_path.rglob("best.ckpt")) and list(tmp_path.rglob("last.ckpt"))
    capsys.readouterr()
    assert main(["test", *common, "--ckpt_path", "best"]) == 0
    out = capsys.readouterr().out
    assert "AWB head" in out and "portrait head" in out and "Scene detection" in out


def test_awb_votes_overlay_gives_the_multitask_model_the_single_task_deployed_awb(
    capsys: pytest.CaptureFixture,
) -> None:
    import yaml

    recipe = REPO / "recipes" / "multitask.yaml"
    overlay = REPO / "recipes" / "overlays" / "multitask_awb_votes.yaml"
    assert main(["fit", "--config", str(recipe), "--config", str(overlay), "--print_config"]) == 0
    model_args = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    awb = model_args["head_options"]["awb"]
    # The overlay adds the classical votes and keeps the recipe's own AWB options (merged, not replaced).
    assert awb["classical_votes"] and awb["local_votes"] == "training" and not awb["vote_features"]
    assert (awb["feature_level"], awb["vote_grid"], awb["head_channels"], awb["statistics_size"]) == (1, 16, 64, 64)
    assert model_args["head_options"]["portrait"]["boundary_weight"] == 1.0
    model = MultiTaskPerception(**{**model_args, "backbone": BACKBONE, "log_predictions": False}).eval()
    head = model.branches["awb"].head
    assert head.deploys_without_features and head.classical.size == 64
    # Deployed on a 256 px frame, the AWB output is that of the frame's 64 x 64 block means.
    small = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.9
    frame = small.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1)
    with torch.no_grad():
        assert torch.allclose(model(frame)["awb"], model(small)["awb"], atol=1e-5)
