"""WordNet for nltk, offline: a private copy of Debian's ``wordnet-base`` files that nltk can load.

No PyPI package ships WordNet and runs have no network, so METEOR's synonym matching (scoring/similarity.py)
and the ``synonym`` description variant (dataset/variants.py) both get WordNet here. Standard library only at
import time: nltk is imported when a copy is checked or put on its path, so the dataset layer can use this
without the scoring layer's dependencies.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

from pytest_medcode.paths import cache_root

__all__ = ["DEBIAN_WORDNET", "prepare_wordnet", "wordnet_available"]

DEBIAN_WORDNET = Path("/usr/share/wordnet")
# nltk's WordNet reader opens these at load time; the Debian wordnet-base package ships them all.
_CORE_FILES = tuple(
    f"{kind}.{pos}" for kind in ("data", "index") for pos in ("adj", "adv", "noun", "verb")
) + tuple(f"{pos}.exc" for pos in ("adj", "adv", "noun", "verb"))
# Read lazily by nltk (lemma counts, sense keys), not by METEOR; copied when present
# (index.sense comes from wordnet-sense-index).
_OPTIONAL_FILES = ("cntlist.rev", "index.sense")
# lexnames(5WN): nltk needs this file, Debian does not ship it. (name, syntactic category) by file number.
_LEXNAMES = (
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1),
    ("noun.animal", 1), ("noun.artifact", 1), ("noun.attribute", 1), ("noun.body", 1),
    ("noun.cognition", 1), ("noun.communication", 1), ("noun.event", 1), ("noun.feeling", 1),
    ("noun.food", 1), ("noun.group", 1), ("noun.location", 1), ("noun.motive", 1), ("noun.object", 1),
    ("noun.person", 1), ("noun.phenomenon", 1), ("noun.plant", 1), ("noun.possession", 1),
    ("noun.process", 1), ("noun.quantity", 1), ("noun.relation", 1), ("noun.shape", 1),
    ("noun.state", 1), ("noun.substance", 1), ("noun.time", 1), ("verb.body", 2), ("verb.change", 2),
    ("verb.cognition", 2), ("verb.communication", 2), ("verb.competition", 2), ("verb.consumption", 2),
    ("verb.contact", 2), ("verb.creation", 2), ("verb.emotion", 2), ("verb.motion", 2),
    ("verb.perception", 2), ("verb.possession", 2), ("verb.social", 2), ("verb.stative", 2),
    ("verb.weather", 2), ("adj.ppl", 3),
)


def wordnet_available() -> bool:
    """True when nltk can load WordNet from its current data path."""
    try:
        from nltk.corpus import wordnet

        return bool(wordnet.synsets("complication"))
    except Exception:  # LookupError if absent; OSError, ValueError or AssertionError if damaged
        return False


def _complete(corpus_dir: Path) -> bool:
    return all((corpus_dir / name).is_file() for name in (*_CORE_FILES, "lexnames"))


def _add_to_nltk_path(root: Path) -> None:
    import nltk

    if str(root) not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(str(root))


def _build_copy(source: Path, corpora: Path) -> Path:
    """Copy WordNet from ``source`` into a fresh private directory beside its final place."""
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=corpora))
    try:
        for name in (*_CORE_FILES, *_OPTIONAL_FILES):
            src = source / name
            if src.is_file():
                # A copy, not a symlink: nltk 3.10 refuses files that resolve outside its data roots, and
                # refuses group/world-writable files, hence the explicit mode.
                shutil.copyfile(src, tmp / name)
                os.chmod(tmp / name, 0o644)
        lexnames = "".join(f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(_LEXNAMES))
        (tmp / "lexnames").write_text(lexnames, encoding="ascii")
        os.chmod(tmp / "lexnames", 0o644)
        os.chmod(tmp, 0o755)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _install(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` atomically; if another process got there first, keep theirs."""
    if final.exists() and not _complete(final):
        # A damaged copy (interrupted by hand, files deleted): move it aside so the rename can land.
        stale = final.with_name(f".wordnet-stale-{os.getpid()}-{tmp.name}")
        try:
            final.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass  # someone else moved or replaced it; judged below
    try:
        tmp.rename(final)
    except OSError:
        # Target exists and is non-empty: a concurrent prepare_wordnet won the race.
        shutil.rmtree(tmp, ignore_errors=True)
        if not _complete(final):
            raise


def prepare_wordnet(target: Path | None = None, *, source: Path | None = None) -> Path | None:
    """Make WordNet loadable by nltk without a network; return the data root added to nltk's path.

    Returns None both when nltk already had WordNet (nothing to do) and when no source exists;
    ``wordnet_available()`` tells the two apart. No PyPI package ships WordNet, so the source is the
    Debian ``wordnet-base`` (+ ``wordnet-sense-index``) files under /usr/share/wordnet, copied into
    ``<target>/corpora/wordnet`` (default target: ``cache_root() / "nltk_data"``). The copy is built in
    a temporary directory and renamed into place, so concurrent callers (xdist workers) never see a
    half-written corpus and the second one simply reuses the first one's copy. I/O trouble is a
    warning and a None, never a crash: METEOR still runs without synonyms.
    """
    if wordnet_available():
        return None
    target = Path(target) if target is not None else cache_root() / "nltk_data"
    source = Path(source) if source is not None else DEBIAN_WORDNET
    final = target / "corpora" / "wordnet"
    if not _complete(final):
        if not all((source / name).is_file() for name in _CORE_FILES):
            return None
        try:
            corpora = final.parent
            corpora.mkdir(parents=True, exist_ok=True)
            _install(_build_copy(source, corpora), final)
        except OSError as exc:
            warnings.warn(f"could not copy WordNet into {final}: {exc}", stacklevel=2)
            return None
    _add_to_nltk_path(target)
    if not wordnet_available():
        warnings.warn(
            f"WordNet copy at {final} does not load (delete it to rebuild); METEOR runs without synonyms",
            stacklevel=2,
        )
        return None
    return target

