"""Label files, read row by row: BTTR ``caption.txt`` and ``.tsv`` / ``.csv`` tables.

Both yield one :class:`LabelRow` per row, with the 1-based line it starts on. A row that cannot
be read exactly comes back with a ``problem`` (the caller skips and reports it, or raises in
strict mode) and never swallows the rows after it:

- ``caption.txt``: one row per line, ``name<TAB>tokens`` (or the first space); no quoting.
- tables: CSV rules (``"`` quotes a field, ``""`` is a quote inside it). A quoted field may go on
  over the following lines (CROHME's ``groundtruth_train.tsv`` ends some labels with a quoted
  newline), but never onto a line holding the delimiter: that line begins the next row, so a
  quote still open there is an unterminated quote (a problem of the row it opened in), not a
  label that eats the rows below it. Text after a closing quote is a problem too.

Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (the line endings of the csv module and of editors).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

from hmer.errors import DataError

__all__ = ["LabelRow", "caption_rows", "read_text", "table_rows"]

_NAME_HEADERS = {"name", "file", "filename", "image", "id"}
_LABEL_HEADERS = {"latex", "label", "formula", "tokens", "truth", "text"}


@dataclass(frozen=True)
class LabelRow:
    """One row of a label file: ``name`` and ``label`` stripped; ``label`` None when the row has
    no label field; ``problem`` says why the row cannot be used as read (None: it can)."""

    line: int
    name: str
    label: str | None
    problem: str | None = None


def read_text(data: bytes, source: str) -> str:
    """``data`` as UTF-8 text (a byte-order mark dropped); DataError naming ``source`` if not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text ({error.reason} at byte {error.start})", source) from None


def _lines(text: str) -> list[str]:
    """Physical lines, endings kept (``str.splitlines`` would also split at form feeds etc.)."""
    return io.StringIO(text, newline="").readlines()


def caption_rows(text: str) -> Iterator[LabelRow]:
    """The rows of a ``caption.txt``: ``name<TAB>tokens`` (or the first space); blank lines
    skipped."""
    for number, raw in enumerate(_lines(text), 1):
        line = raw.strip()
        if not line:
            continue
        name, _, tokens = line.partition("\t") if "\t" in line else line.partition(" ")
        yield LabelRow(number, name.strip(), tokens.strip())


def table_rows(text: str, delimiter: str) -> Iterator[LabelRow]:
    """The rows of a table: ``name<delimiter>label`` (further fields join the label); blank rows
    and a header row (e.g. ``name,latex``) skipped. Quoting: see the module docstring."""
    lines = _lines(text)
    start = 0
    while start < len(lines):
        record = _Record(lines, start, delimiter)
        reader = csv.reader(record, delimiter=delimiter, strict=True)
        problem = None
        try:
            fields = next(reader, [])
        except csv.Error as error:
            fields = []
            problem = (
                "unterminated quote: the quoted field opened on this line is still open where "
                "the next row begins"
                if record.exhausted
                else f"malformed row ({error})"
            )
        line, start = start + 1, start + max(1, reader.line_num)
        if problem is not None:
            yield LabelRow(line, "", None, problem)
        elif any(f.strip() for f in fields) and not (line == 1 and _is_header(fields)):
            label = delimiter.join(fields[1:]).strip() if len(fields) > 1 else None
            yield LabelRow(line, fields[0].strip(), label)


class _Record:
    """The lines the csv reader may take for the row beginning at ``lines[start]``: that line,
    then following lines while they hold no ``delimiter`` (a quoted field going on); a line
    with one begins the next row. ``exhausted``: the reader asked for more than that."""

    def __init__(self, lines: list[str], start: int, delimiter: str):
        self._lines, self._next, self._delimiter = lines, start, delimiter
        self._first = start
        self.exhausted = False

    def __iter__(self) -> _Record:
        return self

    def __next__(self) -> str:
        index = self._next
        if index >= len(self._lines) or (
            index > self._first and self._delimiter in self._lines[index]
        ):
            self.exhausted = True
            raise StopIteration
        self._next += 1
        return self._lines[index]


def _is_header(fields: list[str]) -> bool:
    return (
        len(fields) >= 2
        and fields[0].strip().lower() in _NAME_HEADERS
        and fields[1].strip().lower() in _LABEL_HEADERS
    )
