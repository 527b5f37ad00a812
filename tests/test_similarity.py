"""Tests for pytest_medcode.scoring.similarity and pytest_medcode.wordnet: offline WordNet, METEOR, BERTScore,
on real data and model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import missing
from pytest_medcode.scoring import similarity
from pytest_medcode.scoring.similarity import (
    BertScorer,
    MeteorScorer,
    SimilarityUnavailable,
    f1_from_precision_recall,
    greedy_match,
)
from pytest_medcode.wordnet import DEBIAN_WORDNET, prepare_wordnet, wordnet_available

SRC = Path(similarity.__file__).resolve().parents[2]
HAVE_DEBIAN_WORDNET = (DEBIAN_WORDNET / "data.noun").is_file()
WORDNET_INSTALL = (
    f"WordNet for METEOR ({DEBIAN_WORDNET} has no data.noun); "
    "apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index"
)


@pytest.fixture
def debian_wordnet() -> Path:
    """Debian's WordNet files: set-up installs them, so CI fails without them; elsewhere the test skips."""
    if not HAVE_DEBIAN_WORDNET:
        missing(WORDNET_INSTALL)
    return DEBIAN_WORDNET


needs_debian_wordnet = pytest.mark.usefixtures("debian_wordnet")

SLIDE_REF = "diabetes mellitus without complication"
SLIDE_CAND = "diabetes without complications"


# ---------------------------------------------------------------------------- WordNet preparation

# Runs in a fresh interpreter with nltk's search path emptied, so the test sees "no WordNet" even on a
# machine whose nltk_data has it, and so one process's nltk state does not leak into another.
_PREPARE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import nltk
    nltk.data.path[:] = []
    from pytest_medcode.wordnet import prepare_wordnet, wordnet_available
    root = prepare_wordnet(Path(sys.argv[1]), source=Path(sys.argv[2]))
    print(json.dumps({"root": None if root is None else str(root), "available": wordnet_available()}))
    """
)


def _start_prepare(target: Path, source: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, "-c", _PREPARE, str(target), str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@needs_debian_wordnet
def test_prepare_wordnet_concurrent_builds_one_private_copy_then_reuses_it(tmp_path: Path) -> None:
    target = tmp_path / "nltk_data"
    procs = [_start_prepare(target, DEBIAN_WORDNET) for _ in range(2)]
    for result in map(_result, procs):
        assert result == {"root": str(target), "available": True}
    corpora = target / "corpora"
    assert sorted(p.name for p in corpora.iterdir()) == ["wordnet"]  # no temp dirs left behind
    wordnet = corpora / "wordnet"
    lexnames = (wordnet / "lexnames").read_text().splitlines()
    assert len(lexnames) == 45
    assert lexnames[0] == "00\tadj.all\t3" and lexnames[44] == "44\tadj.ppl\t3"
    for f in wordnet.iterdir():
        assert not f.is_symlink()
        assert f.stat().st_mode & 0o022 == 0  # nltk refuses group/world-writable data
    assert {"index.sense", "cntlist.rev", "data.noun", "verb.exc"} <= {f.name for f in wordnet.iterdir()}

    before = (wordnet / "data.noun").stat().st_mtime_ns
    assert _result(_start_prepare(target, DEBIAN_WORDNET)) == {"root": str(target), "available": True}
    assert (wordnet / "data.noun").stat().st_mtime_ns == before  # reused, not rebuilt


def test_prepare_wordnet_without_a_source_returns_none(tmp_path: Path) -> None:
    target = tmp_path / "nltk_data"
    result = _result(_start_prepare(target, tmp_path / "no-wordnet-here"))
    assert result == {"root": None, "available": False}
    assert not target.exists()


@pytest.fixture(scope="module")
def wordnet_ready(tmp_path_factory: pytest.TempPathFactory) -> None:
    if not HAVE_DEBIAN_WORDNET and not wordnet_available():
        missing(WORDNET_INSTALL)
    prepare_wordnet(tmp_path_factory.mktemp("nltk"))
    assert wordnet_available()


# ---------------------------------------------------------------------------- METEOR


@pytest.fixture(scope="module")
def meteor(wordnet_ready: None) -> MeteorScorer:
    scorer = MeteorScorer()
    assert scorer.synonyms
    return scorer


@pytest.fixture(scope="module")
def meteor_plain() -> MeteorScorer:
    return MeteorScorer(use_wordnet=False)


def test_meteor_slide_example_is_stable(meteor: MeteorScorer, meteor_plain: MeteorScorer) -> None:
    # 3 matches (2 exact + stem complications/complication), P = 1, R = 3/4, 2 chunks of 3 matches:
    # Fmean = 0.75 / (0.9 + 0.075) = 0.7692; penalty 0.5 * (2/3)^3 = 0.1481 -> 0.6553.
    [with_syn] = meteor.score([(SLIDE_REF, SLIDE_CAND)])
    [without] = meteor_plain.score([(SLIDE_REF, SLIDE_CAND)])
    assert with_syn == pytest.approx(0.6553, abs=0.01)
    assert without == pytest.approx(0.6553, abs=0.01)


def test_meteor_labels_and_flags(meteor: MeteorScorer, meteor_plain: MeteorScorer) -> None:
    assert meteor.synonyms is True
    assert meteor.label == "METEOR (nltk, WordNet synonyms)"
    assert meteor_plain.synonyms is False
    assert meteor_plain.label == "METEOR without synonym matching"


def test_meteor_uses_wordnet_synonyms(meteor: MeteorScorer, meteor_plain: MeteorScorer) -> None:
    pair = ("Malignant tumor of lung", "Malignant neoplasm of lung")
    [with_syn] = meteor.score([pair])
    [without] = meteor_plain.score([pair])
    assert with_syn > 0.95  # tumor ~ neoplasm in WordNet
    assert without == pytest.approx(0.6389, abs=0.01)


@pytest.mark.parametrize(
    "candidate",
    [
        "diabetes mellitus without complication",
        "  Diabetes Mellitus without complication ",
        "diabetes mellitus, without complication.",
    ],
)
def test_meteor_identical_descriptions_score_one(meteor_plain: MeteorScorer, candidate: str) -> None:
    assert meteor_plain.score([(SLIDE_REF, candidate)]) == [1.0]


def test_meteor_dedups_and_keeps_order(meteor_plain: MeteorScorer) -> None:
    a, b = (SLIDE_REF, SLIDE_CAND), ("Cholera", "Typhoid fever")
    singles = meteor_plain.score([a]) + meteor_plain.score([b])
    assert meteor_plain.score([a, b, a, b, a]) == [singles[0], singles[1], singles[0], singles[1], singles[0]]
    assert meteor_plain.score([]) == []
    assert meteor_plain.score([("", "Cholera"), ("Cholera", "  ")]) == [0.0, 0.0]


def _sibling_pairs(step: int) -> list[tuple[str, str]]:
    """Real (code, sibling) description pairs, every ``step``-th ICD-10-CM category's first three codes."""
    from collections import defaultdict

    from pytest_medcode.codesystems import load_system

    by_category: dict[str, list[str]] = defaultdict(list)
    for code, description in load_system("icd10cm").billable_codes():
        by_category[code[:3]].append(description)
    return [(group[0], group[i]) for group in list(by_category.values())[::step] for i in (1, 2) if len(group) > i]


@pytest.mark.parametrize("synonyms", [True, False], ids=["wordnet", "no-wordnet"])
def test_meteor_equals_nltk_called_plainly(request: pytest.FixtureRequest, synonyms: bool) -> None:
    """Each word's stem and WordNet lemmas are looked up once per scorer; the scores are nltk's own, bit for bit,
    on real near misses (words shared across pairs, so the memos are hit)."""
    from nltk.stem.porter import PorterStemmer
    from nltk.translate.meteor_score import meteor_score

    from pytest_medcode.scoring.similarity import tokenize

    scorer: MeteorScorer = request.getfixturevalue("meteor" if synonyms else "meteor_plain")
    if synonyms:
        from nltk.corpus import wordnet
    else:
        wordnet = similarity._NoSynonyms()
    pairs = _sibling_pairs(8)
    assert len(pairs) >= 300
    expected = []
    for reference, candidate in pairs:
        ref, cand = tokenize(reference), tokenize(candidate)
        expected.append(0.0 if not ref or not cand else 1.0 if ref == cand else
                        float(meteor_score([ref], cand, stemmer=PorterStemmer(), wordnet=wordnet)))
    assert scorer.score(pairs) == expected
    assert len(set(expected)) > 50  # real variety, not a run of 1.0s

words = st.sampled_from(["acute", "chronic", "kidney", "failure", "renal", "disease", "of", "left", "femur"])


@settings(max_examples=60, deadline=None)
@given(st.lists(words, min_size=1, max_size=6), st.lists(words, min_size=1, max_size=6))
def test_meteor_is_a_bounded_score(meteor_plain: MeteorScorer, ref: list[str], cand: list[str]) -> None:
    [value] = meteor_plain.score([(" ".join(ref), " ".join(cand))])
    assert 0.0 <= value <= 1.0
    assert meteor_plain.score([(" ".join(ref), " ".join(ref).upper())]) == [1.0]


# ---------------------------------------------------------------------------- BERTScore arithmetic


def test_bertscore_arithmetic_from_the_slide() -> None:
    # Rows: candidate tokens diabetes, without, complications; columns: reference tokens
    # diabetes, without, complication, mellitus. Best matches 1.00, 1.00, 0.98 and mellitus 0.40.
    cosine = [
        [1.00, 0.10, 0.20, 0.40],
        [0.10, 1.00, 0.10, 0.20],
        [0.20, 0.10, 0.98, 0.30],
    ]
    p, r, f1 = greedy_match(cosine)
    assert p == pytest.approx(2.98 / 3)  # 0.99
    assert r == pytest.approx(3.38 / 4)  # 0.845
    assert round(f1, 2) == 0.91
    assert round(f1_from_precision_recall(0.99, 0.85), 2) == 0.91
    assert f1_from_precision_recall(0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="similarity matrix must be non-empty"):
        greedy_match([])


# ---------------------------------------------------------------------------- BERTScore with the model


@pytest.fixture(scope="module")
def bert() -> BertScorer:
    scorer = BertScorer(batch_size=16, precision="fp32")  # exact arithmetic: the bf16 path is tested apart
    try:
        scorer.score([("Cholera", "Typhoid fever")])
    except SimilarityUnavailable as exc:  # make installs the model: in CI it must load
        missing(f"the BERTScore model: {exc}")
    return scorer


def test_bertscore_identical_is_one(bert: BertScorer) -> None:
    variant = "  DIABETES mellitus  without complication"
    assert bert.score([(SLIDE_REF, SLIDE_REF), (SLIDE_REF, variant)]) == [1.0, 1.0]


def test_bertscore_related_beats_unrelated(bert: BertScorer) -> None:
    related, unrelated = bert.score([(SLIDE_REF, SLIDE_CAND), (SLIDE_REF, "Fracture of left femur, closed")])
    assert 0.0 < unrelated < related < 1.0
    # Stability check for the bundled MiniLM, layer 6, no baseline rescaling (measured: 0.6144).
    assert related == pytest.approx(0.6144, abs=0.01)


def test_bertscore_dedup_matches_separate_calls(bert: BertScorer) -> None:
    pairs = [
        ("Type 2 diabetes mellitus with hyperglycemia", "Type 1 diabetes mellitus with hyperglycemia"),
        ("Essential (primary) hypertension", "Hypertensive heart disease without heart failure"),
    ]
    batched = bert.score([pairs[0], pairs[1], pairs[0], pairs[1]])
    assert batched[0] == batched[2] and batched[1] == batched[3]
    # Scored alone (one bert-score call each). Upper-cased so the memo cannot answer: the model is
    # uncased, so the tokens, and the score up to float noise from batch padding, are the same.
    one_by_one = [bert.score([(ref.upper(), cand.upper())])[0] for ref, cand in pairs]
    assert batched[:2] == pytest.approx(one_by_one, abs=1e-5)
    assert bert.model_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert bert.num_layers == 6
    assert bert.label == "BERTScore F1 (sentence-transformers/all-MiniLM-L6-v2)"


def test_bertscore_unloadable_model_is_a_one_line_error(tmp_path: Path) -> None:
    scorer = BertScorer(model=str(tmp_path))  # a directory with no model in it
    with pytest.raises(SimilarityUnavailable) as info:
        scorer.score([("Cholera", "Typhoid fever")])
    assert "\n" not in str(info.value)
    assert str(tmp_path) in str(info.value)
    assert scorer.score([("Cholera", "cholera")]) == [1.0]  # identical pairs need no model


def test_bertscorer_is_lazy() -> None:
    code = (
        "import sys\n"
        "from pytest_medcode.scoring.similarity import BertScorer, MeteorScorer\n"
        "BertScorer(); MeteorScorer()\n"
        "print(sorted(m for m in ('torch', 'bert_score', 'transformers', 'nltk') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_bertscore_in_bf16_agrees_with_fp32_on_real_near_misses(bert: BertScorer) -> None:
    """The faster path (bf16 autocast, the default where the CPU computes bfloat16 natively) against fp32 on
    sibling codes' descriptions: within 0.005 each (perf/similarity_speed.py measured 0.0015 at most on
    2,000 pairs), and never the same identity, so a stored score of one is never read for the other."""
    pairs = _sibling_pairs(25)
    assert len(pairs) >= 100
    fast = BertScorer(batch_size=16, precision="bf16")
    exact, quick = bert.score(pairs), fast.score(pairs)
    assert max(abs(a - b) for a, b in zip(exact, quick, strict=True)) <= 0.005
    assert fast.identity != bert.identity and "precision=bf16" in fast.identity
    assert fast.label.endswith(", bf16)") and BertScorer().precision in ("bf16", "fp32")
    with pytest.raises(ValueError, match="precision must be one of"):
        BertScorer(precision="int8")
