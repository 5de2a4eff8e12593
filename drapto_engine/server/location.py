"""Where the engine's socket lives, and making sure only one engine owns it.

The socket is `$XDG_RUNTIME_DIR/drapto/engine.sock`. Without XDG_RUNTIME_DIR (cron,
some SSH sessions) it is `$TMPDIR/drapto-<uid>/engine.sock` (/tmp without TMPDIR), the
tmux convention: short enough for the 107-byte socket path limit. Anyone may create that
folder first, so before a client sends anything it checks, as OpenSSH does, that the
folder is the user's and writable by nobody else and that the listener runs as the same
uid (SO_PEERCRED); an engine refuses to start in such a folder too.

One engine per socket and per state folder: each is claimed with an exclusive
`flock` on a lock file beside it, held for the engine's life. The kernel releases it
when the process dies however it dies, so a socket file left by an engine killed with
SIGKILL is known to be stale and is replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import stat
import struct
from pathlib import Path

from drapto_engine.core.errors import DraptoError, UntrustedSocket
from drapto_engine.infrastructure.paths import MAX_SOCKET_PATH

log = logging.getLogger(__name__)

SOCKET_NAME = "engine.sock"


def default_socket() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_absolute():
        return Path(runtime) / "drapto" / SOCKET_NAME
    tmp = os.environ.get("TMPDIR")
    base = Path(tmp) if tmp and Path(tmp).is_absolute() else Path("/tmp")
    return base / f"drapto-{os.getuid()}" / SOCKET_NAME


def check_folder(socket_path: Path, uid: int | None = None) -> bool:
    """Refuse (UntrustedSocket) a socket whose folder is not this user's or is writable by
    others, as OpenSSH does: someone else could have put a listener there. False when
    the folder does not exist (no engine runs there)."""
    try:
        info = socket_path.parent.lstat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UntrustedSocket(
            socket_path, f"cannot check its folder: {exc.strerror}", OTHER_FOLDER
        ) from exc
    _judge(socket_path, info, os.getuid() if uid is None else uid)
    return True


OTHER_FOLDER = "remove it, or set XDG_RUNTIME_DIR or --socket"


def _judge(socket_path: Path, info: os.stat_result, uid: int) -> None:
    folder = socket_path.parent
    if not stat.S_ISDIR(info.st_mode):
        raise UntrustedSocket(socket_path, f"{folder} is not a folder (a link?)", OTHER_FOLDER)
    if info.st_uid != uid:
        raise UntrustedSocket(
            socket_path, f"its folder {folder} is owned by uid {info.st_uid}, not you", OTHER_FOLDER
        )
    if info.st_mode & 0o022:
        raise UntrustedSocket(
            socket_path,
            f"its folder {folder} is writable by other users",
            "remove it, or chmod 700 it",
        )


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def check_peer(sock: socket.socket, socket_path: Path, expected_uid: int | None = None) -> None:
    """Refuse (UntrustedSocket) a connected socket whose listener runs as another uid."""
    expected = os.getuid() if expected_uid is None else expected_uid
    uid = peer_uid(sock)
    if uid != expected:
        raise UntrustedSocket(
            socket_path,
            f"the engine on it runs as uid {uid}, not you",
            "stop that process or remove the socket",
        )


def prepare_folder(folder: Path, name: str = SOCKET_NAME) -> None:
    """Create the socket's folder 0700; refuse one that is not a folder of this user's
    alone (UntrustedSocket), leaving it as it is."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError as exc:
        raise DraptoError(f"cannot create the socket's folder: {exc.strerror}", folder) from exc
    _judge(folder / name, info, os.getuid())


class Claim:
    """An exclusive lock on a file, held until release() or the process's death."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DraptoError(f"cannot open the lock file: {exc.strerror}", path) from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(self._fd)
            os.close(self._fd)
            pid = f" (pid {holder})" if holder else ""
            raise DraptoError(f"an engine is already running on {what}{pid}") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None


def claim_socket(path: Path) -> Claim:
    """Claim `path` for this engine: refuse when an engine listens there, else clear a
    stale socket file left by a dead one."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise DraptoError(
            f"socket path is longer than {MAX_SOCKET_PATH} bytes",
            path,
            hint="use a shorter --socket",
        )
    prepare_folder(path.parent, path.name)
    claim = Claim(path.with_name(path.name + ".lock"), str(path))
    try:
        _clear_stale(path)
    except BaseException:
        claim.release()
        raise
    return claim


def _clear_stale(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise DraptoError("exists and is not a socket; not replacing it", path)
    if answers(path):  # its lock file was deleted under a live engine
        raise DraptoError(f"an engine is already running on {path}")
    log.info("replacing the stale socket %s", path)
    path.unlink(missing_ok=True)


def answers(path: Path) -> bool:
    """Whether something accepts connections on the socket now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def bind(path: Path) -> socket.socket:
    """A listening-ready socket at `path`, created 0600 (the umask is set around bind
    because chmod after it leaves a moment where the mode is wider)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise DraptoError(f"cannot listen: {exc.strerror}", path) from exc
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    return sock
