"""Robustness variants: the same code asked with the description written the way people write it.

The study gives every model the official wording. Products meet clinicians' shorthand, typos and
patients' words. Each variant is a pure function of ``(description, code, seed)``:

- ``exact``   — the official description, unchanged;
- ``abbrev``  — abbreviations clinicians write (``T2DM``, ``w/o``, ``fx``, ``init enc``), from the
  curated table below; every phrase the table knows is abbreviated;
- ``synonym`` — about a third of the content words swapped for a WordNet synonym of the word's
  first clinical sense (body, state, process nouns; adjectives). WordNet comes from
  :func:`pytest_medcode.scoring.similarity.prepare_wordnet` (Debian's ``wordnet-base``); where it
  cannot be had, a small curated table stands in and :func:`synonym_source` says ``"curated"``;
- ``typo``    — keyboard slips (a neighbouring QWERTY key, two swapped letters, a dropped or a doubled
  letter), about one word in four, at least one;
- ``reorder`` — the order clinicians write in: ``X of Y`` turned into ``Y X`` and the comma-separated
  qualifiers shuffled; a description with neither gets its words shuffled;
- ``lay``     — patients' words for medical terms (``heart attack``, ``thigh bone``, ``high blood
  pressure``), from a curated table; no network, no model.

Determinism on every machine: each draw uses ``random.Random(f"{seed}:{code}:{variant}")`` (string
seeds are hashed with SHA-512 by :mod:`random`, never with the per-process ``hash()``), tables are
walked in a fixed order, and WordNet is read in its own (file) order. ``abbrev`` and ``lay`` need
no randomness; a description the table does not touch stays as it is (:func:`perturb` reports
that through ``changed``), which is the honest outcome: that wording has no common shorthand.
"""

from __future__ import annotations

import functools
import random
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "ABBREVIATIONS",
    "LAY_TERMS",
    "VARIANTS",
    "Perturbation",
    "VariantError",
    "parse_variants",
    "perturb",
    "synonym_source",
]

VARIANTS: tuple[str, ...] = ("exact", "abbrev", "synonym", "typo", "reorder", "lay")


class VariantError(ValueError):
    """An unknown variant name; the message is one line."""


def parse_variants(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"exact,typo"`` → ``("exact", "typo")``, in the order given, without repeats."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(v.strip().lower() for v in items if v.strip()))
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise VariantError(
            f"--medcode-variant {','.join(items)!r}: unknown variant {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(VARIANTS)}"
        )
    return names


@dataclass(frozen=True)
class Perturbation:
    variant: str
    text: str
    changed: bool  # False when the variant found nothing to change in this description


def perturb(description: str, variant: str, seed: int, code: str) -> Perturbation:
    """The description as ``variant`` writes it; the same arguments give the same text everywhere."""
    if variant not in _FUNCTIONS:
        raise VariantError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if variant == "exact":
        return Perturbation(variant, description, False)
    rng = random.Random(f"{seed}:{code}:{variant}")
    text = _FUNCTIONS[variant](description, rng)
    text = _SPACES.sub(" ", text).strip()
    return Perturbation(variant, text, text != description)


# --------------------------------------------------------------------------------------------------
# Shared helpers

_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def _match_case(original: str, replacement: str) -> str:
    """Keep a capital first letter; an all-caps abbreviation (``COPD``) stays as written."""
    if replacement.isupper() or not original[:1].isupper() or replacement[:1].isupper():
        return replacement
    return replacement[:1].upper() + replacement[1:]


def _phrase_replacer(table: dict[str, str]) -> Callable[[str], str]:
    """Replace every phrase of ``table`` (case-insensitive, whole words, longest phrase first)."""
    phrases = sorted(table, key=lambda p: (-len(p), p))
    pattern = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(re.escape(p) for p in phrases) + r")(?![A-Za-z0-9])",
                         re.IGNORECASE)

    def replace(text: str) -> str:
        return pattern.sub(lambda m: _match_case(m.group(0), table[m.group(0).lower()]), text)

    return replace


# --------------------------------------------------------------------------------------------------
# abbrev: shorthand clinicians write in notes and problem lists

ABBREVIATIONS: dict[str, str] = {
    # diagnoses
    "type 2 diabetes mellitus": "T2DM",
    "type 1 diabetes mellitus": "T1DM",
    "diabetes mellitus": "DM",
    "essential (primary) hypertension": "HTN",
    "hypertension": "HTN",
    "hypertensive": "HTN",
    "chronic obstructive pulmonary disease": "COPD",
    "congestive heart failure": "CHF",
    "heart failure": "HF",
    "myocardial infarction": "MI",
    "atrial fibrillation": "AFib",
    "atherosclerotic heart disease": "ASHD",
    "coronary artery disease": "CAD",
    "chronic kidney disease": "CKD",
    "end stage renal disease": "ESRD",
    "acute kidney failure": "AKI",
    "urinary tract infection": "UTI",
    "gastro-esophageal reflux disease": "GERD",
    "gastroesophageal reflux disease": "GERD",
    "deep vein thrombosis": "DVT",
    "pulmonary embolism": "PE",
    "cerebral infarction": "CVA",
    "transient cerebral ischemic attack": "TIA",
    "human immunodeficiency virus": "HIV",
    "acute upper respiratory infection": "URI",
    "osteoarthritis": "OA",
    "rheumatoid arthritis": "RA",
    "benign prostatic hyperplasia": "BPH",
    "obstructive sleep apnea": "OSA",
    "multiple sclerosis": "MS",
    "attention-deficit hyperactivity disorder": "ADHD",
    "major depressive disorder": "MDD",
    "generalized anxiety disorder": "GAD",
    "post-traumatic stress disorder": "PTSD",
    "irritable bowel syndrome": "IBS",
    "systemic lupus erythematosus": "SLE",
    "peripheral vascular disease": "PVD",
    "otitis media": "OM",
    "pneumonia": "PNA",
    "shortness of breath": "SOB",
    "malignant neoplasm": "CA",
    "carcinoma in situ": "CIS",
    "gastrointestinal": "GI",
    "magnetic resonance imaging": "MRI",
    "computed tomography": "CT",
    "electrocardiogram": "ECG",
    "blood pressure": "BP",
    "foreign body": "FB",
    "motor vehicle": "MV",
    # anatomy and qualifiers
    "lower extremity": "LE",
    "upper extremity": "UE",
    "lower limb": "LE",
    "upper limb": "UE",
    "left": "L",
    "right": "R",
    "bilateral": "bilat",
    "unspecified": "unsp",
    "without": "w/o",
    "with": "w/",
    "fracture": "fx",
    "fractures": "fxs",
    "history": "hx",
    "diagnosis": "dx",
    "disease": "dz",
    "disorder": "d/o",
    "syndrome": "synd",
    "secondary": "2nd",
    "displaced": "displ",
    "nondisplaced": "nondispl",
    "initial encounter": "init enc",
    "subsequent encounter": "subs enc",
    "sequela": "sqla",
    "laceration": "lac",
    "abdominal": "abd",
    "abdomen": "abd",
    "pregnancy": "preg",
    "weeks": "wks",
    "gestation": "gest",
    "trimester": "tri",
    "complicating": "compl",
    "complications": "compls",
    "procedure": "proc",
    "injection": "inj",
    "vertebra": "vert",
    "infection": "infxn",
    "hemorrhage": "hemorrh",
    "chronic": "chr",
    "acute": "ac",
    "other": "oth",
    "specified": "spec",
    "and": "&",
}

_abbreviate = _phrase_replacer(ABBREVIATIONS)


def _abbrev(text: str, rng: random.Random) -> str:
    return _abbreviate(text)


# --------------------------------------------------------------------------------------------------
# lay: how patients and intake forms say it

LAY_TERMS: dict[str, str] = {
    "myocardial infarction": "heart attack",
    "cerebral infarction": "stroke",
    "essential (primary) hypertension": "high blood pressure",
    "hypertension": "high blood pressure",
    "hypertensive": "high blood pressure",
    "hyperlipidemia": "high cholesterol",
    "pure hypercholesterolemia": "high cholesterol",
    "hypercholesterolemia": "high cholesterol",
    "hypothyroidism": "underactive thyroid",
    "hyperthyroidism": "overactive thyroid",
    "diabetes mellitus": "diabetes",
    "malignant neoplasm": "cancer",
    "benign neoplasm": "non-cancerous growth",
    "neoplasm": "growth",
    "carcinoma": "cancer",
    "dyspnea": "shortness of breath",
    "pruritus": "itching",
    "syncope": "fainting",
    "vertigo": "dizziness",
    "cephalgia": "headache",
    "hematuria": "blood in the urine",
    "dysuria": "painful urination",
    "epistaxis": "nosebleed",
    "dysphagia": "trouble swallowing",
    "dyspepsia": "indigestion",
    "tinnitus": "ringing in the ears",
    "cerumen": "earwax",
    "dental caries": "cavities",
    "halitosis": "bad breath",
    "alopecia": "hair loss",
    "insomnia": "trouble sleeping",
    "arthralgia": "joint pain",
    "myalgia": "muscle pain",
    "edema": "swelling",
    "hemorrhage": "bleeding",
    "laceration": "cut",
    "contusion": "bruise",
    "abrasion": "scrape",
    "fracture": "broken bone",
    "otitis media": "middle ear infection",
    "pharyngitis": "sore throat",
    "rhinitis": "runny nose",
    "conjunctivitis": "pink eye",
    "pyelonephritis": "kidney infection",
    "cystitis": "bladder infection",
    "nephrolithiasis": "kidney stones",
    "calculus of kidney": "kidney stone",
    "cholelithiasis": "gallstones",
    "gastroenteritis": "stomach flu",
    "influenza": "flu",
    "varicella": "chickenpox",
    "pertussis": "whooping cough",
    "rubella": "German measles",
    "urticaria": "hives",
    "dermatitis": "skin rash",
    "emesis": "throwing up",
    "vomiting": "throwing up",
    "nausea": "feeling sick",
    "pyrexia": "fever",
    "malaise": "feeling unwell",
    "obesity": "being very overweight",
    "femur": "thigh bone",
    "tibia": "shin bone",
    "fibula": "calf bone",
    "humerus": "upper arm bone",
    "radius": "forearm bone",
    "clavicle": "collarbone",
    "patella": "kneecap",
    "scapula": "shoulder blade",
    "sternum": "breastbone",
    "vertebra": "backbone",
    "cranium": "skull",
    "renal": "kidney",
    "hepatic": "liver",
    "pulmonary": "lung",
    "cardiac": "heart",
    "gastric": "stomach",
    "ocular": "eye",
    "cutaneous": "skin",
    "neonatal": "newborn",
    "lower limb": "leg",
    "upper limb": "arm",
    "anterior": "front",
    "posterior": "back",
    "bilateral": "both sides",
    "unspecified": "",  # patients leave it out
    "initial encounter": "first visit",
    "subsequent encounter": "follow-up visit",
    "sequela": "after-effects",
    "chronic": "long-term",
    "acute": "sudden",
}

_lay_words = _phrase_replacer(LAY_TERMS)


_EMPTY_SEGMENT = re.compile(r"\s*,\s*(?=,|$)|^\s*,\s*")


def _lay(text: str, rng: random.Random) -> str:
    return _EMPTY_SEGMENT.sub("", _lay_words(text))


# --------------------------------------------------------------------------------------------------
# synonym: WordNet, or a curated table where WordNet cannot be had

CURATED_SYNONYMS: dict[str, tuple[str, ...]] = {
    "fracture": ("break",),
    "disorder": ("condition",),
    "disease": ("illness", "condition"),
    "pain": ("ache", "hurting"),
    "injury": ("trauma", "harm"),
    "wound": ("lesion",),
    "bleeding": ("hemorrhage",),
    "hemorrhage": ("bleeding",),
    "neoplasm": ("tumor",),
    "tumor": ("neoplasm",),
    "ulcer": ("ulceration",),
    "burn": ("burning",),
    "poisoning": ("intoxication",),
    "femur": ("thighbone",),
    "heart": ("cardiac muscle",),
    "abnormal": ("atypical",),
    "chronic": ("continuing",),
    "acute": ("severe",),
    "infection": ("contagion",),
    "failure": ("insufficiency",),
    "inflammation": ("redness",),
    "swelling": ("puffiness",),
    "stomach": ("belly",),
    "abdomen": ("belly",),
    "foot": ("pes",),
    "hand": ("manus",),
    "skin": ("tegument",),
    "kidney": ("nephros",),
    "bone": ("os",),
    "cancer": ("malignancy",),
    "malignant": ("cancerous",),
    "benign": ("harmless",),
    "complete": ("total",),
    "partial": ("incomplete",),
    "closed": ("shut",),
    "open": ("exposed",),
    "unspecified": ("undetermined",),
    "multiple": ("several",),
    "accidental": ("inadvertent",),
    "initial": ("first",),
    "subsequent": ("later",),
    "lower": ("inferior",),
    "upper": ("superior",),
}

# WordNet lexicographer files whose senses a code description means: states (diseases), body parts,
# processes and substances; adjectives keep their first senses only.
_NOUN_FILES = frozenset({"noun.state", "noun.body", "noun.process", "noun.substance"})
_ADJ_FILES = frozenset({"adj.all", "adj.pert"})
_STOPWORDS = frozenset(
    "a an and as at by for from in into of on or other than the to with without due not no nos "
    "unspecified specified left right site type stage part".split()
)
_SYNONYM_SHARE = 0.34

_wordnet_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _wordnet():
    """nltk's WordNet reader, or None when it cannot be had offline."""
    with _wordnet_lock:
        try:
            try:
                from pytest_medcode.scoring.similarity import prepare_wordnet, wordnet_available
            except ImportError:  # the metrics module is not there: try nltk's own data path
                pass
            else:
                prepare_wordnet()
                if not wordnet_available():
                    return None
            from nltk.corpus import wordnet

            wordnet.ensure_loaded()
            return wordnet
        except Exception:  # no nltk, no data: the curated table stands in
            return None


def synonym_source() -> str:
    """``"wordnet"`` when WordNet synonyms are used, ``"curated"`` when the fallback table is."""
    return "wordnet" if _wordnet() is not None else "curated"


@functools.lru_cache(maxsize=20_000)
def _synonyms(word: str) -> tuple[str, ...]:
    """Synonyms of ``word``'s first clinical sense, in WordNet's order; () when it has none."""
    lower = word.lower()
    wn = _wordnet()
    if wn is None:
        return CURATED_SYNONYMS.get(lower, ())
    out: list[str] = []
    for pos, files, limit in (("n", _NOUN_FILES, 1), ("a", _ADJ_FILES, 2)):
        senses = [s for s in wn.synsets(lower, pos=pos) if s.lexname() in files][:limit]
        for synset in senses:
            names = [lemma.name() for lemma in synset.lemmas()]
            if lower not in (n.lower() for n in names):
                continue  # the word is an inflected form (plural...): a lemma would change the grammar
            for name in names:
                candidate = name.replace("_", " ")
                if candidate.lower() != lower and lower not in candidate.lower() and candidate not in out:
                    out.append(candidate)
        if out:
            break
    return tuple(out)


def _replace_some(text: str, words: list[re.Match[str]], share: float, rng: random.Random,
                  replace: Callable[[str], str]) -> str:
    """``text`` with a ``share`` (at least one) of ``words``, drawn with ``rng``, each replaced by ``replace``."""
    if not words:
        return text
    count = max(1, round(share * len(words)))
    chosen = sorted(rng.sample(range(len(words)), count))
    out, last = [], 0
    for i in chosen:
        m = words[i]
        out.append(text[last:m.start()])
        out.append(replace(m.group(0)))
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def _synonym(text: str, rng: random.Random) -> str:
    eligible = [m for m in _WORD.finditer(text) if m.group(0).lower() not in _STOPWORDS and _synonyms(m.group(0))]
    return _replace_some(text, eligible, _SYNONYM_SHARE, rng,
                         lambda word: _match_case(word, rng.choice(_synonyms(word))))


# --------------------------------------------------------------------------------------------------
# typo: keyboard slips

_QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_QWERTY_ROWS):
    for _c, _ch in enumerate(_row):
        near = [_row[j] for j in (_c - 1, _c + 1) if 0 <= j < len(_row)]
        for _dr in (-1, 1):
            if 0 <= _r + _dr < len(_QWERTY_ROWS):
                other = _QWERTY_ROWS[_r + _dr]
                near += [other[j] for j in (_c - 1, _c, _c + 1) if 0 <= j < len(other)]
        _NEIGHBOURS[_ch] = "".join(near)
_TYPO_SHARE = 0.25


def _slip(word: str, rng: random.Random) -> str:
    kind = rng.choice(("neighbour", "swap", "drop", "double"))
    i = rng.randrange(1, len(word) - 1)  # keep the first and last letters, as most slips do
    ch = word[i]
    if kind == "neighbour" and ch.lower() in _NEIGHBOURS:
        new = rng.choice(_NEIGHBOURS[ch.lower()])
        return word[:i] + (new.upper() if ch.isupper() else new) + word[i + 1:]
    if kind == "swap" and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "drop":
        return word[:i] + word[i + 1:]
    return word[:i] + ch + word[i:]


def _typo(text: str, rng: random.Random) -> str:
    words = [m for m in _WORD.finditer(text) if len(m.group(0)) >= 4]
    return _replace_some(text, words, _TYPO_SHARE, rng, lambda word: _slip(word, rng))


# --------------------------------------------------------------------------------------------------
# reorder: the order a clinician writes in

_OF = re.compile(r"^(.+?) of (.+)$")


def _invert_of(segment: str) -> str:
    """``fracture of left femur`` → ``left femur fracture``."""
    m = _OF.match(segment.strip())
    if m is None:
        return segment.strip()
    return f"{m.group(2).strip()} {m.group(1).strip()}"


def _lower_first(text: str) -> str:
    """``Bubonic`` → ``bubonic`` once it no longer starts the phrase; ``COPD`` stays."""
    return text[:1].lower() + text[1:] if text[:1].isupper() and not text[:2].isupper() else text


def _reorder(text: str, rng: random.Random) -> str:
    text = _lower_first(text)
    segments = [s.strip() for s in text.split(",") if s.strip()]
    flipped = [_invert_of(s) if rng.random() < 0.8 else s for s in segments]
    if len(flipped) > 1:
        head, rest = flipped[0], flipped[1:]
        rng.shuffle(rest)
        flipped = [head, *rest] if rng.random() < 0.5 else [*rest, head]
    result = ", ".join(flipped)
    if result == text:
        words = text.split()
        for _ in range(5):  # a single phrase: shuffle its words
            rng.shuffle(words)
            if " ".join(words) != text:
                break
        result = " ".join(words)
    return result


def _exact(text: str, rng: random.Random) -> str:
    return text


_FUNCTIONS: dict[str, Callable[[str, random.Random], str]] = {
    "exact": _exact,
    "abbrev": _abbrev,
    "synonym": _synonym,
    "typo": _typo,
    "reorder": _reorder,
    "lay": _lay,
}
