"""Atomic writes: a failed write leaves the old file or folder whole, and a folder swap killed half-way is
put back by the next write."""
import pytest

from circuitclust.atomic import atomic_folder, remove_stale_partials, write_text

DEAD_PID = 2**22 + 12345  # above Linux's default pid_max, so no process has it


def test_a_failed_file_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.json"
    write_text(path, "old")
    with pytest.raises(RuntimeError):
        from circuitclust.atomic import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_folder_write_keeps_the_old_folder(tmp_path):
    out = tmp_path / "run"
    with atomic_folder(out) as staging:
        (staging / "f.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_folder(out) as staging:
            (staging / "f.txt").write_text("second")
            raise RuntimeError("killed")
    assert (out / "f.txt").read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_swap_killed_between_its_renames_is_undone(tmp_path):
    # the state a kill leaves between "move the old folder aside" and "move the new one in"
    old = tmp_path / f".run.old.partial-{DEAD_PID}"
    new = tmp_path / f".run.partial-{DEAD_PID}"
    old.mkdir()
    (old / "f.txt").write_text("old")
    new.mkdir()
    (new / "f.txt").write_text("new")
    remove_stale_partials(tmp_path / "run")
    assert (tmp_path / "run" / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
