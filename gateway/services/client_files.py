"""Opening a file a client dropped without following links out of its folder.

Where a client can create symbolic links in its upload folder (an operator's own SFTP server, a
shared folder), following one would read any file the gateway can read and quote it back in the
client's ack (``ln -s /etc/passwd upload/leak.csv``). So a client's file is opened once with
``O_NOFOLLOW`` (a link as the last part of the path is refused), checked to be a regular file whose
real folder is the client's upload folder (a linked folder is refused too), and then read through
that one open descriptor (``/proc/<pid>/fd/<n>``: the same inode even if the name is swapped for a
link after the check; the isolated reader child, running as the same user, opens it the same way).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from gateway.errors import InputError

LINK_REFUSED = "link_refused"


class LinkRefused(InputError):
    """The client's file is a symbolic link, or not inside the client's folder: it is never read."""


class ClientFile:
    """An open, checked client file; ``path`` reads the checked inode, whatever happens to the name."""

    def __init__(self, path: Path, jail: Path) -> None:
        self.name = path.name
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO must not hang us
        try:
            self.fd = os.open(path, flags)
        except FileNotFoundError:
            raise InputError("no such file", file=self.name) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LinkRefused("the file is a symbolic link: links are not accepted, upload the file itself",
                                  file=self.name) from None
            raise InputError(f"cannot open the file: {exc.strerror}", file=self.name) from None
        try:
            st = os.fstat(self.fd)
            if not stat.S_ISREG(st.st_mode):
                raise LinkRefused("not a regular file: only plain files are accepted", file=self.name)
            if Path(os.path.realpath(path.parent)) != Path(os.path.realpath(jail)):
                raise LinkRefused("the file is not inside the client's upload folder (a linked folder?): "
                                  "links are not accepted", file=self.name)
            os.set_blocking(self.fd, True)
        except BaseException:
            os.close(self.fd)
            raise
        self.stat = st
        self.path = Path(f"/proc/{os.getpid()}/fd/{self.fd}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "ClientFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_link(path: Path) -> bool:
    """True for a symbolic link (dangling or not), without following it."""
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False
