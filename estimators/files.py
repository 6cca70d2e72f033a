"""Atomic file writes: a temporary file in the same folder, then a rename (``os.replace`` is
atomic), so a killed process leaves either the old file or the new one, never half a file."""

import os
import tempfile
from pathlib import Path


def atomic_write(path, write):
    """Create ``path`` by calling ``write(f)`` on a binary file object, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; these are ordinary data files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
