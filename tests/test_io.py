"""The one atomic writer: all or nothing, no temp files left, the usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

from hmer.errors import DataError
from hmer.io import atomic_open, atomic_write_bytes, atomic_write_text


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b"partial")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_writes_replace_the_file_and_create_missing_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    assert atomic_write_text(target, "première\n") == target
    assert target.read_text(encoding="utf-8") == "première\n"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_new_files_get_the_permissions_open_would_give(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "x.txt", "x")
        with open(tmp_path / "y.txt", "w") as handle:  # the reference: a plain open
            handle.write("y")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "x.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "y.txt").stat().st_mode) == 0o666 & ~umask


def test_an_unwritable_target_is_a_data_error_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write") as caught:
        atomic_write_bytes(blocker / "out.png", b"png")
    assert caught.value.source == str(blocker / "out.png")
