"""``moto-vision data split``: deterministic, stratified, grouped train/val/test manifests.

Samples are first gathered into groups (a capture session, a subject, a scene: read from a record field or
a filename pattern; with ``merge_duplicates`` exact and near-duplicate images join one group too), so that a
group never straddles two splits. Each group gets a stratum (its members' most common class, or CCT bin for
AWB). Groups are then ordered by stratum and, within a stratum, by a seeded hash of the group's name, and
dealt one by one to the split that is furthest below its target share of the samples dealt so far. That keeps
every stratum's split shares close to the targets, gives the same answer for the same data and seed whatever
order the indexer lists files in, and never splits a group.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moto_vision.data.records import SPLITS, SampleRecord, write_split_manifest

__all__ = ["DEFAULT_CCT_BINS", "SplitResult", "assign_groups", "cct_bin_labels", "split_dataset", "strata_for"]

#: CCT bin edges (K) for stratifying AWB data: tungsten, warm white, neutral, daylight, shade.
DEFAULT_CCT_BINS = (3000.0, 4000.0, 5000.0, 6500.0)


@dataclass
class SplitResult:
    """Which split each sample went to, with the numbers behind it."""

    splits: list[str]
    groups: list[str]
    strata: list[str]
    fractions: dict[str, float]
    seed: int
    counts: dict[str, int] = field(default_factory=dict)
    per_stratum: dict[str, dict[str, int]] = field(default_factory=dict)

    def assignment(self, records: Sequence[SampleRecord]) -> dict[str, list[SampleRecord]]:
        """Records per split (every split in ``fractions``, possibly empty)."""
        out: dict[str, list[SampleRecord]] = {split: [] for split in self.fractions}
        for record, split in zip(records, self.splits):
            out[split].append(record)
        return out


def cct_bin_labels(cct: Sequence[float | None], edges: Sequence[float] = DEFAULT_CCT_BINS) -> list[str]:
    """Bin names such as ``"3000-4000K"`` for CCT values (``"unknown"`` for missing ones)."""
    labels = []
    bounds = [-math.inf, *edges, math.inf]
    for value in cct:
        if value is None or not math.isfinite(value):
            labels.append("unknown")
            continue
        k = int(np.searchsorted(edges, value, side="right"))
        low, high = bounds[k], bounds[k + 1]
        labels.append(
            f"<{high:.0f}K" if low == -math.inf else f">={low:.0f}K" if high == math.inf else f"{low:.0f}-{high:.0f}K"
        )
    return labels


def strata_for(
    records: Sequence[SampleRecord],
    task: str,
    stratify: str,
    cct: Sequence[float | None] | None = None,
    cct_bins: Sequence[float] = DEFAULT_CCT_BINS,
) -> list[str]:
    """The stratum of each record.

    Args:
        records: the samples.
        task: the task (``auto`` stratifies scene by class, AWB by CCT bin, portrait not at all).
        stratify: ``auto``, ``none``, or comma-separated keys from ``class``, ``cct``, ``extra.<key>``
            (e.g. ``cct,extra.camera``).
        cct: each record's CCT (needed for ``cct``).
        cct_bins: CCT bin edges in kelvin.
    """
    if stratify == "auto":
        stratify = {"scene": "class", "awb": "cct"}.get(task, "none")
    if stratify == "none":
        return ["all"] * len(records)
    keys = [k.strip() for k in stratify.split(",") if k.strip()]
    columns = []
    for key in keys:
        if key == "class":
            # Multi-label samples go to the stratum of their rarest label, so rare classes spread over splits.
            frequency = Counter(label for r in records for label in (r.labels or []))
            columns.append(
                [min(r.labels, key=lambda c: (frequency[c], c)) if r.labels else "unlabelled" for r in records]
            )
        elif key == "cct":
            if cct is None:
                raise ValueError("stratify by cct needs the illuminants' CCT (AWB datasets).")
            columns.append(cct_bin_labels(cct, cct_bins))
        elif key.startswith("extra."):
            columns.append([str(r.extra.get(key[6:], "unknown")) for r in records])
        else:
            raise ValueError(f"Unknown stratification key {key!r}; use auto, none, class, cct or extra.<key>.")
    return ["|".join(parts) for parts in zip(*columns)]


def _order_key(seed: int, name: str) -> str:
    # A seeded hash, not Python's hash(): stable across runs and machines.
    return hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()


def assign_groups(
    groups: Sequence[str], strata: Sequence[str], fractions: dict[str, float], seed: int = 0
) -> list[str]:
    """Deal whole groups to splits (see the module docstring); returns each sample's split.

    Args:
        groups: each sample's group name (samples of one group always share a split).
        strata: each sample's stratum.
        fractions: target share per split (sums to 1).
        seed: changes the order of groups within a stratum, hence the split.
    """
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    group_stratum = {}
    for group, indices in members.items():
        counts = Counter(strata[i] for i in indices)
        group_stratum[group] = min(counts, key=lambda s: (-counts[s], s))
    order = sorted(members, key=lambda g: (group_stratum[g], _order_key(seed, g)))
    names = list(fractions)
    assigned = dict.fromkeys(names, 0)
    dealt = 0
    result = [""] * len(groups)
    for group in order:
        size = len(members[group])
        dealt += size
        split = max(names, key=lambda s: (fractions[s] * dealt - assigned[s], -names.index(s)))
        assigned[split] += size
        for i in members[group]:
            result[i] = split
    return result


def split_dataset(
    records: Sequence[SampleRecord],
    groups: Sequence[str | None],
    strata: Sequence[str],
    fractions: dict[str, float],
    seed: int = 0,
    merge: Sequence[tuple[int, int]] = (),
    names: Sequence[str] | None = None,
) -> SplitResult:
    """Split ``records``; samples without a group form their own group; ``merge`` pairs join their groups.

    Args:
        records: the samples.
        groups: each sample's capture group, or ``None``.
        strata: each sample's stratum (:func:`strata_for`).
        fractions: target share per split, e.g. ``{"train": 0.8, "val": 0.1, "test": 0.1}``.
        seed: split seed.
        merge: sample index pairs that must share a split (duplicates).
        names: a stable name per sample (e.g. the relative path) for samples without a group.
    """
    unknown = set(fractions) - set(SPLITS)
    if unknown or not fractions:
        raise ValueError(f"Split names must come from {list(SPLITS)}, got {sorted(fractions)}.")
    if any(f < 0 for f in fractions.values()) or not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"Split fractions must be >= 0 and sum to 1, got {fractions}.")
    names = list(names) if names is not None else [Path(r.image).as_posix() for r in records]
    resolved = [f"group:{g}" if g is not None else f"file:{n}" for g, n in zip(groups, names)]
    if merge:
        # Union the groups linked by duplicate pairs; the merged group keeps its smallest name (order-free).
        parent: dict[str, str] = {g: g for g in resolved}

        def find(g: str) -> str:
            while parent[g] != g:
                parent[g] = parent[parent[g]]
                g = parent[g]
            return g

        for i, j in merge:
            a, b = find(resolved[i]), find(resolved[j])
            if a != b:
                parent[max(a, b)] = min(a, b)
        resolved = [find(g) for g in resolved]
    splits = assign_groups(resolved, strata, fractions, seed)
    result = SplitResult(splits=splits, groups=resolved, strata=list(strata), fractions=dict(fractions), seed=seed)
    result.counts = {s: splits.count(s) for s in fractions}
    per: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(fractions, 0))
    for stratum, split in zip(strata, splits):
        per[stratum][split] += 1
    result.per_stratum = {k: per[k] for k in sorted(per)}
    return result


def write_split(
    result: SplitResult, records: Sequence[SampleRecord], root: str | Path, out_dir: str | Path, info: dict[str, Any]
) -> Path:
    """Write ``train.txt`` / ``val.txt`` / ``test.txt`` (via ``write_split_manifest``) and ``split.json``."""
    out = write_split_manifest(result.assignment(records), root, out_dir)
    summary = {
        **info,
        "seed": result.seed,
        "fractions": result.fractions,
        "counts": result.counts,
        "groups": len(set(result.groups)),
        "per_stratum": result.per_stratum,
    }
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out
