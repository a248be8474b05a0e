"""Key files that a development stack creates for itself under `var/` (the JWT signing key, the payload key).

Two processes starting at once must end up with the same key: each writes a complete file to a private
temporary file and links it into place only if the path is still free, so the first one wins and
everyone reads back the winner's key.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes at `path`, after writing `make()` there first (0600) if there was no file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as file:
                os.fchmod(file.fileno(), 0o600)
                file.write(make())
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, path)  # fails if another process got there first: keep theirs
            except FileExistsError:
                pass
            except OSError:
                # no hard links on this filesystem: last writer wins, and everyone reads back below
                os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    return path.read_bytes()
