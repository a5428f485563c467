"""The disk cache of retrieval indexes.

An index is stored under a key made of everything it depends on: the corpus's content digest
(ids and texts, in order), the retriever's build settings and the versions of the libraries
that built it (and, for embeddings, a digest of the model's files). The cache folder is
``<harness cache dir>/retrieval`` (``$PYTEST_AIE_CACHE_DIR``, else ``~/.cache/pytest-aie``);
a retriever's ``cache_dir=`` names another, ``cache_dir=False`` turns the cache off.

Each entry is a folder ``<kind>-<key digest>`` holding the index's files and a
``manifest.json`` with the key and each file's sha256. An entry is written into a temporary
folder and renamed into place when complete, so a reader never sees half of one; building
holds a lock per entry, so a second process that needs the same index waits and then loads
it instead of building it again. An entry that fails its checksums or cannot be loaded is
rebuilt, with a :class:`CacheWarning`, never a crash; a cache folder that cannot be written
only costs the saving (also a warning).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

from pytest_aie._util.files import file_lock, write_atomic
from pytest_aie.retrieval.documents import digest

__all__ = ["CacheWarning", "IndexStore", "library_version"]

T = TypeVar("T")
#: the layout of an entry; a change makes every older entry a miss
FORMAT = 1
_MANIFEST = "manifest.json"


class CacheWarning(UserWarning):
    """A retrieval cache entry was unreadable (rebuilt) or could not be written."""


def library_version(name: str) -> str:
    """The installed version of distribution ``name`` (``"-"`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class IndexStore:
    """Index entries on disk; see the module docstring."""

    def __init__(self, cache_dir: str | os.PathLike[str] | bool | None = None) -> None:
        if cache_dir is False:
            self.root: Path | None = None
        elif cache_dir is None or cache_dir is True:
            from pytest_aie._util.files import default_cache_dir

            self.root = default_cache_dir() / "retrieval"
        else:
            self.root = Path(cache_dir).expanduser()
        self.loaded = 0  # entries loaded from disk (tests, progress)
        self.built = 0  # entries built

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def entry(self, kind: str, key: dict[str, Any]) -> Path | None:
        """The folder of the entry for ``key`` (None when the cache is off)."""
        if self.root is None:
            return None
        return self.root / f"{kind}-{digest({'format': FORMAT, 'kind': kind, 'key': key})[:32]}"

    def fetch(self, kind: str, key: dict[str, Any] | None, build: Callable[[], T],
              save: Callable[[T, Path], None], load: Callable[[Path], T]) -> T:
        """The index for ``key``: loaded from its entry, or built (and saved) when there is
        none or it is unreadable. ``key=None`` (nothing identifies the index) always builds."""
        folder = self.entry(kind, key) if key is not None else None
        if folder is None or key is None:
            self.built += 1
            return build()
        held = contextlib.ExitStack()
        try:
            held.enter_context(file_lock(folder.with_name(folder.name + ".lock")))
        except OSError as exc:
            warnings.warn(f"pytest-aie: the retrieval cache folder {folder.parent} is not "
                          f"usable ({type(exc).__name__}: {exc}); building the index without "
                          "it", CacheWarning, stacklevel=3)
            self.built += 1
            return build()
        with held:
            if folder.exists():
                found = self._load(folder, kind, key, load)
                if found is not None:
                    self.loaded += 1
                    return found[0]
            value = build()
            self.built += 1
            self._save(folder, kind, key, value, save)
            return value

    def _load(self, folder: Path, kind: str, key: dict[str, Any],
              load: Callable[[Path], T]) -> tuple[T] | None:
        try:
            manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
            if manifest.get("format") != FORMAT or manifest.get("kind") != kind or \
                    digest(manifest.get("key")) != digest(key):
                raise ValueError("its manifest is for another index")
            for name, expected in manifest["files"].items():
                if _sha256(folder / name) != expected:
                    raise ValueError(f"{name} fails its checksum")
            return (load(folder),)
        except Exception as exc:  # noqa: BLE001 - any damage means: build it again
            warnings.warn(f"pytest-aie: the retrieval cache entry {folder} is unreadable "
                          f"({type(exc).__name__}: {exc}); rebuilding it", CacheWarning,
                          stacklevel=4)
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def _save(self, folder: Path, kind: str, key: dict[str, Any], value: T,
              save: Callable[[T, Path], None]) -> None:
        tmp: Path | None = None
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
            save(value, tmp)
            files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            write_atomic(tmp / _MANIFEST, json.dumps(
                {"format": FORMAT, "kind": kind, "key": key, "files": files},
                sort_keys=True, indent=1, default=str))
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
            tmp = None
        except Exception as exc:  # noqa: BLE001 - the cache is an optimisation
            warnings.warn(f"pytest-aie: could not save the retrieval index to {folder} "
                          f"({type(exc).__name__}: {exc}); it will be built again next time",
                          CacheWarning, stacklevel=4)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
