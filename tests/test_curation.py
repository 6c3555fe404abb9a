"""Data curation: checks find each generated defect, specs judge hand-computed cases, splits are sound."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from moto_vision.data.curation import (
    GroupRule,
    SpecError,
    evaluate_spec,
    load_spec,
    near_duplicate_pairs,
    parse_spec,
    rules_for,
    scan_dataset,
    split_dataset,
    strata_for,
)
from moto_vision.data.curation.cli import data_main
from moto_vision.data.curation.phash import hamming
from moto_vision.data.records import SampleRecord, apply_split_manifest, read_split_manifest
from tests.helpers.curation_data import (
    EXPECTED_CODE,
    FORMAT,
    SCENE_CLASSES,
    _index_curation_test,
    all_defects,
    make_dataset,
    register_test_formats,
    remove_formats,
)

TASKS = ("awb", "portrait", "scene")
SPECS = Path(__file__).resolve().parents[1] / "recipes" / "specs"


@pytest.fixture(scope="module", autouse=True)
def test_formats():
    keys = register_test_formats()
    yield
    remove_formats(keys)


def _rules(task: str):
    if task == "portrait":
        return rules_for(task, FORMAT, mask_kind="labels", num_classes=3)
    if task == "scene":
        return rules_for(task, FORMAT, classes=SCENE_CLASSES)
    return rules_for(task, FORMAT)


def _scan(root: Path, task: str, **kwargs):
    return scan_dataset(root, task, FORMAT, rules=_rules(task), workers=1, progress=False, **kwargs)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- checks
@pytest.mark.parametrize("task", TASKS)
def test_clean_dataset_has_no_issues(tmp_path, task):
    make_dataset(tmp_path, task, n=10)
    scan = _scan(tmp_path, task)
    assert len(scan.records) == 10
    assert scan.issues == [], [f"{i.code} {i.path} {i.message}" for i in scan.issues]
    assert all(s.decoded and s.phash is not None for s in scan.stats)


@pytest.mark.parametrize("task,defect", [(task, defect) for task in TASKS for defect in all_defects(task)])
def test_each_defect_is_found_and_named(tmp_path, task, defect):
    expected = make_dataset(tmp_path, task, n=17, defects=[defect])
    scan = _scan(tmp_path, task)
    code = EXPECTED_CODE.get(defect, defect)
    codes = {issue.code for issue in scan.issues}
    assert codes == {code}, [f"{i.code} {i.path} {i.message}" for i in scan.issues]
    (issue,) = [i for i in scan.issues if i.code == code]
    assert issue.path == expected[defect]
    assert issue.message
    # sRGB loaders apply EXIF orientation (a warning there; portrait masks match the rotated view); raw AWB PNGs
    # are read as stored, so the tag is an error there.
    warnings = {"duplicate", "near_duplicate"} | ({"exif_orientation"} if task != "awb" else set())
    assert issue.severity == ("warning" if code in warnings else "error")


@pytest.mark.parametrize("task", TASKS)
def test_all_defects_together_are_each_found(tmp_path, task):
    defects = all_defects(task)
    expected = make_dataset(tmp_path, task, n=17, defects=defects)
    before = _tree_digest(tmp_path)
    scan = _scan(tmp_path, task)
    found = {(i.code, i.path) for i in scan.issues}
    for defect in defects:
        assert (EXPECTED_CODE.get(defect, defect), expected[defect]) in found, defect
    # Exactly one issue per defect: nothing else is flagged.
    assert len(scan.issues) == len(defects), [f"{i.code} {i.path}" for i in scan.issues]
    assert scan.leaks == {"exact": 1, "near": 1, "group": 1}
    assert _tree_digest(tmp_path) == before  # reading never modifies the data


def test_grey_masks_stored_as_rgb_are_accepted(tmp_path):
    from PIL import Image

    make_dataset(tmp_path, "portrait", n=6)
    mask = tmp_path / "masks" / "img000.png"
    Image.open(mask).convert("RGB").save(mask)  # CelebAMask-HQ ships its part masks like this
    assert _scan(tmp_path, "portrait").issues == []


def test_raw_bit_depth_is_an_error_and_photo_bit_depth_a_warning():
    assert rules_for("awb", "cube_plus").strict_mode and rules_for("awb", "cube_plus").bit_depth == 16
    assert rules_for("awb", "photos").bit_depth == 8 and not rules_for("awb", "photos").strict_mode
    assert rules_for("scene", "anything", bit_depth=16).bit_depth == 16


def test_cli_check_json_exit_status_and_workers(tmp_path, capsys):
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    make_dataset(clean, "scene", n=8)
    expected = make_dataset(broken, "scene", n=17, defects=["truncated", "unknown_label", "duplicate"])
    base = ["--task", "scene", "--format", FORMAT, "--classes", ",".join(SCENE_CLASSES), "--no-progress"]
    assert data_main(["check", str(clean), *base, "--workers", "2"]) == 0
    assert "0 errors" in capsys.readouterr().out
    assert data_main(["check", str(broken), *base, "--workers", "2", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 18 and result["workers"] == 2
    assert result["errors"] == 2 and result["warnings"] == 1
    paths = {(i["code"], i["path"]) for i in result["issues"]}
    assert ("truncated", expected["truncated"]) in paths and ("unknown_label", expected["unknown_label"]) in paths
    # Warnings alone pass, unless --strict; --ignore drops a check.
    ignore = ["--ignore", "truncated", "--ignore", "unknown_label"]
    assert data_main(["check", str(broken), *base, *ignore]) == 0
    assert data_main(["check", str(broken), *base, *ignore, "--strict"]) == 1
    out = capsys.readouterr().out
    assert "duplicate" in out and expected["duplicate"] in out
    # Usage errors: exit 2 with the reason.
    assert data_main(["check", str(tmp_path / "nowhere"), *base]) == 2
    assert data_main(["check", str(clean), "--task", "scene", "--format", "no_such_format"]) == 2
    assert "no_such_format" in capsys.readouterr().err


def test_split_manifest_leakage_and_index_failure(tmp_path):
    make_dataset(tmp_path, "scene", n=8)
    manifest = tmp_path / "manifest"
    manifest.mkdir()
    (manifest / "train.txt").write_text("images/img000.jpg\nimages/img001.jpg\n")
    (manifest / "test.txt").write_text("images/img002.jpg\n")
    scan = _scan(tmp_path, "scene", splits=manifest, group=None)
    assert len(scan.records) == 3
    assert [i.code for i in scan.issues] == ["not_in_manifest"]
    (tmp_path / "index.json").write_text("[]")
    assert [i.message for i in _scan(tmp_path, "scene").errors] == ["the curation_test indexer found no samples here"]
    (tmp_path / "index.json").write_text("{broken")
    scan = _scan(tmp_path, "scene")
    assert [i.code for i in scan.errors] == ["index_failed"] and "JSONDecodeError" in scan.errors[0].message


# ---------------------------------------------------------------------------------------------- phash
def test_near_duplicate_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 40, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, 40).astype(np.uint64)
    hashes = np.concatenate([base, base[:10] ^ flips[:10]])
    expected = {
        (i, j)
        for i in range(len(hashes))
        for j in range(i + 1, len(hashes))
        if hamming(int(hashes[i]), int(hashes[j])) <= 3
    }
    found = {(i, j) for i, j, d in near_duplicate_pairs(hashes, 3, chunk=7)}
    assert found == expected and len(found) >= 10


# ---------------------------------------------------------------------------------------------- specs
def _rows():
    # 10 samples, hand-countable: cct 2600..7100 step 500; classes; splits 6/2/2.
    rows = []
    for i in range(10):
        rows.append(
            {
                "split": "train" if i < 6 else "val" if i < 8 else "test",
                "class": ["indoor"] if i < 7 else ["outdoor", "sunny"] if i == 9 else ["outdoor"],
                "cct": 2600.0 + 500 * i,
                "dark": i % 4 == 0,
                "extra.backlit": i in (1, 5),
                "mask_area": None,
            }
        )
    return rows


def test_spec_verdicts_on_hand_computed_cases():
    spec = parse_spec(
        {
            "task": "awb",
            "classes": ["indoor", "outdoor", "sunny", "night"],
            "min_samples": 10,
            "required_splits": ["train", "val", "test"],
            "max_class_share": 0.6,
            "forbid_leakage": ["exact", "group"],
            "requirements": [
                {"attribute": "cct", "range": [2500, 3500], "min_count": 2},  # 2600, 3100 -> 2: met
                {"attribute": "cct", "bins": [2000, 4000, 8000], "min_count": 4},  # bins hold 3 and 7
                {"attribute": "cct", "range": [3000, 5000], "min_count": 3, "split": "train"},  # train: 3100..4600 -> 4
                {"attribute": "class", "min_count": 1, "split": "test"},  # test: outdoor 2, sunny 1, indoor 0, night 0
                {"attribute": "extra.backlit", "equals": True, "min_share": 0.25},  # 2 of 10 = 20 %: unmet
                {"attribute": "dark", "equals": True, "max_share": 0.3},  # i = 0, 4, 8: 30 %: met
                {"attribute": "class", "in": ["outdoor", "sunny"], "max_count": 3},  # samples 7, 8, 9: met
            ],
        }
    )
    verdicts = evaluate_spec(spec, _rows(), {"exact": 0, "near": 2, "group": 1})
    table = {v.requirement: (v.met, v.observed) for v in verdicts}
    assert table["samples"] == (True, "10")
    assert table["split val present"] == (True, "2 samples")
    assert table["largest class share"] == (False, "indoor: 7 of 10 (70.0%)")
    assert table["no exact leakage between splits"][0] is True
    assert table["no group leakage between splits"] == (False, "1 leaks")
    assert "no near leakage between splits" not in table
    assert table["cct in [2500, 3500)"] == (True, "2 of 10 (20.0%)")
    assert table["cct in [2000, 4000)"] == (False, "3 of 10 (30.0%)")
    assert table["cct in [4000, 8000)"] == (True, "7 of 10 (70.0%)")
    assert table["cct in [3000, 5000) [train]"] == (True, "4 of 6 (66.7%)")
    assert table["class (each value) [test]: outdoor"] == (True, "2 of 2 (100.0%)")
    assert table["class (each value) [test]: sunny"] == (True, "1 of 2 (50.0%)")
    assert table["class (each value) [test]: indoor"] == (False, "0 of 2 (0.0%)")
    assert table["class (each value) [test]: night"] == (False, "0 of 2 (0.0%)")
    assert table["extra.backlit = True"] == (False, "2 of 10 (20.0%)")
    assert table["dark = True"] == (True, "3 of 10 (30.0%)")
    assert table["class in ['outdoor', 'sunny']"] == (True, "3 of 10 (30.0%)")


def test_malformed_spec_lists_every_problem(tmp_path):
    bad = {
        "task": "cars",
        "colour": 1,
        "min_samples": -3,
        "required_splits": ["train", "holdout"],
        "forbid_leakage": ["exact", "partial"],
        "group": {"regex": "(unclosed"},
        "requirements": [
            {"attribute": "cct", "range": [5000, 3000], "min_count": 1},
            {"attribute": "brightness", "min_count": 1},
            {"attribute": "class", "bins": [0, 1], "min_count": 1},
            {"attribute": "cct", "range": [1, 2]},
            {"attribute": "luminance", "range": [0, 1], "min_share": 1.5, "split": "dev"},
        ],
    }
    with pytest.raises(SpecError) as info:
        parse_spec(bad, "bad.yaml")
    problems = "\n".join(info.value.problems)
    for fragment in (
        "task:",
        "unknown keys ['colour']",
        "min_samples",
        "required_splits",
        "forbid_leakage",
        "group.regex",
        "requirements[0].range",
        "requirements[1].attribute",
        "requirements[2].bins",
        "requirements[3]: give at least one",
        "requirements[4].min_share",
        "requirements[4].split",
    ):
        assert fragment in problems, fragment
    assert len(info.value.problems) == 12
    path = tmp_path / "spec.yaml"
    path.write_text("requirements: [\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)


@pytest.mark.parametrize("task", TASKS)
def test_example_specs_are_valid(task):
    spec = load_spec(SPECS / f"{task}.yaml")
    assert spec.task == task and spec.requirements


# ---------------------------------------------------------------------------------------------- report
@pytest.mark.parametrize("task", TASKS)
def test_report_writes_markdown_plots_json_and_spec_verdicts(tmp_path, task, capsys):
    data = tmp_path / "data"
    make_dataset(data, task, n=12)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"task: {task}\nmin_samples: 12\nrequired_splits: [train, val, test]\nforbid_leakage: true\n"
        "requirements:\n  - {attribute: luminance, range: [0.0, 0.05], min_count: 1}\n"
    )
    out = tmp_path / "report"
    extra = ["--num-classes", "3"] if task == "portrait" else []
    args = ["report", str(data), "--task", task, "--format", FORMAT, "--out", str(out), "--spec", str(spec)]
    # Nothing is that dark: the last requirement is unmet, so the exit status is 1.
    assert data_main([*args, "--no-progress", "--workers", "1", *extra]) == 1
    assert "UNMET luminance in [0, 0.05)" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    markdown = (out / "report.md").read_text()
    assert report["splits"] == {"train": 8, "val": 2, "test": 2}
    assert [v["met"] for v in report["spec"]["verdicts"]] == [True, True, True, True, True, True, True, False]
    assert "**UNMET**" in markdown and "## Exposure" in markdown
    assert {"sizes.png", "exposure.png"} <= {p.name for p in out.glob("*.png")}
    assert len((out / "samples.csv").read_text().splitlines()) == 13
    assert report["exposure"]["dark_share"] == 0.0
    if task == "awb":
        assert (out / "illuminants.png").exists() and "## Illuminants" in markdown
        assert 1000 < report["awb"]["cct"]["median"] < 20000
        assert sum(sum(v.values()) for v in report["awb"]["cct_bins"].values()) == 12
    if task == "portrait":
        assert (out / "masks.png").exists()
        area = report["portrait"]["mask_area"]
        assert 0.1 < area["median"] < 0.6  # the generated masks cover about a third of the image
        assert report["classes"]["1"]["train"] == 8 and report["classes"]["2"]["test"] == 2
    if task == "scene":
        assert (out / "cooccurrence.png").exists()
        # Sample i is labelled SCENE_CLASSES[i % 4], plus the next class when i % 3 == 0; 0-7 train, 8-9 val.
        assert report["classes"]["beach"] == {"train": 3, "val": 1, "test": 0}  # samples 0, 3 (secondary), 4, 8
        matrix = np.array(report["scene"]["cooccurrence"])
        names = report["scene"]["classes"]
        assert matrix[names.index("beach"), names.index("food")] == 1  # sample 0
        assert matrix[names.index("snow"), names.index("beach")] == 1  # sample 3


# ---------------------------------------------------------------------------------------------- split
def _records(n: int, groups: int, classes: int) -> list[SampleRecord]:
    return [
        SampleRecord(image=Path(f"/data/g{i % groups:02d}/img{i:03d}.jpg"), labels=[f"c{i % classes}"], group=None)
        for i in range(n)
    ]


def test_split_is_deterministic_grouped_and_stratified():
    records = _records(300, 60, 3)
    groups = [r.image.parent.name for r in records]
    strata = strata_for(records, "scene", "auto")
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    names = [r.image.as_posix() for r in records]
    first = split_dataset(records, groups, strata, fractions, seed=3, names=names)
    again = split_dataset(records, groups, strata, fractions, seed=3, names=names)
    assert first.splits == again.splits
    # The order the indexer lists files in does not matter.
    order = list(range(len(records)))
    random.Random(0).shuffle(order)
    shuffled = split_dataset(
        [records[i] for i in order],
        [groups[i] for i in order],
        [strata[i] for i in order],
        fractions,
        3,
        names=[names[i] for i in order],
    )
    assert {names[i]: s for i, s in zip(order, shuffled.splits)} == dict(zip(names, first.splits))
    # No group in two splits.
    by_group: dict[str, set[str]] = {}
    for group, split in zip(groups, first.splits):
        by_group.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in by_group.values())
    # Shares close to the targets (whole groups of 5 samples), and every class in every split.
    assert abs(first.counts["train"] - 210) <= 10 and abs(first.counts["val"] - 45) <= 10
    for stratum, per in first.per_stratum.items():
        assert all(n > 0 for n in per.values()), stratum
    other = split_dataset(records, groups, strata, fractions, seed=4, names=names)
    assert other.splits != first.splits


def test_split_merges_duplicates_and_rarest_label_stratum():
    records = _records(6, 6, 2)
    records[0].labels = ["c0", "rare"]
    assert strata_for(records, "scene", "class")[0] == "rare"
    result = split_dataset(records, [None] * 6, ["all"] * 6, {"train": 0.5, "test": 0.5}, merge=[(0, 5), (5, 3)])
    assert result.splits[0] == result.splits[3] == result.splits[5]
    with pytest.raises(ValueError, match="sum to 1"):
        split_dataset(records, [None] * 6, ["all"] * 6, {"train": 0.5, "test": 0.6})


def test_cli_split_writes_manifests_the_datamodules_read(tmp_path, capsys):
    data = tmp_path / "data"
    make_dataset(data, "awb", n=30)
    out = tmp_path / "splits"
    regex = r"img0\d(\d)"  # group = last digit: 10 groups of 3
    args = ["split", str(data), "--task", "awb", "--format", FORMAT, "--out", str(out), "--group-regex", regex]
    assert data_main([*args, "--seed", "1", "--no-progress"]) == 0
    manifest = read_split_manifest(out)
    assert sum(len(v) for v in manifest.values()) == 30
    first = {s: sorted(v) for s, v in manifest.items()}
    summary = json.loads((out / "split.json").read_text())
    assert summary["stratify"] == "auto" and sum(summary["counts"].values()) == 30
    assert any("K" in k for k in summary["per_stratum"])  # AWB strata are CCT bins
    assert all(len(v) > 0 for v in manifest.values())
    split_of_group: dict[str, set[str]] = {}
    for split, members in manifest.items():
        for path in members:
            split_of_group.setdefault(path[-5], set()).add(split)
    assert len(split_of_group) == 10 and all(len(s) == 1 for s in split_of_group.values())
    # Refuses to overwrite; with --overwrite the same seed gives the same files.
    assert data_main([*args, "--seed", "1", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert data_main([*args, "--seed", "1", "--no-progress", "--overwrite"]) == 0
    assert {s: sorted(v) for s, v in read_split_manifest(out).items()} == first
    # The datamodules' helper reads it back; check sees no leakage under it.
    records = apply_split_manifest(_index_curation_test(data), data, out)
    assert len(records) == 30
    scan = scan_dataset(data, "awb", FORMAT, splits=out, workers=1, progress=False, group=GroupRule(regex=regex))
    assert scan.leaks == {"exact": 0, "near": 0, "group": 0} and not scan.issues
