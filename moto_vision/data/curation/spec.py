"""Collection specs: what a dataset delivery must contain, written in YAML and checked by ``data report --spec``.

A spec is what a camera team hands to a data vendor. Example (``recipes/specs/awb.yaml``)::

    version: 1
    task: awb
    name: Indoor/outdoor AWB captures, delivery 2
    min_samples: 1500
    required_splits: [train, val, test]
    forbid_leakage: [exact, near, group]
    group: {key: group}               # or {regex: '^(?P<group>[^/]+)/'} on the relative path
    requirements:
      - name: warm indoor light
        attribute: cct
        range: [2500, 3500]           # [low, high)
        min_count: 300
      - attribute: cct                # one requirement per bin
        bins: [2000, 3000, 4000, 5000, 6500, 10000]
        min_count: 100
        split: train
      - attribute: clipped
        equals: true
        max_share: 0.05

Top-level keys:
    ``version`` (1), ``task``, ``name``, ``classes`` (the label vocabulary: every listed class is counted even
    when absent, and ``data check --spec`` flags labels outside it), ``min_samples``, ``required_splits``,
    ``max_class_share`` (no single class above this share of the samples), ``forbid_leakage`` (``true``, ``false``
    or a list of ``exact``, ``near``, ``group``), ``group`` (``{key: ...}`` or ``{regex: ...}``: where capture
    groups come from), ``requirements``.

Each requirement has an ``attribute`` (see :mod:`.attributes`: ``class``, ``split``, ``cct``, ``luminance``,
``mask_area``, ``extra.<key>``, ...), at most one selector (``range: [low, high]``, ``bins: [e0, e1, ...]``,
``equals: value``, ``in: [values]``; none = every class for ``class``, every sample that has the attribute
otherwise), at least one threshold (``min_count``, ``max_count``, ``min_share``, ``max_share``; shares are of
the samples in scope), and optionally ``split`` (count that split only), ``name`` and ``each: true`` (judge every
value of a categorical attribute on its own: each listed value with ``in``, else each value found; ``class`` does
this by default). For example, per-camera counts and light types of camera captures::

      - attribute: extra.camera
        each: true
        min_count: 200
      - attribute: extra.light
        in: [daylight, cloudy, shade, tungsten, fluorescent, led, flash]
        each: true
        min_count: 50
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from moto_vision.data.curation.attributes import CATEGORICAL, NUMERIC
from moto_vision.data.records import SPLITS
from moto_vision.heads.base import TASKS

__all__ = ["CollectionSpec", "Requirement", "SpecError", "Verdict", "evaluate_spec", "load_spec", "parse_spec"]

LEAK_KINDS = ("exact", "near", "group")
TOP_KEYS = {
    "version",
    "task",
    "name",
    "description",
    "classes",
    "min_samples",
    "required_splits",
    "max_class_share",
    "forbid_leakage",
    "group",
    "requirements",
}
REQUIREMENT_KEYS = {
    "name",
    "attribute",
    "range",
    "bins",
    "equals",
    "in",
    "min_count",
    "max_count",
    "min_share",
    "max_share",
    "split",
    "each",
}
THRESHOLDS = ("min_count", "max_count", "min_share", "max_share")


class SpecError(ValueError):
    """A malformed spec; ``problems`` lists every problem found, each naming its place in the file."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Invalid collection spec {source}:\n{lines}\n(the schema is documented in docs/data.md)")


@dataclass(frozen=True)
class Requirement:
    """One coverage requirement: samples selected by ``attribute`` and a selector, counted against thresholds."""

    attribute: str
    name: str | None = None
    low: float | None = None
    high: float | None = None
    equals: Any = None
    members: tuple[Any, ...] | None = None
    each: bool = False
    split: str | None = None
    min_count: int | None = None
    max_count: int | None = None
    min_share: float | None = None
    max_share: float | None = None

    def selector(self) -> str:
        if self.low is not None:
            return f"{self.attribute} in [{_fmt(self.low)}, {_fmt(self.high)})"
        if self.members is not None:
            return f"{self.attribute} in {list(self.members)}"
        if self.equals is not None:
            return f"{self.attribute} = {self.equals}"
        return f"{self.attribute} (each value)" if self.each else f"{self.attribute} (any)"

    def label(self) -> str:
        where = f" [{self.split}]" if self.split else ""
        return (f"{self.name}: " if self.name else "") + self.selector() + where

    def thresholds(self) -> str:
        parts = []
        for key, sign in (("min_count", ">="), ("max_count", "<="), ("min_share", ">="), ("max_share", "<=")):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{'count' if 'count' in key else 'share'} {sign} {_fmt(value)}")
        return ", ".join(parts)


@dataclass
class CollectionSpec:
    """A validated collection spec (see the module docstring for the YAML schema)."""

    source: str = "<spec>"
    task: str | None = None
    name: str | None = None
    classes: tuple[str, ...] | None = None
    min_samples: int | None = None
    required_splits: tuple[str, ...] = ()
    max_class_share: float | None = None
    forbid_leakage: tuple[str, ...] = ()
    group_key: str | None = None
    group_regex: str | None = None
    requirements: list[Requirement] = field(default_factory=list)


@dataclass
class Verdict:
    """Whether one requirement is met, with the numbers."""

    requirement: str
    met: bool
    observed: str
    expected: str

    def to_dict(self) -> dict[str, Any]:
        return {"requirement": self.requirement, "met": self.met, "observed": self.observed, "expected": self.expected}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return str(value)


# ------------------------------------------------------------------------------------------ parsing
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_share(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _known_attribute(name: Any) -> bool:
    return isinstance(name, str) and (
        name in NUMERIC or name in CATEGORICAL or name.startswith("extra.") and len(name) > 6
    )


def _parse_requirement(raw: Any, where: str, problems: list[str]) -> list[Requirement]:
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping with 'attribute' and thresholds, got {raw!r}")
        return []
    unknown = set(raw) - REQUIREMENT_KEYS
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(REQUIREMENT_KEYS)}")
    attribute = raw.get("attribute")
    if not _known_attribute(attribute):
        problems.append(
            f"{where}.attribute: {attribute!r} is not an attribute; use one of {list(NUMERIC) + list(CATEGORICAL)} "
            "or extra.<key>"
        )
        return []
    selectors = [k for k in ("range", "bins", "equals", "in") if k in raw]
    if len(selectors) > 1:
        problems.append(f"{where}: give at most one of range / bins / equals / in, got {selectors}")
        return []
    each = raw.get("each", attribute == "class" and not selectors)
    if not isinstance(each, bool):
        problems.append(f"{where}.each: expected true or false, got {each!r}")
        return []
    if each and selectors and selectors[0] != "in":
        problems.append(f"{where}: each counts every value of a categorical attribute; use in, not {selectors[0]}")
        return []
    numeric_ok = attribute in NUMERIC or attribute.startswith("extra.")
    if selectors and selectors[0] in ("range", "bins") and not numeric_ok:
        problems.append(f"{where}.{selectors[0]}: {attribute!r} is categorical; use equals / in")
        return []
    thresholds = {k: raw[k] for k in THRESHOLDS if k in raw}
    if not thresholds:
        problems.append(f"{where}: give at least one of {list(THRESHOLDS)}")
    for key, value in thresholds.items():
        if "count" in key and not _is_count(value):
            problems.append(f"{where}.{key}: expected a whole number >= 0, got {value!r}")
        if "share" in key and not _is_share(value):
            problems.append(f"{where}.{key}: expected a share between 0 and 1, got {value!r}")
    split = raw.get("split")
    if split is not None and split not in SPLITS:
        problems.append(f"{where}.split: {split!r} is not one of {list(SPLITS)}")
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        problems.append(f"{where}.name: expected text, got {name!r}")
    common = dict(attribute=attribute, name=name, split=split, **thresholds)
    if "range" in raw:
        bounds = raw["range"]
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b) for b in bounds)) or not (
            bounds[0] < bounds[1]
        ):
            problems.append(f"{where}.range: expected [low, high] with low < high, got {bounds!r}")
            return []
        return [Requirement(low=float(bounds[0]), high=float(bounds[1]), **common)]
    if "bins" in raw:
        edges = raw["bins"]
        if not (
            isinstance(edges, list)
            and len(edges) >= 2
            and all(_is_number(e) for e in edges)
            and all(a < b for a, b in zip(edges, edges[1:]))
        ):
            problems.append(f"{where}.bins: expected at least two increasing numbers (bin edges), got {edges!r}")
            return []
        return [Requirement(low=float(a), high=float(b), **common) for a, b in zip(edges, edges[1:])]
    if "in" in raw:
        members = raw["in"]
        if not isinstance(members, list) or not members:
            problems.append(f"{where}.in: expected a non-empty list of values, got {members!r}")
            return []
        return [Requirement(members=tuple(members), each=each, **common)]
    if "equals" in raw:
        if raw["equals"] is None:
            problems.append(f"{where}.equals: expected a value")
            return []
        return [Requirement(equals=raw["equals"], **common)]
    return [Requirement(each=each, **common)]


def parse_spec(data: Any, source: str = "<spec>") -> CollectionSpec:
    """Validate a spec given as a mapping (e.g. loaded YAML); raises :class:`SpecError` listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise SpecError(source, [f"expected a mapping at the top level, got {type(data).__name__}"])
    unknown = set(data) - TOP_KEYS
    if unknown:
        problems.append(f"unknown keys {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    spec = CollectionSpec(source=source)
    if data.get("version", 1) != 1:
        problems.append(f"version: only version 1 exists, got {data.get('version')!r}")
    task = data.get("task")
    if task is not None and task not in TASKS:
        problems.append(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    spec.task, spec.name = task, data.get("name")
    classes = data.get("classes")
    if classes is not None:
        if not (isinstance(classes, list) and classes and all(isinstance(c, (str, int)) for c in classes)):
            problems.append(f"classes: expected a non-empty list of class names, got {classes!r}")
        elif len(set(map(str, classes))) != len(classes):
            problems.append("classes: names repeat")
        else:
            spec.classes = tuple(str(c) for c in classes)
    if "min_samples" in data:
        if not _is_count(data["min_samples"]):
            problems.append(f"min_samples: expected a whole number >= 0, got {data['min_samples']!r}")
        else:
            spec.min_samples = data["min_samples"]
    splits = data.get("required_splits", [])
    if not isinstance(splits, list) or any(s not in SPLITS for s in splits):
        problems.append(f"required_splits: expected a list drawn from {list(SPLITS)}, got {splits!r}")
    else:
        spec.required_splits = tuple(splits)
    if "max_class_share" in data:
        if not _is_share(data["max_class_share"]):
            problems.append(f"max_class_share: expected a share between 0 and 1, got {data['max_class_share']!r}")
        else:
            spec.max_class_share = float(data["max_class_share"])
    leakage = data.get("forbid_leakage", False)
    if leakage is True:
        spec.forbid_leakage = LEAK_KINDS
    elif leakage is False or leakage is None:
        spec.forbid_leakage = ()
    elif isinstance(leakage, list) and all(k in LEAK_KINDS for k in leakage):
        spec.forbid_leakage = tuple(leakage)
    else:
        problems.append(
            f"forbid_leakage: expected true, false or a list drawn from {list(LEAK_KINDS)}, got {leakage!r}"
        )
    group = data.get("group")
    if group is not None:
        if not isinstance(group, dict) or len(group) != 1 or next(iter(group)) not in ("key", "regex"):
            problems.append(f"group: expected {{key: <record field>}} or {{regex: <pattern>}}, got {group!r}")
        elif "regex" in group:
            try:
                re.compile(str(group["regex"]))
                spec.group_regex = str(group["regex"])
            except re.error as error:
                problems.append(f"group.regex: {group['regex']!r} does not compile ({error})")
        else:
            spec.group_key = str(group["key"])
    requirements = data.get("requirements", [])
    if not isinstance(requirements, list):
        problems.append(f"requirements: expected a list, got {type(requirements).__name__}")
        requirements = []
    for i, raw in enumerate(requirements):
        spec.requirements.extend(_parse_requirement(raw, f"requirements[{i}]", problems))
    if problems:
        raise SpecError(source, problems)
    return spec


def load_spec(path: str | Path) -> CollectionSpec:
    """Read and validate a spec YAML file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(str(path), ["file not found"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpecError(str(path), [f"not valid YAML: {error}"]) from None
    return parse_spec(data, str(path))


# ----------------------------------------------------------------------------------------- evaluation
def _matches(requirement: Requirement, value: Any, target: Any = None) -> bool:
    if value is None:
        return False
    if requirement.low is not None:
        return _is_number(value) and requirement.low <= value < requirement.high
    wanted = (
        [target]
        if target is not None
        else (list(requirement.members) if requirement.members is not None else [requirement.equals])
    )
    if requirement.equals is None and requirement.members is None and target is None:
        return True  # no selector: every sample that has the attribute
    return any(value == w or str(value) == str(w) for w in wanted)


def _count(requirement: Requirement, rows: Sequence[dict[str, Any]], target: Any = None) -> int:
    count = 0
    for row in rows:
        value = row.get(requirement.attribute)
        values = value if isinstance(value, list) else [value]
        if any(_matches(requirement, v, target) for v in values):
            count += 1
    return count


def _judge(requirement: Requirement, label: str, count: int, total: int) -> Verdict:
    share = count / total if total else 0.0
    met = True
    if requirement.min_count is not None:
        met &= count >= requirement.min_count
    if requirement.max_count is not None:
        met &= count <= requirement.max_count
    if requirement.min_share is not None:
        met &= total > 0 and share >= requirement.min_share
    if requirement.max_share is not None:
        met &= share <= requirement.max_share
    return Verdict(label, bool(met), f"{count} of {total} ({share:.1%})", requirement.thresholds())


def _categories(rows: Sequence[dict[str, Any]], attribute: str, known: Sequence[str] | None) -> list[Any]:
    seen: dict[str, Any] = {}
    for name in known or []:
        seen[str(name)] = name
    for row in rows:
        value = row.get(attribute)
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                seen.setdefault(str(v), v)
    return sorted(seen.values(), key=str)


def evaluate_spec(spec: CollectionSpec, rows: Sequence[dict[str, Any]], leaks: dict[str, int]) -> list[Verdict]:
    """Judge every requirement of ``spec`` on a sample table (:func:`.attributes.sample_table`).

    Args:
        spec: the collection spec.
        rows: one attribute dict per sample.
        leaks: number of leaks found per kind (``exact``, ``near``, ``group``) by the checks.
    """
    verdicts: list[Verdict] = []
    total = len(rows)
    if spec.min_samples is not None:
        verdicts.append(Verdict("samples", total >= spec.min_samples, str(total), f">= {spec.min_samples}"))
    for split in spec.required_splits:
        n = sum(1 for row in rows if row.get("split") == split)
        verdicts.append(Verdict(f"split {split} present", n > 0, f"{n} samples", "> 0"))
    if spec.max_class_share is not None:
        counts = {c: _count(Requirement("class"), rows, c) for c in _categories(rows, "class", spec.classes)}
        if counts and total:
            top = max(counts, key=lambda c: (counts[c], str(c)))
            share = counts[top] / total
            verdicts.append(
                Verdict(
                    "largest class share",
                    share <= spec.max_class_share,
                    f"{top}: {counts[top]} of {total} ({share:.1%})",
                    f"share <= {spec.max_class_share:g}",
                )
            )
        else:
            verdicts.append(Verdict("largest class share", True, "no classes", f"share <= {spec.max_class_share:g}"))
    for kind in spec.forbid_leakage:
        n = leaks.get(kind, 0)
        verdicts.append(Verdict(f"no {kind} leakage between splits", n == 0, f"{n} leaks", "0"))
    for requirement in spec.requirements:
        scope = [row for row in rows if requirement.split is None or row.get("split") == requirement.split]
        if requirement.each:
            if requirement.members is not None:
                categories = list(requirement.members)
            else:
                known = spec.classes if requirement.attribute == "class" else None
                categories = _categories(scope, requirement.attribute, known)
            for category in categories:
                label = f"{requirement.label()}: {category}"
                verdicts.append(_judge(requirement, label, _count(requirement, scope, category), len(scope)))
        else:
            verdicts.append(_judge(requirement, requirement.label(), _count(requirement, scope), len(scope)))
    return verdicts
