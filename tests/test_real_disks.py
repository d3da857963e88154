"""Read-only and full disks for real: small tmpfs mounts (where this machine lets a test
mount one; root in a container usually may). Each case is one line, exit 2, nothing
half-written -- the errno a user's machine gives, not a simulated one."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import TOY
from tests.fakeruns import make_run
from tests.test_e2e import evalkit_cli, evalkit_run

pytestmark = pytest.mark.slow  # mounts, and the CLI in subprocesses


@pytest.fixture
def mount(tmp_path):
    """``mount(options) -> folder``: a 64 KiB tmpfs, unmounted after the test."""
    made = []

    def make(options: str = ""):
        folder = tmp_path / f"disk{len(made)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size=64k{options}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        made.append(folder)
        return folder

    yield make
    for folder in made:
        subprocess.run(["umount", str(folder)], check=False)


def read_only(mount):
    folder = mount()
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    return folder


def one_line_user_error(done, words: str) -> None:
    assert done.returncode == 2, done.stderr[-2000:]
    assert words in done.stderr, done.stderr[-2000:]
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def files_in(folder):
    return [p for p in folder.rglob("*") if not p.is_dir()]


def test_a_full_disk_under_the_report_is_one_line_and_leaves_no_file(tmp_path, mount):
    disk = mount()
    make_run(tmp_path / "results", "a", [0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    make_run(tmp_path / "results", "b", [0.3, 0.2, 0.5], [0.2, 0.1, 0.4])
    done = evalkit_cli("report", str(tmp_path / "results"), "--out", str(disk / "report"))
    one_line_user_error(done, "No space left")
    assert files_in(disk) == []  # the scratch folder went, nothing half-written moved in


def test_a_read_only_report_or_decision_folder_is_one_line(tmp_path, mount):
    disk = read_only(mount)
    make_run(tmp_path / "results", "a", [0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    done = evalkit_cli("report", str(tmp_path / "results"), "--out", str(disk / "report"))
    one_line_user_error(done, "Read-only file system")
    done = evalkit_cli(
        "decide", str(tmp_path / "results"), "--p95-ms", "100", "--out", str(disk / "d.json")
    )
    one_line_user_error(done, "Read-only file system")


def test_a_read_only_cache_or_run_folder_is_one_line(tmp_path, mount):
    disk = read_only(mount)
    common = ["dataset=local", f"dataset.path={TOY}", "reranker=none", "show_progress=false"]
    done = evalkit_run(
        *common, f"cache.dir={disk}/cache", f"hydra.run.dir={tmp_path}/r", check=False
    )
    one_line_user_error(done, "Read-only file system")
    done = evalkit_run(
        *common, f"cache.dir={tmp_path}/cache", f"hydra.run.dir={disk}/r", check=False
    )
    one_line_user_error(done, "it is on a read-only file system")  # before Hydra starts


def test_a_run_that_fills_its_disk_is_one_line_and_never_looks_finished(tmp_path, mount):
    disk = mount()
    (disk / "filler").write_bytes(b"x" * (60 * 1024))  # 4 KiB left: the run's files overflow
    done = evalkit_run(
        "dataset=local",
        f"dataset.path={TOY}",
        "reranker=none",
        "show_progress=false",
        f"cache.dir={tmp_path}/cache",
        f"hydra.run.dir={disk}/run",
        check=False,
    )
    one_line_user_error(done, "No space left")
    assert not (disk / "run" / "complete.json").exists()
