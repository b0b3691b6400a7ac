"""Where ``hmer predict``'s readings go: lines on standard output, or one ``--out`` table.

Standard output gets one line per image: its compact LaTeX (``x^{2}+y``), or with ``--tokens``
its spaced tokens (``x ^ { 2 } + y``, as captions and evaluation files write them), prefixed by
``PATH<TAB>`` when there are several images; or with ``--json`` one JSON object per image
(:func:`record`).

``--out FILE`` writes every input's result to FILE instead (:class:`ResultsTable`), the format
chosen by its suffix (:data:`TABLE_FORMATS`):

- ``.tsv`` and ``.csv``: a header row, then one row per input with the columns
  :data:`COLUMNS`; ``tokens`` space-separated, ``low_score`` ``true``/``false`` (empty when
  the model has no card), ``error`` the message of an input that could not be read (its
  other cells empty). Quoting is the :mod:`csv` module's: a cell holding the delimiter, a
  quote or a line break is quoted, so any csv reader gets the cells back.
- ``.jsonl``: one JSON object per input: the record ``--json`` prints, or
  ``{"path": ..., "error": ...}`` for an input that could not be read.

The table is written as results arrive into a temp file beside FILE, which replaces FILE only
when every input has been handled (:func:`hmer.io.atomic_open`): an interrupted run leaves
FILE as it was, never a partial table. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from hmer.errors import DataError
from hmer.io import atomic_open

if TYPE_CHECKING:
    from hmer.card import LowScore
    from hmer.runtime.reading import Prediction

#: ``--out`` suffixes and the cell delimiter of each (None: JSON Lines).
TABLE_FORMATS: dict[str, str | None] = {".tsv": "\t", ".csv": ",", ".jsonl": None}
#: The header of ``.tsv`` and ``.csv`` tables.
COLUMNS = ("path", "latex", "tokens", "score", "low_score", "error")


def record(path: Path, prediction: Prediction, low: LowScore | None) -> dict[str, Any]:
    """The JSON record of one reading: path, latex, tokens, score (rounded to 6 decimals) and,
    when the model has a card (``low``), low_score."""
    found: dict[str, Any] = {
        "path": str(path),
        "latex": prediction.latex,
        "tokens": prediction.tokens,
        "score": round(prediction.score, 6),
    }
    if low is not None:
        found["low_score"] = low.is_low(prediction.score)
    return found


class Results:
    """Where the readings of one ``hmer predict`` go (see the module docstring); a context
    manager, which puts an ``--out`` table in place when its ``with`` ends without an error.

    Args:
        out: the ``--out`` table, or None for standard output.
        inputs: the paths to be read, in argument order: the order of the table's rows, whatever
            the order their results arrive in (a chunk's failures come before its readings);
            plain lines start with ``PATH<TAB>`` when there are several.
        json_lines: JSON Lines on standard output (``--json``).
        tokens: the spaced tokens instead of the LaTeX on standard output (``--tokens``).
        low: what a low score means for the model (its card), or None; a low reading is said
            on stderr, or in the ``--out`` table's ``low_score`` column (a note per reading
            would scroll a long run's progress bar away).
    """

    def __init__(
        self,
        out: Path | None,
        inputs: Sequence[Path],
        *,
        json_lines: bool,
        tokens: bool,
        low: LowScore | None,
    ) -> None:
        self.table = ResultsTable(out) if out is not None else None
        self.inputs = list(inputs)
        self.json_lines, self.tokens, self.low = json_lines, tokens, low
        #: The rows of inputs done before an earlier one, by position in ``inputs``.
        self._early: dict[int, dict[str, Any]] = {}
        #: The position of the first input whose row is not written yet.
        self._next = 0

    def __enter__(self) -> Results:
        if self.table is not None:
            self.table.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.table is None:
            return
        if kind is None:  # an input never reported would hold back the rows after it
            for position in sorted(self._early):
                self.table.add(self._early.pop(position))
        self.table.__exit__(kind, error, traceback)

    def reading(self, path: Path, prediction: Prediction) -> None:
        """Output one image's reading."""
        if self.table is not None:  # its low_score column replaces the note on stderr
            self._row(path, record(path, prediction, self.low))
            return
        if self.json_lines:
            print(json.dumps(record(path, prediction, self.low), ensure_ascii=False), flush=True)
        else:
            text = " ".join(prediction.tokens) if self.tokens else prediction.latex
            print(f"{path}\t{text}" if len(self.inputs) > 1 else text, flush=True)
        if self.low is not None and self.low.is_low(prediction.score):
            print(f"hmer: note: {path}: {self.low.note(prediction.score)}", file=sys.stderr)

    def failure(self, path: Path, error: Exception) -> None:
        """Record an input that could not be read (its message goes to stderr apart from this):
        a row of the ``--out`` table; nothing on standard output."""
        if self.table is not None:
            self._row(path, {"path": str(path), "error": str(error)})

    def _row(self, path: Path, row: dict[str, Any]) -> None:
        """Write ``path``'s row once the rows of every input before it are written."""
        assert self.table is not None
        position = next(
            i
            for i in range(self._next, len(self.inputs))
            if self.inputs[i] == path and i not in self._early
        )
        self._early[position] = row
        while self._next in self._early:
            self.table.add(self._early.pop(self._next))
            self._next += 1


class ResultsTable:
    """An ``--out`` table being written (see the module docstring); a context manager.

    Entering creates the temp file, so an unwritable destination is reported before any image
    is read; leaving without an exception puts the table in place.

    Raises:
        DataError: the table cannot be written (naming it and the OS reason).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._delimiter = TABLE_FORMATS[path.suffix.lower()]
        self._stack = contextlib.ExitStack()
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> ResultsTable:
        try:
            self._handle = self._stack.enter_context(atomic_open(self.path, "wb"))
        except OSError as error:
            raise self._cannot_write(error) from error
        if self._delimiter is not None:
            self._write_cells(COLUMNS)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None:  # the caller's error: the temp file goes, the error propagates
            self._stack.__exit__(kind, error, traceback)
            return
        try:
            self._stack.close()
        except OSError as failure:
            raise self._cannot_write(failure) from failure

    def add(self, record: dict[str, Any]) -> None:
        """One input's row: a :func:`record`, or ``{"path": ..., "error": ...}``."""
        if self._delimiter is None:
            self._write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        low = record.get("low_score")
        cells = {
            **record,
            "tokens": " ".join(record.get("tokens", ())),
            "low_score": "" if low is None else str(low).lower(),
        }
        self._write_cells(str(cells.get(column, "")) for column in COLUMNS)

    def _write_cells(self, cells: Iterable[str]) -> None:
        line = io.StringIO()
        csv.writer(line, delimiter=self._delimiter, lineterminator="\n").writerow(cells)
        self._write(line.getvalue())

    def _write(self, text: str) -> None:
        if self._handle is None:
            raise RuntimeError("ResultsTable written outside its with block")
        try:  # a file name that is not UTF-8 (lone surrogates) is written \udcXX, as stdout does
            self._handle.write(text.encode("utf-8", "backslashreplace"))
        except OSError as error:
            raise self._cannot_write(error) from error

    def _cannot_write(self, error: OSError) -> DataError:
        return DataError(f"cannot write ({error.strerror or error})", self.path)


@contextlib.contextmanager
def progress(total: int, shown: bool) -> Iterator[Callable[[int], object]]:
    """A progress bar over ``total`` inputs on stderr, when ``shown`` (:func:`progress_shown`);
    yields the function that advances it by a number of inputs. While the bar is up, what is
    printed to ``sys.stderr`` goes above it (``tqdm.write``) instead of through it."""
    if not shown:
        yield lambda count: None
        return
    from tqdm import tqdm
    from tqdm.contrib import DummyTqdmFile

    stderr = sys.stderr
    with (
        tqdm(total=total, unit="image", file=stderr, dynamic_ncols=True) as bar,
        contextlib.redirect_stderr(DummyTqdmFile(stderr)),
    ):
        yield bar.update


def progress_shown(count: int, at_least: int, table: bool) -> bool:
    """Whether a progress bar goes to stderr: for ``at_least`` inputs or more, when stderr is a
    terminal and the results do not go to that terminal too (they do unless there is an
    ``--out`` ``table`` or stdout is redirected), where the bar would tangle with them."""
    return count >= at_least and sys.stderr.isatty() and (table or not sys.stdout.isatty())
