"""CPT from the user's own licensed file.

CPT descriptors are AMA copyright and may not be redistributed, so nothing ships with the plugin:
the user points ``--medcode-codeset cpt=PATH`` at a CSV, TSV or Parquet file with ``code`` and
``description`` columns (their AMA data file or a UMLS extract).
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

CPT_FORMAT = re.compile(r"^\d{4}[0-9FT]$")
_MAX_LISTED = 5


class CodeFileError(ValueError):
    """A user-supplied code file cannot be used; the message is one line for the user."""


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise CodeFileError(f"{path}: not a readable Parquet file ({exc.__class__.__name__})") from None
        header = [str(n) for n in table.column_names]
        cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
        return header, [["" if v is None else str(v) for v in row] for row in zip(*cols)]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CodeFileError(f"{path}: cannot read ({exc.strerror})") from None
    try:  # UTF-16 with its BOM is what spreadsheets save as "Unicode text"; else UTF-8, else Latin-1
        text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if not text.strip():
        raise CodeFileError(f"{path}: the file is empty")
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab", ".txt") or "\t" in text.splitlines()[0] else ","
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    return [h.strip() for h in rows[0]], rows[1:]


def read_table_file(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[dict[str, str]]]:
    """Rows of a CSV/TSV/Parquet file as dicts keyed by lower-case header; checks required columns."""
    if not path.is_file():
        raise CodeFileError(f"{path}: no such file")
    header, rows = _read_rows(path)
    names = [h.lower() for h in header]
    missing = [c for c in required if c not in names]
    if missing:
        raise CodeFileError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'none'})")
    out = [{n: (row[i].strip() if i < len(row) else "") for i, n in enumerate(names)} for row in rows]
    return names, [r for r in out if any(r.values())]


def rows(path: Path) -> Iterator[tuple]:
    """Validated CPT rows; every malformed row is named (first few) in one error."""
    _, records = read_table_file(path, ("code", "description"))
    bad: list[str] = []
    seen: set[str] = set()
    good = []
    for line, rec in enumerate(records, start=2):
        code = rec["code"].upper()
        if not CPT_FORMAT.match(code):
            bad.append(f"row {line} {rec['code']!r}")
        elif not rec["description"]:
            bad.append(f"row {line} {code}: empty description")
        elif code in seen:
            bad.append(f"row {line} {code}: duplicate")
        else:
            seen.add(code)
            good.append((code, rec["description"], True, None, "code", None))
    if bad:
        more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        raise CodeFileError(
            f"{path}: {len(bad)} bad CPT row(s) (a CPT code is 4 digits then a digit, F or T): "
            f"{'; '.join(bad[:_MAX_LISTED])}{more}"
        )
    if not good:
        raise CodeFileError(f"{path}: no codes")
    return iter(good)


def version(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"user file {path.name} (sha256 {digest})"
