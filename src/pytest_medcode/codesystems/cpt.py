"""CPT from the user's own licensed file.

CPT descriptors are AMA copyright and may not be redistributed, so nothing ships with the plugin:
the user points ``--medcode-codeset cpt=PATH`` at a CSV, TSV or Parquet file with ``code`` and
``description`` columns (their AMA data file or a UMLS extract).

:func:`read_table_file` is the one reader of every user code file (CPT, a user's own system, a code
list): cells come out exactly as written or the file is refused with one line naming the file and row.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_medcode.safetext import visible

if TYPE_CHECKING:
    from pytest_medcode.codesystems.table import TableRow

CPT_FORMAT = re.compile(r"^\d{4}[0-9FT]$")
_MAX_LISTED = 5
#: The longest cell a code file may hold: csv's own default, far above any description a code table has
#: (CPT's longest are a few hundred characters); past it is a quote left open or another kind of file.
MAX_CELL = 131_072


class CodeFileError(ValueError):
    """A user-supplied code file cannot be used; the message is one line for the user."""


#: The columns any reader of a code file uses; a Parquet file's other columns are not read at all.
READ_COLUMNS = ("code", "description", "parent", "billable", "system", "count")
#: Parquet types a column may have beyond text and integers (converted explicitly; integers by ``str``).
_ALSO = {"billable": "bool", "count": "float"}
_UNSEEN = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class Row(dict[str, str]):
    """One row of a code file, keyed by lower-case column name; ``line`` is where it starts in the file
    (the header is line 1), which is what every message about it names."""

    line: int


def shown(value: object) -> str:
    """Text from the user's file as a message shows it: every control character and line break escaped, so
    a header or a code cannot clear the terminal, set its title or break the one line."""
    return visible(value).translate(_UNSEEN)


def _encodings(path: Path) -> tuple[str, ...]:
    """UTF-16 with its BOM is what spreadsheets save as "Unicode text"; else UTF-8 (a BOM or not), else
    Windows-1252 (a Windows "CSV"), else Latin-1, which reads any byte."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    return ("utf-16",) if head in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig", "cp1252", "latin-1")


@contextmanager
def csv_cell_limit(limit: int) -> Iterator[None]:
    """``csv.field_size_limit`` is one setting for the whole process (a reader elsewhere, or a library,
    may have changed it): set it for one read and put the old value back, so no reader depends on another."""
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _read_csv(path: Path, encoding: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (line, cells) of every other non-blank row, read by csv from the file itself: a
    quoted cell keeps its line breaks, and only ``\\r``/``\\n`` end a row (not U+2028 or a form feed)."""
    with open(path, newline="", encoding=encoding) as fh, csv_cell_limit(MAX_CELL):
        first = fh.readline()
        fh.seek(0)
        tab = path.suffix.lower() in (".tsv", ".tab", ".txt") or "\t" in first
        reader = csv.reader(fh, delimiter="\t" if tab else ",", strict=True)
        header: list[str] | None = None
        rows: list[tuple[int, list[str]]] = []
        line = 1
        while True:
            try:
                cells = next(reader, None)
            except csv.Error as exc:
                if "field larger than field limit" in str(exc):
                    problem = f"a cell longer than {MAX_CELL:,} characters (a quote left open?)"
                elif "unexpected end of data" in str(exc):
                    problem = "a quote opened in this row is never closed"
                else:
                    problem = f"not readable as CSV ({exc})"
                raise CodeFileError(f"{path}: row {line}: {problem}") from None
            if cells is None:
                break
            if any(c.strip() for c in cells):
                if header is None:
                    header = [c.strip() for c in cells]
                else:
                    rows.append((line, cells))
            line = reader.line_num + 1
    if header is None:
        raise CodeFileError(f"{path}: the file is empty")
    return header, rows


def _read_parquet(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and rows of the columns a code file is read for; each must hold text or integer codes."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import pyarrow.types as pt

    try:
        schema = pq.read_schema(path)
        wanted = [n for n in schema.names if n.strip().lower() in READ_COLUMNS]
        table = pq.read_table(path, columns=wanted)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise CodeFileError(f"{path}: not a readable Parquet file ({exc.__class__.__name__})") from None
    cols: list[list[str]] = []
    for name in table.column_names:
        column = table.column(name)
        kind = column.type
        if pt.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        also = _ALSO.get(name.strip().lower())
        if pt.is_string(kind) or pt.is_large_string(kind) or pt.is_null(kind):
            values = column.to_pylist()
        elif pt.is_integer(kind) or (also == "bool" and pt.is_boolean(kind)) or \
                (also == "float" and pt.is_floating(kind)):
            values = pc.cast(column, "string").to_pylist()  # 12 → "12", True → "true", 2.5 → "2.5"
        else:
            raise CodeFileError(f"{path}: column '{shown(name)}' holds {shown(kind)} values; a code file's "
                                "columns must hold text (or integer codes)")
        cols.append(["" if v is None else v for v in values])
    if not cols:
        cols.append([""] * table.num_rows)
    header = [str(n) for n in table.column_names]
    header += [str(n) for n in schema.names if n not in wanted]  # named in messages, never read
    return header, [(i + 2, list(cells)) for i, cells in enumerate(zip(*cols))]


def read_table_file(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[Row]]:
    """Rows of a CSV/TSV/Parquet file keyed by lower-case header, cells stripped, blank rows left out.

    Every cell is read as written. A row with more non-empty cells than the header is an error naming the
    row (an unquoted comma inside a description); a row with fewer has its last columns empty."""
    if not path.is_file():
        raise CodeFileError(f"{path}: no such file")
    header, rows = _read_parquet(path) if path.suffix.lower() == ".parquet" else _read_text(path)
    names = _column_names(path, header, required)
    return names, _keyed_rows(path, names, rows)


def _read_text(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and rows of a CSV/TSV file, in the first of its likely encodings that decodes it whole;
    an unreadable file is one line, not an OSError."""
    try:
        encodings = _encodings(path)
    except OSError as exc:
        raise CodeFileError(f"{path}: cannot read ({exc.strerror})") from None
    for encoding in encodings:
        try:
            return _read_csv(path, encoding)
        except UnicodeError:
            if encoding == encodings[-1]:
                raise CodeFileError(f"{path}: not readable as {encoding} text") from None
        except OSError as exc:
            raise CodeFileError(f"{path}: cannot read ({exc.strerror})") from None
    raise AssertionError("unreachable: the last encoding is read or refused")


def _column_names(path: Path, header: list[str], required: tuple[str, ...]) -> list[str]:
    """The lower-case column names, refused when one repeats (a row could not say which it means) or a
    ``required`` one is absent (named, with the columns the file does have)."""
    names = [h.lower() for h in header]
    for i, name in enumerate(names):
        if name and name in names[:i]:
            raise CodeFileError(f"{path}: column '{shown(header[i])}' appears twice in the header")
    missing = [c for c in required if c not in names]
    if missing:
        found = ", ".join(shown(h) for h in header) or "none"
        raise CodeFileError(f"{path}: missing column(s) {', '.join(missing)} (found: {found})")
    return names


def _keyed_rows(path: Path, names: list[str], rows: list[tuple[int, list[str]]]) -> list[Row]:
    """Each row keyed by column name with its cells stripped; a row with more non-empty cells than the
    header is refused, since a cell would be silently lost (usually an unquoted comma)."""
    out: list[Row] = []
    for line, cells in rows:
        if len(cells) > len(names) and any(c.strip() for c in cells[len(names):]):
            raise CodeFileError(f"{path}: row {line}: {len(cells)} cells but the header has {len(names)} "
                                "(a description that holds a comma or tab must be quoted)")
        row = Row((n, cells[i].strip() if i < len(cells) else "") for i, n in enumerate(names))
        row.line = line
        out.append(row)
    return out


def rows(path: Path) -> Iterator[TableRow]:
    """Validated CPT rows; every malformed row is named (first few) in one error."""
    _, records = read_table_file(path, ("code", "description"))
    bad: list[str] = []
    seen: set[str] = set()
    good = []
    for rec in records:
        line, code = rec.line, rec["code"].upper()
        if not CPT_FORMAT.match(code):
            bad.append(f"row {line} '{shown(rec['code'])}'")
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
