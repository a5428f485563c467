"""pytest_aie._util.files: the one atomic write and the one file lock, and a plugin that imports
where ``fcntl`` does not exist (Windows)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pytest_aie._util import files


def test_plugin_imports_without_fcntl() -> None:
    """Windows has no ``fcntl``: importing the plugin (and the modules that take locks and
    write files) must not need it."""
    code = textwrap.dedent("""
        import sys
        sys.modules["fcntl"] = None  # any `import fcntl` now raises ImportError
        import pytest_aie.plugin, pytest_aie.session, pytest_aie.results.log, pytest_aie.report.html
        import pytest_aie.gates.baseline, pytest_aie.engines.embedded, pytest_aie._util.files
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_try_lock_refuses_a_second_holder_and_removes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.lock"
    first = files.try_lock(path)
    assert first is not None and path.exists()
    assert files.try_lock(path) is None  # held (a second descriptor, as another process has)
    first.release()
    assert not path.exists()
    again = files.try_lock(path)
    assert again is not None
    again.release()


def test_a_lock_file_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    code = (f"import os; from pytest_aie._util import files; files.try_lock({str(path)!r}); "
            "os._exit(0)")  # dies holding the lock, leaving its file behind
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert path.exists()
    held = files.try_lock(path)
    assert held is not None
    held.release()


def test_write_atomic_creates_the_folder_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.json"
    files.write_atomic(target, "one")
    files.write_atomic(target, iter(["t", "wo"]))
    assert target.read_text(encoding="utf-8") == "two"
    assert os.listdir(target.parent) == ["b.json"]
