"""Atomic writes: the target is replaced whole, and a failed write leaves the old file and no temp file."""

import json
import os
import stat

import pytest

from difflab.utils.files import atomic_write, atomic_write_json, atomic_write_text


def test_replaces_whole_and_creates_folders(tmp_path):
    path = tmp_path / "a" / "b" / "note.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    atomic_write_json(tmp_path / "x.json", {"k": [1, 2]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"k": [1, 2]}
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["note.txt", "x.json"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")

    def half_then_crash(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_crash)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_temp_file_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    seen = []
    atomic_write(tmp_path / "fig.png", lambda tmp: (seen.append(tmp), open(tmp, "wb").close()))
    assert seen[0].endswith(".png") and (tmp_path / "fig.png").is_file()



@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "run.json", "{}")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives: the reference the atomic writer must match
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run.json").stat().st_mode) == mode == stat.S_IMODE(plain.stat().st_mode)
