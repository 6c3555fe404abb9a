"""Data curation: dataset checks, coverage reports against a collection spec, reproducible splits.

The command line is ``moto-vision data check|report|split`` (:mod:`.cli`); the same steps are importable:

>>> from moto_vision.data.curation import scan_dataset, write_report, load_spec
>>> scan = scan_dataset("/data/cube_plus", "awb", "cube_plus")  # doctest: +SKIP
>>> [issue.code for issue in scan.errors]  # doctest: +SKIP
>>> write_report(scan, "reports/cube_plus", load_spec("recipes/specs/awb.yaml"))  # doctest: +SKIP
"""

from moto_vision.data.curation.attributes import illuminant_cct_tint, sample_table
from moto_vision.data.curation.checks import CHECKS, DatasetScan, GroupRule, Issue, scan_dataset
from moto_vision.data.curation.phash import hamming, near_duplicate_pairs, phash
from moto_vision.data.curation.report import build_report, write_report
from moto_vision.data.curation.rules import FormatRules, rules_for
from moto_vision.data.curation.spec import CollectionSpec, SpecError, Verdict, evaluate_spec, load_spec, parse_spec
from moto_vision.data.curation.split import SplitResult, split_dataset, strata_for

__all__ = [
    "CHECKS",
    "CollectionSpec",
    "DatasetScan",
    "FormatRules",
    "GroupRule",
    "Issue",
    "SpecError",
    "SplitResult",
    "Verdict",
    "build_report",
    "evaluate_spec",
    "hamming",
    "illuminant_cct_tint",
    "load_spec",
    "near_duplicate_pairs",
    "parse_spec",
    "phash",
    "rules_for",
    "sample_table",
    "scan_dataset",
    "split_dataset",
    "strata_for",
    "write_report",
]
