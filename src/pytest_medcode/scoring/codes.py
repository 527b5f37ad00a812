"""Per-case code metrics, as the study defined them (the authors' ``Code/Analysis.py``), and the answer → fields step.

Pure functions of (reference code, predicted code, code system); "no code" is an explicit None
and scores as not exact, not valid, length 0, no digits matched. Two profiles:

- ``default``: ``valid`` = the code exists at category level or below, ``billable`` = a billable leaf,
  ``fabricated`` = the answer names a code that exists in no bundled release of the system (an answer with
  no code is neither); a code missing from the scored release but in another is ``outdated`` (an earlier
  release has it) or ``not_yet_valid`` (only a later one does), with ``release_note`` saying which;
- ``paper``: the authors' definitions - ``valid`` = ``billable`` = the code with dots removed is in the
  billable list; ``fabricated`` = not valid (their tables add valid and fabricated to 100 %), whatever
  another release says (``outdated`` and ``not_yet_valid`` are None); no CPT check (all three None for
  CPT); a description only for a code spelled exactly as the table spells it.

Exact match (string equality), matched length and matched digits are the same function in both; they
differ only through what each profile's extractor reads.
"""

from __future__ import annotations

import threading
from typing import Any

from pytest_medcode.codesystems import NOT_YET_VALID, OUTDATED, CodeSystem, release_history, tracks_releases
from pytest_medcode.scoring.crosswalk import EMPTY as NO_CROSSWALK
from pytest_medcode.scoring.crosswalk import crosswalk_metrics
from pytest_medcode.scoring.hierarchy import FLAG_LEVELS, hierarchy_metrics
from pytest_medcode.scoring.parsing import PROFILES as PARSERS
from pytest_medcode.scoring.parsing import extract

#: The scoring profiles, one per way of reading an answer (scoring/parsing.py).
PROFILES: tuple[str, ...] = tuple(PARSERS)


def length_match(reference: str, predicted: str | None) -> bool:
    """Same length, dots included."""
    return predicted is not None and len(predicted) == len(reference)


def digit_match(reference: str, predicted: str | None) -> float:
    """Share of the reference's non-dot characters equal to the prediction's at the same index."""
    positions = [i for i, ch in enumerate(reference) if ch != "."]
    if not positions:
        return 0.0
    if predicted is None:
        return 0.0
    hits = sum(1 for i in positions if i < len(predicted) and predicted[i] == reference[i])
    return hits / len(positions)


def digit_positions(reference: str, predicted: str | None) -> list[bool]:
    """Per non-dot position k of the reference: did the prediction match there (for by-position tables)."""
    return [
        predicted is not None and i < len(predicted) and predicted[i] == reference[i]
        for i, ch in enumerate(reference)
        if ch != "."
    ]


_BILLABLE_KEYS: dict[int, tuple[CodeSystem, frozenset[str]]] = {}
_LOCK = threading.Lock()


def billable_keys(system: CodeSystem) -> frozenset[str]:
    """The billable list as the authors matched against it: codes without dots."""
    held = _BILLABLE_KEYS.get(id(system))
    if held is None or held[0] is not system:
        with _LOCK:
            held = _BILLABLE_KEYS.get(id(system))
            if held is None or held[0] is not system:
                keys = frozenset(code.replace(".", "") for code, _ in system.billable_codes())
                held = _BILLABLE_KEYS[id(system)] = (system, keys)
    return held[1]


#: The other-release fields where they do not apply (the paper profile, a failed call).
NO_RELEASE_NOTE: dict[str, Any] = {"outdated": None, "not_yet_valid": None, "release_note": None}


def _shared_metrics(reference: str, predicted: str | None) -> dict[str, Any]:
    return {
        "exact_match": predicted == reference,
        "length_match": length_match(reference, predicted),
        "digit_match": digit_match(reference, predicted),
        "digit_positions": digit_positions(reference, predicted),
    }


def code_metrics(system: CodeSystem, reference: str, predicted: str | None, profile: str = "default") -> dict[str, Any]:
    """exact, valid, billable, fabricated, length, digits and the predicted code's description (module doc)."""
    entry = system.lookup(predicted) if predicted is not None else None
    if profile == "paper":
        if system.name == "cpt":  # the study checked no CPT code against a list
            valid = None
        else:
            valid = predicted is not None and predicted.replace(".", "") in billable_keys(system)
        resolved = entry is not None and entry.code == predicted  # as a UMLS lookup of that exact string
        return {
            **_shared_metrics(reference, predicted),
            "valid": valid,
            "billable": valid,
            "fabricated": None if valid is None else not valid,
            **NO_RELEASE_NOTE,
            "predicted_description": entry.description if resolved and entry is not None else None,
        }
    if profile != "default":
        raise ValueError(f"unknown scoring profile {profile!r}; choose from {', '.join(PROFILES)}")
    return {
        **_shared_metrics(reference, predicted),
        "valid": entry is not None,
        "billable": bool(entry and entry.billable),
        **_release_fields(system, predicted, entry is not None),
        "predicted_description": entry.description if entry else None,
    }


def _release_fields(system: CodeSystem, predicted: str | None, exists: bool) -> dict[str, Any]:
    """fabricated, outdated, not_yet_valid and the release note of a default-profile answer; the other
    releases' code sets are read only for an answer the scored release lacks."""
    if not tracks_releases(system):  # one release (ICD-9-CM, CPT, the user's): no other to be a code of
        return {"fabricated": predicted is not None and not exists, **NO_RELEASE_NOTE}
    history = release_history(system.name, system.release, predicted) if predicted and not exists else None
    return {
        "fabricated": predicted is not None and not exists and history is None,
        "outdated": history is not None and history[0] == OUTDATED,
        "not_yet_valid": history is not None and history[0] == NOT_YET_VALID,
        "release_note": history[1] if history else None,
    }


def score_answer(system: CodeSystem, reference: str, text: str, profile: str = "default") -> dict[str, Any]:
    """Every per-case field that follows from a raw answer, under ``profile``.

    ``predicted_code`` is the profile's reading. ``codes`` and ``n_codes`` (over-generation) always use the
    default reading - every whole code of the system named in the answer - since the paper's extractor
    reads one code only. Hierarchy and other-system fields are computed alike in both profiles.
    """
    parsed = extract(system.name, text, profile)
    counted = parsed if profile == "default" else extract(system.name, text, "default")
    predicted = parsed.predicted
    metrics = code_metrics(system, reference, predicted, profile)
    valid, billable = metrics["valid"], metrics["billable"]
    return {
        "profile": profile,
        "codes": list(counted.codes),
        "predicted_code": predicted,
        "n_codes": counted.n_codes,
        **metrics,
        "valid_not_billable": None if valid is None else bool(valid and not billable),
        **hierarchy_metrics(system, reference, predicted),
        **crosswalk_metrics(system, reference, predicted, text),
    }


def unscored_fields(profile: str = "default") -> dict[str, Any]:
    """The answer-derived fields of a case whose call failed: nothing was read, nothing is scored."""
    return {
        "profile": profile,
        "codes": [],
        "predicted_code": None,
        "n_codes": 0,
        "exact_match": None,
        "valid": None,
        "billable": None,
        "fabricated": None,
        **NO_RELEASE_NOTE,
        "length_match": None,
        "digit_match": None,
        "digit_positions": [],
        "predicted_description": None,
        "valid_not_billable": None,
        "hierarchy_level": None,
        **{f"same_{lv}": None for lv in FLAG_LEVELS},
        "closeness": None,
        **NO_CROSSWALK,
    }
