"""Path safety: a path a caller names never leads outside the configured root it belongs to.

Checked twice: when the request arrives (`resolve_inside`, a clear 4xx), and when the work uses
the path (`open_confined`): the file is opened component by component without following any
symbolic link, so a file or folder swapped for a link after the check is refused instead of
followed, and only regular files (or folders) are opened, never without O_NONBLOCK, so a FIFO or
a device cannot block a worker. The open file is then read through `fd_path`, never by name again.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from media_service.errors import PathRefused

MAX_NAME_BYTES = 255     # one path component, as Linux filesystems allow
MAX_PATH_BYTES = 4096




def check_lengths(user_path: str) -> None:
    encoded = user_path.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES:
        raise PathRefused("path_too_long", f"the path is longer than {MAX_PATH_BYTES} bytes")
    if any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        raise PathRefused("name_too_long", f"a name in the path is longer than {MAX_NAME_BYTES} bytes")


def inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_inside(root: Path, user_path: str, base: Path | None = None) -> Path | None:
    """The caller's path resolved (symlinks too), relative paths from `base` (default `root`), if it
    stays strictly inside `root`; else None. Raises PathRefused for unusable names."""
    if "\x00" in user_path:
        return None
    check_lengths(user_path)
    root = root.resolve()
    candidate = Path(user_path)
    try:
        resolved = (candidate if candidate.is_absolute() else (base or root) / candidate).resolve()
    except OSError as exc:  # ELOOP, ENAMETOOLONG on a link's target
        raise PathRefused("unusable_path", f"the path cannot be resolved: {exc.strerror}") from None
    return resolved if resolved != root and inside(resolved, root) else None


def _open_flags(directory: bool) -> int:
    return os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0)


def open_confined(root: Path, path: Path, directory: bool = False) -> int:
    """Open `path` (absolute) for reading, walking from `root` without following symbolic links.
    Returns a file descriptor; raises PathRefused when the path left the root, meets a link, or is
    not a regular file (a folder with `directory`)."""
    root = root.resolve()
    try:
        parts = Path(os.path.abspath(path)).relative_to(root).parts
    except ValueError:
        raise PathRefused("outside_root", f"{path.name} is not inside its configured folder") from None
    if not parts:
        raise PathRefused("outside_root", "the configured folder itself cannot be used")
    fd = os.open(root, _open_flags(True))
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            try:
                child = os.open(part, _open_flags(directory or not last), dir_fd=fd)
            except OSError as exc:
                raise _refusal(exc, path) from None
            os.close(fd)
            fd = child
        mode = os.fstat(fd).st_mode
        wanted = stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)
        if not wanted:
            raise PathRefused("not_a_regular_file", f"{path.name} is not a {'folder' if directory else 'regular file'}")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _refusal(exc: OSError, path: Path) -> PathRefused:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return PathRefused("path_changed", f"{path.name}: a part of the path is now a link or not a folder; "
                                           "it was changed after the request was accepted")
    if exc.errno == errno.ENOENT:
        return PathRefused("source_missing", f"{path.name} no longer exists")
    if exc.errno == errno.ENAMETOOLONG:
        return PathRefused("name_too_long", f"{path.name}: name too long")
    return PathRefused("unreadable", f"{path.name} cannot be opened: {exc.strerror}")


def fd_path(fd: int) -> str:
    """A path that reopens exactly the file behind `fd` (Linux), whatever its name points to now."""
    return f"/proc/self/fd/{fd}"


@dataclass(frozen=True)
class Fingerprint:
    """Size and modification time of an open file: a change during a job means the source changed."""
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, fd: int) -> "Fingerprint":
        info = os.fstat(fd)
        return cls(info.st_size, info.st_mtime_ns)


class ConfinedFile:
    """A source opened with `open_confined` for the length of a job (a context manager)."""

    def __init__(self, root: Path, path: Path):
        self.name = path.name
        self.fd = open_confined(root, path)
        self.fingerprint = Fingerprint.of(self.fd)

    @property
    def path(self) -> str:
        return fd_path(self.fd)

    def changed(self) -> bool:
        return Fingerprint.of(self.fd) != self.fingerprint

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> "ConfinedFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class ContentRoot:
    """Where callers' content may be: inside `root`, relative paths read from `base`, and never in
    one of the service's own folders or files (`own`: data, scratch, local storage, configuration)."""
    root: Path
    base: Path
    own: tuple[Path, ...] = ()

    def resolve(self, user_path: str) -> Path:
        """The caller's path, resolved and confined; raises PathRefused saying why not."""
        resolved = resolve_inside(self.root, user_path, self.base)
        if resolved is None:
            raise PathRefused("outside_root", "content_path must be inside the configured content folder")
        for own in self.own:
            if inside(resolved, own) or inside(own, resolved):
                raise PathRefused("own_folder", "content_path points into the service's own data, storage or "
                                                "configuration")
        return resolved


class ConfinedDir:
    """A folder inside `root` (created when missing), opened without following links. Files in it
    are created, renamed and removed through its descriptor, and written through their own, so a
    folder or name swapped for a link cannot send output outside the root."""

    def __init__(self, root: Path, folder: Path, create: bool = True):
        if create:
            root.mkdir(parents=True, exist_ok=True)  # the configured folder itself: the operator's choice
        root = root.resolve()
        try:
            parts = Path(os.path.abspath(folder)).relative_to(root).parts
        except ValueError:
            raise PathRefused("outside_root", f"{folder.name} is not inside its configured folder") from None
        try:
            self.fd = os.open(root, _open_flags(True))
        except OSError as exc:
            raise _refusal(exc, folder) from None
        try:
            for part in parts:
                if create:
                    try:
                        os.mkdir(part, 0o755, dir_fd=self.fd)
                    except FileExistsError:
                        pass
                try:
                    child = os.open(part, _open_flags(True), dir_fd=self.fd)
                except OSError as exc:
                    raise _refusal(exc, folder) from None
                os.close(self.fd)
                self.fd = child
        except BaseException:
            os.close(self.fd)
            raise

    def create(self, name: str) -> int:
        """A new, empty file `name` for writing (whatever stood under that name is removed first)."""
        self.unlink(name)
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                       dir_fd=self.fd)

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def remove_empty_folder(self, name: str) -> None:
        """The folder `name` in this one, if it is empty (else it stays)."""
        try:
            os.rmdir(name, dir_fd=self.fd)
        except OSError:  # not empty, or gone
            pass

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> "ConfinedDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
