"""Where a trace store lives: a local directory (atomic rename commits) or an fsspec URL (marker commits).

Both backends expose the same small set of operations on paths relative to the store root; `TraceStore`
holds the format logic. Only this module touches the filesystem.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import shutil
import socket
import time
import uuid

import fsspec
import zarr
from fsspec.implementations.local import LocalFileSystem

from memlens.store.format import (
    COMMIT_MARKER,
    EMPTY_GROUP_JSON,
    EPISODES_DIR,
    MANIFEST_NAME,
    PACK_INDEX,
    PACKS_DIR,
    STAGING_DIR,
    STALE_STAGING_SECONDS,
    ZARR_JSON,
    episode_name,
    parse_episode_name,
    parse_pack_name,
)

_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def open_backend(path_or_url, *, read_only: bool, storage_options: dict | None = None):
    """`LocalBackend` for plain paths and ``file://`` URLs, `FsspecBackend` for every other protocol."""
    url = os.fspath(path_or_url)
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if isinstance(fs, LocalFileSystem):
        return LocalBackend(os.path.abspath(path), read_only=read_only)
    return FsspecBackend(url.rstrip("/"), fs, path.rstrip("/"), read_only=read_only, storage_options=storage_options)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalBackend:
    """A directory. Episodes are staged in ``.staging/`` and committed by ``os.rename`` into ``episodes/``."""

    is_local = True

    def __init__(self, root: str, *, read_only: bool):
        self.root = root
        self.url = root
        self.read_only = read_only
        self._zarr_root = None

    def _p(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/")) if rel else self.root

    def location(self, rel: str = "") -> str:
        return self._p(rel)

    # --- the root -------------------------------------------------------------------------------------
    def root_kind(self) -> str:
        return "dir" if os.path.isdir(self.root) else "missing" if not os.path.lexists(self.root) else "file"

    def list_root(self) -> list[str]:
        return sorted(os.listdir(self.root))

    def read_bytes(self, rel: str) -> bytes:
        with open(self._p(rel), "rb") as f:
            return f.read()

    def _write_atomic(self, rel: str, data: bytes) -> None:
        tmp = self._p(f"{rel}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self._p(rel))

    def create_manifest(self, data: bytes) -> bool:
        """Publish ``manifest.json`` unless one exists (atomic: link a complete temp file). True if created."""
        os.makedirs(self.root, exist_ok=True)
        tmp = self._p(f".manifest-{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, self._p(MANIFEST_NAME))
            return True
        except FileExistsError:
            return False
        except OSError as e:  # no hard links (some network/FUSE filesystems): exclusive create
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            try:
                fd = os.open(self._p(MANIFEST_NAME), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        finally:
            os.unlink(tmp)

    def replace_manifest(self, data: bytes) -> None:
        self._write_atomic(MANIFEST_NAME, data)

    def ensure_layout(self) -> None:
        os.makedirs(self._p(EPISODES_DIR), exist_ok=True)
        for rel in (ZARR_JSON, f"{EPISODES_DIR}/{ZARR_JSON}"):
            if not os.path.exists(self._p(rel)):
                self._write_atomic(rel, EMPTY_GROUP_JSON)

    def is_own_leftover(self, name: str) -> bool:
        """Root entries a crashed creation may leave (temp manifests): an otherwise empty dir is still empty."""
        return name.startswith(".manifest-") and name.endswith(".tmp")

    # --- episodes -------------------------------------------------------------------------------------
    def committed(self) -> list[int]:
        try:
            with os.scandir(self._p(EPISODES_DIR)) as it:
                eps = [ep for e in it if (ep := parse_episode_name(e.name)) is not None and e.is_dir()]
        except FileNotFoundError:
            return []
        return sorted(eps)

    def is_committed(self, name: str) -> bool:
        return os.path.isdir(self._p(f"{EPISODES_DIR}/{name}"))

    def zarr_root(self):
        if self._zarr_root is None:
            self._zarr_root = zarr.storage.LocalStore(self.root, read_only=True)
        return self._zarr_root

    def _staging_dir(self, label: str) -> str:
        staging = self._p(STAGING_DIR)
        os.makedirs(staging, exist_ok=True)
        return os.path.join(staging, f"{label}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}")

    def begin_episode(self, name: str, *, replace: bool):
        """A fresh staging dir and a Zarr store rooted at it; returns (store, token for commit/abort)."""
        path = self._staging_dir(name)
        os.mkdir(path)
        return zarr.storage.LocalStore(path), path

    def commit_episode(self, name: str, token: str, marker: bytes, *, replace: bool) -> bool:
        """Write the marker into the staged group and rename it into ``episodes/``. False if it already exists."""
        with open(os.path.join(token, COMMIT_MARKER), "wb") as f:
            f.write(marker)
        target = self._p(f"{EPISODES_DIR}/{name}")
        if replace and os.path.isdir(target):
            self.delete_episode(name)
        try:
            os.rename(token, target)  # fails on a non-empty target: a concurrent writer committed first
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise
        return True

    def abort_episode(self, token) -> None:
        if token:
            shutil.rmtree(token, ignore_errors=True)

    def _trash(self, rel: str, label: str) -> None:
        """Remove ``rel`` atomically for readers (rename it into staging), then delete its files; a no-op if absent."""
        trash = self._staging_dir(label)
        try:
            os.rename(self._p(rel), trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def delete_episode(self, name: str) -> None:
        """Uncommit atomically (rename into staging), then remove the files."""
        self._trash(f"{EPISODES_DIR}/{name}", f"deleted.{name}")

    def clear_episodes(self) -> None:
        """Drop every episode at once (``overwrite=True``): rename ``episodes/`` away, then remove it."""
        self._trash(EPISODES_DIR, "overwritten")

    # --- packs ----------------------------------------------------------------------------------------
    def list_packs(self) -> list[str]:
        """Names of the pack directories in ``packs/`` (complete or not), sorted."""
        try:
            with os.scandir(self._p(PACKS_DIR)) as it:
                return sorted(e.name for e in it if parse_pack_name(e.name) is not None and e.is_dir())
        except FileNotFoundError:
            return []

    def pack_exists(self, name: str) -> bool:
        return os.path.exists(self._p(f"{PACKS_DIR}/{name}/{PACK_INDEX}"))

    def begin_pack(self, name: str):
        """A fresh staging dir for pack ``name`` and a Zarr store rooted at it: (store, token)."""
        path = self._staging_dir("pack")
        os.mkdir(path)
        return zarr.storage.LocalStore(path), path

    def commit_pack(self, name: str, token: str, index: bytes) -> None:
        """Write ``pack.json`` into the staged pack and rename it into ``packs/`` (the commit)."""
        with open(os.path.join(token, PACK_INDEX), "wb") as f:
            f.write(index)
        os.makedirs(self._p(PACKS_DIR), exist_ok=True)
        if not os.path.exists(self._p(f"{PACKS_DIR}/{ZARR_JSON}")):
            self._write_atomic(f"{PACKS_DIR}/{ZARR_JSON}", EMPTY_GROUP_JSON)
        os.rename(token, self._p(f"{PACKS_DIR}/{name}"))

    def abort_pack(self, token) -> None:
        self.abort_episode(token)

    def delete_pack(self, name: str) -> None:
        """Unpublish atomically (rename into staging), then remove the files; a no-op if absent."""
        self._trash(f"{PACKS_DIR}/{name}", "deleted.pack")

    def clear_packs(self) -> None:
        self._trash(PACKS_DIR, "deleted.packs")

    def remove_incomplete_packs(self) -> list[str]:
        """Pack dirs without ``pack.json``: never a live writer's here (packs are renamed in whole)."""
        gone = [n for n in self.list_packs() if not self.pack_exists(n)]
        for name in gone:
            self.delete_pack(name)
        return gone

    def clean_staging(self) -> list[str]:
        """Remove staging dirs of dead writers of this host, and of any host after `STALE_STAGING_SECONDS`.

        A live writer's dir (same host, pid alive) is never touched; names are ``<label>-<host>-<pid>-<uuid>``
        (episodes and packs being written, trash). Pack dirs without ``pack.json`` are removed too.
        """
        removed = self.remove_incomplete_packs()
        try:
            entries = list(os.scandir(self._p(STAGING_DIR)))
        except FileNotFoundError:
            return removed
        now = time.time()
        for entry in entries:
            head, _, rest = entry.name.partition("-")
            host_pid = rest.rsplit("-", 2)
            stale = False
            if len(host_pid) == 3 and host_pid[1].isdigit():
                host, pid = host_pid[0], int(host_pid[1])
                if host == _HOST:
                    stale = pid != os.getpid() and not _pid_alive(pid)
            if not stale:
                try:
                    stale = now - entry.stat(follow_symlinks=False).st_mtime > STALE_STAGING_SECONDS
                except FileNotFoundError:
                    continue
            if stale:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
        return removed


class FsspecBackend:
    """Any fsspec URL but ``file://``: episodes written in place, committed by a ``.committed`` marker."""

    is_local = False

    def __init__(self, url: str, fs, root: str, *, read_only: bool, storage_options: dict | None):
        self.url = url
        self.fs = fs
        self.root = root
        self.read_only = read_only
        self.storage_options = storage_options
        self._zarr_root = None

    def _p(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def location(self, rel: str = "") -> str:
        return f"{self.url}/{rel}" if rel else self.url

    def root_kind(self) -> str:
        if not self.fs.exists(self.root):
            return "missing"
        return "dir" if self.fs.isdir(self.root) else "file"

    def list_root(self) -> list[str]:
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.root, detail=False))

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self._p(rel))

    def create_manifest(self, data: bytes) -> bool:
        """Not atomic on object stores: concurrent creators then compare what they read back."""
        if self.fs.exists(self._p(MANIFEST_NAME)):
            return False
        self.fs.pipe_file(self._p(MANIFEST_NAME), data)
        return True

    def replace_manifest(self, data: bytes) -> None:
        self.fs.pipe_file(self._p(MANIFEST_NAME), data)

    def ensure_layout(self) -> None:
        self.fs.makedirs(self._p(EPISODES_DIR), exist_ok=True)
        for rel in (ZARR_JSON, f"{EPISODES_DIR}/{ZARR_JSON}"):
            if not self.fs.exists(self._p(rel)):
                self.fs.pipe_file(self._p(rel), EMPTY_GROUP_JSON)

    def is_own_leftover(self, name: str) -> bool:
        return False

    def committed(self) -> list[int]:
        eps = []
        for p in self.fs.glob(self._p(f"{EPISODES_DIR}/*/{COMMIT_MARKER}")):
            ep = parse_episode_name(posixpath.basename(posixpath.dirname(p.rstrip("/"))))
            if ep is not None:
                eps.append(ep)
        return sorted(eps)

    def is_committed(self, name: str) -> bool:
        return self.fs.exists(self._p(f"{EPISODES_DIR}/{name}/{COMMIT_MARKER}"))

    def _zarr_store(self, rel: str, *, read_only: bool):
        return zarr.storage.FsspecStore.from_url(self.location(rel), storage_options=self.storage_options,
                                                 read_only=read_only)

    def zarr_root(self):
        if self._zarr_root is None:
            self._zarr_root = self._zarr_store("", read_only=True)
        return self._zarr_root

    def begin_episode(self, name: str, *, replace: bool):
        """Clear what an interrupted write left at ``episodes/<name>`` (uncommitted), return a store there."""
        rel = f"{EPISODES_DIR}/{name}"
        if replace:
            self.delete_episode(name)
        elif self.fs.exists(self._p(rel)) and not self.is_committed(name):
            self.fs.rm(self._p(rel), recursive=True)
        return self._zarr_store(rel, read_only=False), None

    def commit_episode(self, name: str, token, marker: bytes, *, replace: bool) -> bool:
        self.fs.pipe_file(self._p(f"{EPISODES_DIR}/{name}/{COMMIT_MARKER}"), marker)
        return True

    def abort_episode(self, token) -> None:
        pass  # the uncommitted files stay invisible; the next write of this episode clears them

    def delete_episode(self, name: str) -> None:
        """Uncommit (remove the marker) first, then the files."""
        marker = self._p(f"{EPISODES_DIR}/{name}/{COMMIT_MARKER}")
        if self.fs.exists(marker):
            self.fs.rm(marker)
        if self.fs.exists(self._p(f"{EPISODES_DIR}/{name}")):
            self.fs.rm(self._p(f"{EPISODES_DIR}/{name}"), recursive=True)

    def clear_episodes(self) -> None:
        for ep in self.committed():
            self.fs.rm(self._p(f"{EPISODES_DIR}/{episode_name(ep)}/{COMMIT_MARKER}"))
        if self.fs.exists(self._p(EPISODES_DIR)):
            self.fs.rm(self._p(EPISODES_DIR), recursive=True)

    # --- packs: written in place, committed by pack.json written last -------------------------------------
    def list_packs(self) -> list[str]:
        try:
            entries = self.fs.ls(self._p(PACKS_DIR), detail=True)
        except FileNotFoundError:
            return []
        names = (posixpath.basename(e["name"].rstrip("/")) for e in entries if e.get("type") == "directory")
        return sorted(n for n in names if parse_pack_name(n) is not None)

    def pack_exists(self, name: str) -> bool:
        return self.fs.exists(self._p(f"{PACKS_DIR}/{name}/{PACK_INDEX}"))

    def begin_pack(self, name: str):
        if not self.fs.exists(self._p(f"{PACKS_DIR}/{ZARR_JSON}")):
            self.fs.pipe_file(self._p(f"{PACKS_DIR}/{ZARR_JSON}"), EMPTY_GROUP_JSON)
        return self._zarr_store(f"{PACKS_DIR}/{name}", read_only=False), name

    def commit_pack(self, name: str, token, index: bytes) -> None:
        self.fs.pipe_file(self._p(f"{PACKS_DIR}/{name}/{PACK_INDEX}"), index)

    def abort_pack(self, token) -> None:
        if token and self.fs.exists(self._p(f"{PACKS_DIR}/{token}")):
            self.fs.rm(self._p(f"{PACKS_DIR}/{token}"), recursive=True)

    def delete_pack(self, name: str) -> None:
        """Unpublish (remove ``pack.json``) first, then the files."""
        if self.pack_exists(name):
            self.fs.rm(self._p(f"{PACKS_DIR}/{name}/{PACK_INDEX}"))
        if self.fs.exists(self._p(f"{PACKS_DIR}/{name}")):
            self.fs.rm(self._p(f"{PACKS_DIR}/{name}"), recursive=True)

    def clear_packs(self) -> None:
        for name in self.list_packs():
            self.delete_pack(name)
        if self.fs.exists(self._p(PACKS_DIR)):
            self.fs.rm(self._p(PACKS_DIR), recursive=True)

    def remove_incomplete_packs(self) -> list[str]:
        """Pack dirs without ``pack.json``: a dead packer's, or a live one's (only call when none is packing)."""
        gone = [n for n in self.list_packs() if not self.pack_exists(n)]
        for name in gone:
            self.delete_pack(name)
        return gone

    def clean_staging(self) -> list[str]:
        return []  # an unfinished pack may be a live writer's: only pack(consolidate=True) removes them
