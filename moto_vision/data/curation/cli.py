"""``moto-vision data check|report|split|label-awb|formats``: the data-curation command line."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from moto_vision.heads.base import TASKS

__all__ = ["build_parser", "data_main"]

DESCRIPTION = """\
Dataset curation for moto-vision. Every command reads the dataset through the same indexer the
training datamodule uses (--task and --format pick it), so it sees exactly what training will read.
Nothing on disk is modified or deleted; outputs go to --out only.

commands:
  check    validate every sample; list every problem with its file and reason; exit 1 on errors
  report   coverage statistics and plots (report.md + PNGs + report.json + samples.csv), spec verdicts
  split    deterministic stratified, grouped train/val/test manifests for the datamodules' `splits=`
  label-awb  find the colour checker in raw captures and write a labelled AWB dataset (format raw_png)
  formats  list the dataset formats registered per task

examples:
  moto-vision data check /data/cube_plus --task awb --format cube_plus
  moto-vision data report /data/portraits --task portrait --format mask_folder \\
      --spec recipes/specs/portrait.yaml --out reports/portraits
  moto-vision data split /data/scenes --task scene --format image_folder --out splits/scenes \\
      --group-regex '^[^/]+/(?P<group>[^_]+)_'
  moto-vision data label-awb /data/phone_captures --out /data/phone_awb
"""

CHECK_EPILOG = """\
checks (code: severity):
  index_failed, missing_file, unreadable, truncated: error      the files and ground truth must load
  bit_depth, mode: error for raw AWB formats, warning elsewhere  e.g. 8-bit PNG where 16-bit raw is expected
  exif_orientation: error (warning where the loader applies it)  viewers rotate, training may not
  too_small: warning                                            short side below --min-size
  missing_mask, mask_unreadable, mask_mode, mask_size: error    masks must be one-channel and image-sized
  class_out_of_range: error; mask_values: warning               ids beyond --num-classes; odd binary values
  missing_label, unknown_label: error                           labels outside --classes / the spec's classes
  missing_illuminant, illuminant_nonfinite, illuminant_nonpositive: error
  bad_split: error; not_in_manifest: warning
  duplicate, near_duplicate: warning                            same SHA-256 / pHash distance <= --near-threshold
  leakage, group_leakage: error                                 same image or capture group in two splits

exit status: 0 no errors (warnings allowed unless --strict), 1 errors found, 2 bad usage.
"""

REPORT_EPILOG = """\
The report folder gets report.md (open it first), report.json (all numbers and every check issue),
samples.csv (one row of attributes per sample) and PNG plots. With --spec the spec's requirements are
judged met/unmet with the numbers, and the exit status is 1 when any is unmet.
"""

SPLIT_EPILOG = """\
Groups never straddle splits: a group comes from the record's group field (default), an extra field
(--group-key session) or a regex on the path relative to ROOT (--group-regex, named group `group` or the
first group). --merge-duplicates also keeps exact and near-duplicate images together (decodes every image).
Stratification (auto): scene by class (a multi-label sample by its rarest label), AWB by CCT bin, portrait
none; or name keys: class, cct, extra.<key>, combined with commas. The same data, options and --seed give
the same split whatever order the files are listed in. Train with it: `--data.splits OUT`.
"""


LABEL_EPILOG = """\
ROOT is searched recursively for raw captures (.dng and the other formats LibRaw reads); nothing is written
into it. OUT becomes a dataset in the raw_png format (images/*.png: 16-bit linear camera RGB, ground_truth.csv:
illuminant, chart polygon, the phone's AsShotNeutral, the DNG colour matrices, ISO, exposure) that AWBDataModule
and `data check|report|split --task awb --format raw_png` read, plus labels.json (every patch), failures.json
and failures.csv (one reason per file), overrides_template.yaml and contact_sheet*.png for review.

failure codes: missing_file, unreadable, truncated, missing_color_matrix, no_chart, chart_cut, chart_clipped,
  patches_too_dark, patches_disagree, charts_disagree, excluded, error

exit status: 0 every capture labelled, 1 some failed (see failures.csv), 2 bad usage.
"""


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"moto-vision data: --option expects KEY=VALUE, got {pair!r}")
        options[key] = yaml.safe_load(value)
    return options


def _classes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    if value.startswith("@"):
        return [line.strip() for line in Path(value[1:]).read_text().splitlines() if line.strip()]
    return [c.strip() for c in value.split(",") if c.strip()]


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="dataset root folder")
    parser.add_argument("--task", required=True, choices=list(TASKS), help="the task reading it")
    parser.add_argument("--format", required=True, dest="fmt", help="dataset format (see `moto-vision data formats`)")
    parser.add_argument(
        "-O",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option for the format's indexer (repeatable; VALUE is parsed as YAML), e.g. -O camera=Canon1DsMkIII",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--group-key", help="capture group from this record field: group (default) or an extra key")
    group.add_argument("--group-regex", help="capture group from a regex on the path relative to ROOT")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all CPU cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--splits", type=Path, help="a split-manifest folder to use instead of the format's splits")
    parser.add_argument("--spec", type=Path, help="collection spec YAML (its classes and group rule apply)")
    parser.add_argument("--classes", help="label vocabulary: a,b,c or @file with one class per line")
    parser.add_argument(
        "--mask-kind", choices=["binary", "matte", "labels", "parts"], help="how masks encode the target (see docs)"
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        help="class ids a label mask may hold (0..N-1 plus ignore; implies --mask-kind labels)",
    )
    parser.add_argument("--bit-depth", type=int, help="bits per channel every image must have (overrides the format)")
    parser.add_argument("--min-size", type=int, help="short side below which an image is too small (default 64)")
    parser.add_argument(
        "--near-threshold",
        type=int,
        default=6,
        help="largest pHash distance (of 64 bits) counted as a near-duplicate (default 6; -1 disables)",
    )
    parser.add_argument("--ignore", action="append", default=[], metavar="CODE", help="leave out a check (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    """The ``moto-vision data`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="moto-vision data", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="{check,report,split,label-awb,formats}")
    raw = argparse.RawDescriptionHelpFormatter

    check = commands.add_parser(
        "check",
        help="validate every sample",
        description="Validate every sample of a dataset and list every problem with its file and reason.",
        epilog=CHECK_EPILOG,
        formatter_class=raw,
    )
    _add_dataset_arguments(check)
    _add_scan_arguments(check)
    check.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    check.add_argument("--strict", action="store_true", help="warnings count as errors for the exit status")
    check.add_argument("--all", action="store_true", help="print every issue (default: 20 per check)")

    report = commands.add_parser(
        "report",
        help="coverage statistics, plots and spec verdicts",
        description="Write a coverage report of a dataset: report.md + PNGs + report.json + samples.csv.",
        epilog=REPORT_EPILOG,
        formatter_class=raw,
    )
    _add_dataset_arguments(report)
    _add_scan_arguments(report)
    report.add_argument("--out", type=Path, required=True, help="report folder (created; its report files replaced)")
    report.add_argument("--dark", type=float, default=0.10, help="mean luma below which an image is dark (0.10)")
    report.add_argument(
        "--clipped", type=float, default=0.02, help="share of clipped pixels above which an image is clipped (0.02)"
    )
    report.add_argument("--cct-bins", default="3000,4000,5000,6500", help="CCT bin edges in K for AWB tables")

    split = commands.add_parser(
        "split",
        help="stratified, grouped train/val/test manifests",
        description="Write deterministic train/val/test split manifests (train.txt, val.txt, test.txt, split.json).",
        epilog=SPLIT_EPILOG,
        formatter_class=raw,
    )
    _add_dataset_arguments(split)
    split.add_argument("--out", type=Path, required=True, help="manifest folder to write")
    split.add_argument("--fractions", default="0.8,0.1,0.1", help="train,val,test shares (default 0.8,0.1,0.1)")
    split.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    split.add_argument("--stratify", default="auto", help="auto, none, or keys: class, cct, extra.<key> (comma-joined)")
    split.add_argument("--cct-bins", default="3000,4000,5000,6500", help="CCT bin edges in K for stratifying AWB")
    split.add_argument("--merge-duplicates", action="store_true", help="keep exact/near-duplicate images together")
    split.add_argument("--near-threshold", type=int, default=6, help="pHash distance for --merge-duplicates")
    split.add_argument("--overwrite", action="store_true", help="replace manifests already in --out")

    label = commands.add_parser(
        "label-awb",
        help="label raw captures from their colour checker",
        description="Find the colour checker in every raw capture under ROOT, estimate the illuminant from its grey "
        "patches in linear camera RGB, and write a labelled AWB dataset to --out.",
        epilog=LABEL_EPILOG,
        formatter_class=raw,
    )
    label.add_argument("root", type=Path, help="folder of raw captures (read only)")
    label.add_argument("--out", type=Path, required=True, help="dataset folder to write (new or empty)")
    label.add_argument("--overwrite", action="store_true", help="write into a non-empty --out (own files only)")
    label.add_argument("--overrides", type=Path, help="YAML/JSON chart corners (or exclusions) per capture")
    label.add_argument(
        "--metadata", type=Path, help="CSV with an image column; its other columns (light, scene, ...) are added"
    )
    label.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: one per 8 captures, up to all cores)"
    )
    label.add_argument("--no-progress", action="store_true", help="no progress bar")
    label.add_argument("--no-contact-sheet", action="store_true", help="skip the contact sheet PNGs")
    label.add_argument("--charts", type=int, default=2, help="charts to look for per capture (default 2)")
    label.add_argument("--mask-margin", type=float, default=1.0, help="mask beyond the patch box, chart units (1.0)")
    label.add_argument("--min-level", type=float, default=0.01, help="darkest usable grey patch / white level (0.01)")
    label.add_argument("--max-patch-spread", type=float, default=3.0, help="grey patches agree within (deg, 3)")
    label.add_argument("--max-chart-disagreement", type=float, default=2.0, help="two charts agree within (deg, 2)")
    label.add_argument("--detect-size", type=int, default=1200, help="long side the detector sees (px, 1200)")
    label.add_argument("--max-size", type=int, help="long side of the written PNGs (default: half-size raw)")

    commands.add_parser("formats", help="list the registered dataset formats per task")
    return parser


# ------------------------------------------------------------------------------------------------ commands
def _scan(args: argparse.Namespace) -> tuple[Any, Any]:
    from moto_vision.data.curation.checks import GroupRule, scan_dataset
    from moto_vision.data.curation.rules import rules_for
    from moto_vision.data.curation.spec import load_spec

    spec = load_spec(args.spec) if getattr(args, "spec", None) else None
    if spec is not None and spec.task not in (None, args.task):
        raise SystemExit(f"moto-vision data: {args.spec} is a spec for task {spec.task!r}, not {args.task!r}.")
    classes = _classes(getattr(args, "classes", None)) or (list(spec.classes) if spec and spec.classes else None)
    mask_kind = getattr(args, "mask_kind", None)
    if mask_kind is None and getattr(args, "num_classes", None) is not None:
        mask_kind = "labels"
    rules = rules_for(
        args.task,
        args.fmt,
        classes=classes,
        mask_kind=mask_kind,
        num_classes=getattr(args, "num_classes", None),
        bit_depth=getattr(args, "bit_depth", None),
        min_size=getattr(args, "min_size", None),
    )
    scan = scan_dataset(
        args.root,
        args.task,
        args.fmt,
        options=_options(args.option),
        splits=getattr(args, "splits", None),
        rules=rules,
        group=_group_rule(args, spec, GroupRule),
        near_threshold=args.near_threshold,
        workers=args.workers,
        progress=not args.no_progress,
        ignore=getattr(args, "ignore", ()),
    )
    return scan, spec


def _group_rule(args: argparse.Namespace, spec: Any, rule_class: type) -> Any:
    if args.group_regex:
        return rule_class(regex=args.group_regex)
    if args.group_key:
        return rule_class(key=args.group_key)
    if spec is not None and (spec.group_regex or spec.group_key):
        return rule_class(key=spec.group_key or "group", regex=spec.group_regex)
    return rule_class()


def _print_issues(scan: Any, show_all: bool, limit: int = 20) -> None:
    shown: dict[tuple[str, str], int] = {}
    for issue in scan.issues:
        key = (issue.severity, issue.code)
        shown[key] = shown.get(key, 0) + 1
        if show_all or shown[key] <= limit:
            print(f"{issue.severity:<8} {issue.code:<22} {issue.path}: {issue.message}")
        elif shown[key] == limit + 1:
            print(f"{issue.severity:<8} {issue.code:<22} ... more; --all or --json lists every one")


def _summary_line(scan: Any) -> str:
    summary = scan.summary()

    def part(severity: str) -> str:
        codes = summary[severity]
        n = sum(codes.values())
        detail = ", ".join(f"{code} {count}" for code, count in codes.items())
        return f"{n} {severity}{'' if n == 1 else 's'}" + (f" ({detail})" if detail else "")

    return f"{part('error')}, {part('warning')}"


def _check(args: argparse.Namespace) -> int:
    scan, _ = _scan(args)
    if args.json:
        print(json.dumps(scan.to_dict(), indent=1))
    else:
        print(
            f"{args.root} ({args.task} / {args.fmt}): {len(scan.records)} samples checked in {scan.seconds:.1f} s "
            f"with {scan.workers} worker(s)"
        )
        _print_issues(scan, args.all)
        print(_summary_line(scan))
    failed = bool(scan.errors) or (args.strict and bool(scan.warnings))
    return 1 if failed else 0


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"moto-vision data: {what} expects comma-separated numbers, got {text!r}") from None


def _report(args: argparse.Namespace) -> int:
    from moto_vision.data.curation.report import write_report

    scan, spec = _scan(args)
    path, report = write_report(
        scan,
        args.out,
        spec,
        dark_luminance=args.dark,
        clipped_share=args.clipped,
        cct_bins=_floats(args.cct_bins, "--cct-bins"),
    )
    print(f"{len(scan.records)} samples, {_summary_line(scan)}")
    if spec is not None:
        verdicts = report["spec"]["verdicts"]
        unmet = [v for v in verdicts if not v["met"]]
        print(f"spec {args.spec}: {len(verdicts) - len(unmet)} of {len(verdicts)} requirements met")
        for v in unmet:
            print(f"  UNMET {v['requirement']}: {v['observed']} (expected {v['expected']})")
    print(f"report written to {path}")
    return 1 if spec is not None and not report["spec"]["met"] else 0


def _split(args: argparse.Namespace) -> int:
    from moto_vision.data.curation.attributes import illuminant_cct_tint
    from moto_vision.data.curation.checks import (
        GroupRule,
        duplicate_clusters,
        index_dataset,
        resolve_groups,
        scan_dataset,
    )
    from moto_vision.data.curation.split import split_dataset, strata_for, write_split
    from moto_vision.data.records import SPLITS

    existing = [args.out / f"{s}.txt" for s in SPLITS if (args.out / f"{s}.txt").exists()]
    if existing and not args.overwrite:
        raise SystemExit(
            f"moto-vision data split: {args.out} already holds {[p.name for p in existing]}; "
            "pass --overwrite to replace them or choose another --out."
        )
    values = _floats(args.fractions, "--fractions")
    if len(values) != 3:
        raise SystemExit(f"moto-vision data split: --fractions expects train,val,test, got {args.fractions!r}")
    fractions = {s: v for s, v in zip(SPLITS, values) if v > 0}
    try:
        records = index_dataset(args.root, args.task, args.fmt, _options(args.option))
    except Exception as error:  # noqa: BLE001 - report what the indexer tripped on, with the dataset named
        if isinstance(error, (FileNotFoundError, ValueError)) and not args.root.is_dir() or "Unknown" in str(error):
            raise
        print(f"moto-vision data split: indexing {args.root} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if not records:
        raise SystemExit(f"moto-vision data split: the {args.fmt} indexer found no samples under {args.root}.")
    merge: list[tuple[int, int]] = []
    if args.merge_duplicates:
        scan = scan_dataset(
            args.root,
            args.task,
            args.fmt,
            records=records,
            near_threshold=args.near_threshold,
            workers=args.workers,
            progress=not args.no_progress,
        )
        exact, near = duplicate_clusters(scan.stats, args.near_threshold)
        merge = [(c[0], other) for c in exact + near for other in c[1:]]
    rule = GroupRule(regex=args.group_regex) if args.group_regex else GroupRule(key=args.group_key or "group")
    groups = resolve_groups(records, args.root, rule)
    cct = None
    stratify = args.stratify
    if args.task == "awb" and ("cct" in stratify or stratify == "auto"):
        lit = [r.illuminant is not None for r in records]
        cct = [None] * len(records)
        if any(lit):
            values_cct, _ = illuminant_cct_tint([r.illuminant for r in records if r.illuminant is not None])
            it = iter(values_cct.tolist())
            cct = [next(it) if has else None for has in lit]
        elif stratify == "auto":
            stratify = "none"
    strata = strata_for(records, args.task, stratify, cct, _floats(args.cct_bins, "--cct-bins"))
    names = [_rel(r.image, args.root) for r in records]
    result = split_dataset(records, groups, strata, fractions, seed=args.seed, merge=merge, names=names)
    info = {
        "root": str(args.root),
        "task": args.task,
        "format": args.fmt,
        "stratify": args.stratify,
        "group": rule.describe(),
        "merge_duplicates": args.merge_duplicates,
    }
    out = write_split(result, records, args.root, args.out, info)
    counts = ", ".join(f"{s} {n}" for s, n in result.counts.items())
    print(f"{len(records)} samples in {len(set(result.groups))} groups -> {counts}; manifests in {out}")
    if len(result.per_stratum) > 1:
        width = max(len(k) for k in result.per_stratum)
        for stratum, per in result.per_stratum.items():
            print(f"  {stratum:<{width}}  " + "  ".join(f"{s} {n:>5}" for s, n in per.items()))
    return 0


def _label_awb(args: argparse.Namespace) -> int:
    from moto_vision.data.curation.label_awb import LabelOptions, label_awb, main_summary

    options = LabelOptions(
        mask_margin=args.mask_margin,
        min_level=args.min_level,
        max_patch_spread=args.max_patch_spread,
        max_chart_disagreement=args.max_chart_disagreement,
        max_charts=max(1, args.charts),
        detect_size=args.detect_size,
        max_size=args.max_size,
    )
    try:
        summary = label_awb(
            args.root,
            args.out,
            options,
            overrides=args.overrides,
            metadata=args.metadata,
            overwrite=args.overwrite,
            workers=args.workers,
            contact_sheet=not args.no_contact_sheet,
            progress=not args.no_progress,
        )
    except ImportError as error:
        raise SystemExit(f"moto-vision data label-awb: {error}") from None
    print(main_summary(summary))
    return 1 if summary["failed"] else 0


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _formats() -> int:
    from moto_vision.data.curation.rules import TASK_RULES
    from moto_vision.data.records import format_names

    for task in TASK_RULES:
        names = format_names(task)  # type: ignore[arg-type]
        print(f"{task:<9} {', '.join(names) if names else '(none registered)'}")
    return 0


def data_main(argv: Sequence[str] | None = None) -> int:
    """Run ``moto-vision data``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return 0
    from moto_vision.data.curation.spec import SpecError
    from moto_vision.data.errors import MissingExtraError

    try:
        if args.command == "formats":
            return _formats()
        if args.workers is not None and args.workers < 1:
            raise SystemExit("moto-vision data: --workers must be >= 1")
        return {"check": _check, "report": _report, "split": _split, "label-awb": _label_awb}[args.command](args)
    except SpecError as error:
        print(error, file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, MissingExtraError) as error:
        # A missing optional package (pillow-heif for HEIC files) fails the whole run once, not once per file.
        print(f"moto-vision data {args.command}: {error}", file=sys.stderr)
        return 2
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            print(textwrap.fill(exit_.code, 110), file=sys.stderr)
            return 2
        return int(exit_.code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(data_main())
