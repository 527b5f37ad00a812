"""Hierarchy partial credit: how deep in the classification tree a wrong code still agrees with the reference.

Many wrong answers are near misses - the right category, the wrong fifth character (Yuan et al. 2025). The
levels come from each system's own table, by walking a code's ``parent`` chain and reading its ``chapter``:

============  =======================================  ======================================
system        levels, top to bottom                    example lineage
============  =======================================  ======================================
icd10cm       chapter, block, category, subcategory    4 › E08-E13 › E11 › E11.6 › E11.65
icd9cm        chapter, category, subcategory           240-279 › 250 › 250.0 › 250.00
icd9cm-proc   chapter, category, subcategory           76-84 › 81 › 81.5 › 81.54
icd10pcs      section, body system, root operation     0 › 0D › 0DT › 0DTJ4ZZ
              (stored as chapter, block, category)
cpt           (none: a CPT file has no parent links)
============  =======================================  ======================================

ICD-10-PCS's three levels are the first one, two and three characters of a code (a PCS table is section,
body system and root operation); the other four axes are shown per character instead (results/aggregate.py
``axis_rates``). A fabricated PCS code in an existing table counts as "same category" (same root operation).

Systems without named levels - CPT and the user's own tables (codesystems/user.py) - get ``closeness``
instead, a score in [0, 1]: with parent links, the depth of the nearest common ancestor of the prediction
and the reference over the reference's depth (a top-level code has depth 1; the same code scores 1, codes
under different roots 0, a code not in the table 0); without parent links, the longest common prefix of
the two codes over the reference's length. An answer with no code scores 0, as digit match does.

ICD-10-CM has several subcategory levels (``T38.3`` › ``T38.3X`` › ``T38.3X5``); two codes *share the
subcategory level* when they have any subcategory ancestor in common. A predicted code that does not exist
(``E11.99``) is placed under its longest existing prefix that is a category or subcategory (``E11``), so a
fabricated code in the right category still counts as "same category" - ``valid`` tells the two apart.

Per case: ``hierarchy_level`` is the deepest level the prediction shares with the reference (``code`` for the
same code, then ``subcategory``, ``category``, ``block``, ``chapter``, or ``none``; None when no code was read
or the system has no hierarchy) and ``same_chapter`` / ``same_block`` / ``same_category`` /
``same_subcategory`` are booleans (None for a level the system does not have).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pytest_medcode.codesystems import CodeSystem, Entry
from pytest_medcode.codesystems.normalize import key as code_key

__all__ = ["LEVELS", "Lineage", "closeness", "hierarchy_metrics", "levels_of", "lineage"]

#: Shared levels from the deepest to the broadest; ``hierarchy_level`` takes one of these or "none".
LEVELS: tuple[str, ...] = ("code", "subcategory", "category", "block", "chapter")
#: The per-case boolean columns, broadest first.
FLAG_LEVELS: tuple[str, ...] = ("chapter", "block", "category", "subcategory")
_GROUP_LEVELS = frozenset({"chapter", "block"})
_MEMO_LIMIT = 200_000


@dataclass(frozen=True)
class Lineage:
    """A code's ancestors by level (the code itself under ``code`` when it exists)."""

    code: str | None
    subcategories: frozenset[str]
    category: str | None
    block: str | None
    chapter: str | None


class _Tree:
    """The table's parent links, read once per system."""

    def __init__(self, system: CodeSystem) -> None:
        table = system.table
        codes = table.column("code").to_pylist()
        levels = table.column("level").to_pylist()
        parents = table.column("parent").to_pylist()
        #: Chapter and block rows, which CodeSystem.lookup does not index (their names are not codes).
        self.groups: dict[str, tuple[str, str | None]] = {}
        self.levels_present: set[str] = set()
        for code, level, parent in zip(codes, levels, parents):
            self.levels_present.add(level)
            if level in _GROUP_LEVELS:
                self.groups[code] = (level, parent)
        self.has_tree = any(p is not None for p in parents)
        self.min_key = min((len(code_key(c)) for c, lv in zip(codes, levels) if lv == "category"), default=1)
        self.memo: dict[str, Lineage | None] = {}


_TREES: dict[int, tuple[CodeSystem, _Tree]] = {}
_LOCK = threading.Lock()


def _tree(system: CodeSystem) -> _Tree:
    held = _TREES.get(id(system))
    if held is None or held[0] is not system:
        with _LOCK:
            held = _TREES.get(id(system))
            if held is None or held[0] is not system:
                held = _TREES[id(system)] = (system, _Tree(system))
    return held[1]


def levels_of(system: CodeSystem) -> tuple[str, ...]:
    """The flag levels this system's table has (``()`` for a flat table such as CPT)."""
    tree = _tree(system)
    if not tree.has_tree:
        return ()
    return tuple(lv for lv in FLAG_LEVELS if lv in tree.levels_present)


def _anchor(system: CodeSystem, tree: _Tree, code: str) -> tuple[Entry | None, bool]:
    """The entry for ``code``, or for its longest existing prefix that is a category or subcategory."""
    entry = system.lookup(code)
    if entry is not None:
        return entry, True
    k = code_key(code)
    for n in range(len(k) - 1, tree.min_key - 1, -1):
        entry = system.lookup(k[:n])
        if entry is not None and (entry.level in ("category", "subcategory") or n == tree.min_key):
            return entry, False  # (a 3-character code with no subdivisions is a category too)
    return None, False


def lineage(system: CodeSystem, code: str) -> Lineage | None:
    """Where ``code`` sits in ``system``'s tree; None when not even its category exists."""
    tree = _tree(system)
    k = code_key(code)
    if k in tree.memo:
        return tree.memo[k]
    entry, exists = _anchor(system, tree, code)
    result = None
    if entry is not None:
        climb = _climb_codes(system, tree, entry)
        result = Lineage(
            code=entry.code if exists else None,
            subcategories=frozenset(climb.subcategories),
            category=climb.category,
            block=climb.block,
            chapter=climb.chapter,
        )
    if len(tree.memo) >= _MEMO_LIMIT:
        tree.memo.clear()
    tree.memo[k] = result
    return result


#: Steps of one walk up a tree, codes and chapter/block rows together: a parent cycle must not hang a run.
_MAX_STEPS = 32


@dataclass
class _Climb:
    """What a walk up the parent chain has found so far; ``steps`` is shared by both parts of the walk so
    the bound holds for the whole of it."""

    chapter: str | None
    subcategories: set[str] = field(default_factory=set)
    category: str | None = None
    block: str | None = None
    steps: int = 0


def _climb_codes(system: CodeSystem, tree: _Tree, entry: Entry) -> _Climb:
    """Walk from ``entry`` up its code ancestors, noting its subcategories and category, then on through
    the chapter/block rows where the chain leaves the codes."""
    climb = _Climb(chapter=entry.chapter)
    node: Entry | None = entry
    while node is not None and climb.steps < _MAX_STEPS:
        climb.steps += 1
        if node.level == "subcategory":
            climb.subcategories.add(node.code)
        elif node.level == "category":
            climb.category = node.code
        parent = node.parent
        if parent is None:
            break
        # A one-code block ("B20") and its category share a name: a node whose parent has its own name,
        # or a parent that is not a code, goes up to the chapter/block rows.
        if parent == node.code or system.lookup(parent) is None:
            if climb.category is None and node.level == "code":
                climb.category = node.code  # a 3-character code with no subdivisions is its own category
            _climb_groups(tree, parent, climb)
            break
        node = system.lookup(parent)
    return climb


def _climb_groups(tree: _Tree, parent: str, climb: _Climb) -> None:
    """Walk from ``parent`` up the chapter/block rows (which lookup does not index), noting the nearest
    block and, when the code's own entry named none, the chapter."""
    group = tree.groups.get(parent)
    while group is not None and climb.steps < _MAX_STEPS:
        climb.steps += 1
        level, up = group
        if level == "block" and climb.block is None:
            climb.block = parent
        elif level == "chapter":
            climb.chapter = climb.chapter or parent
        if up is None:
            break
        parent, group = up, tree.groups.get(up)


def _shared(ref: Lineage, pred: Lineage | None) -> dict[str, bool]:
    if pred is None:
        return {lv: False for lv in LEVELS}
    same_code = ref.code is not None and ref.code == pred.code
    return {
        "code": same_code,
        "subcategory": same_code or bool(ref.subcategories & pred.subcategories),
        "category": same_code or (ref.category is not None and ref.category == pred.category),
        "block": same_code or (ref.block is not None and ref.block == pred.block),
        "chapter": same_code or (ref.chapter is not None and ref.chapter == pred.chapter),
    }


def hierarchy_metrics(system: CodeSystem, reference: str, predicted: str | None) -> dict[str, Any]:
    """``hierarchy_level`` and ``same_<level>`` for one case (see the module docstring)."""
    present = levels_of(system)
    out: dict[str, Any] = {"hierarchy_level": None}
    out.update({f"same_{lv}": (None if lv not in present else False) for lv in FLAG_LEVELS})
    out["closeness"] = None
    if not present:
        out["closeness"] = closeness(system, reference, predicted)
        return out
    if predicted == reference and system.lookup(reference) is not None:  # the same code shares every level;
        out.update({f"same_{lv}": True for lv in FLAG_LEVELS if lv in present})  # no lineage walk (~40 µs)
        out["hierarchy_level"] = "code"
        return out
    ref = lineage(system, reference)
    if predicted is None or ref is None:
        return out
    shared = _shared(ref, lineage(system, predicted))
    for lv in FLAG_LEVELS:
        if lv in present:
            out[f"same_{lv}"] = shared[lv]
    out["hierarchy_level"] = next(
        (lv for lv in LEVELS if shared[lv] and (lv == "code" or lv in present)), "none"
    )
    return out


def _chain(system: CodeSystem, code: str) -> list[str]:
    """The code, its parent, ... up to its root (cycles are refused when a user table is read)."""
    chain: list[str] = []
    entry = system.lookup(code)
    while entry is not None and len(chain) < 64:
        chain.append(entry.code)
        entry = system.lookup(entry.parent) if entry.parent is not None else None
    return chain


def closeness(system: CodeSystem, reference: str, predicted: str | None) -> float | None:
    """How close a prediction sits to the reference in a system without named levels (module docstring)."""
    if predicted is None:
        return 0.0
    if _tree(system).has_tree:
        ref = _chain(system, reference)
        if not ref:
            return None
        on_ref = {code: len(ref) - i for i, code in enumerate(ref)}  # code → its depth
        depth = next((on_ref[c] for c in _chain(system, predicted) if c in on_ref), 0)
        return depth / len(ref)
    ref_key, pred_key = code_key(reference), code_key(predicted)
    if not ref_key:
        return None
    common = 0
    for a, b in zip(ref_key, pred_key):
        if a != b:
            break
        common += 1
    return common / len(ref_key)
