"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes, fsync: bool = False) -> None:
    """Write to a uniquely named sibling, then rename over ``path``.

    The temporary name carries the pid and a random token, so concurrent writers (other processes,
    other hosts on a shared cache directory) never share one; unlike ``mkstemp`` the file gets the
    ordinary umask mode, so a team sharing a runs folder can read the results."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
