"""Writing an offline result all at once: a hidden staging folder renamed onto ``--out`` at the end.

Every offline command writes through :func:`staged_output`, so that a failure (bad input, a
full disk, Ctrl-C) never leaves a half-written folder that looks like a valid run: the work
happens in ``.NAME.tmp-XXXX`` beside the destination (hidden, so ``infoscope runs`` and the
dashboard skip it), which is renamed onto the destination only when everything succeeded and
removed otherwise. An existing non-empty destination is refused unless ``overwrite`` is set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["check_output", "staged_output"]


def check_output(out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an ``out`` that exists and is not an empty folder (unless ``overwrite``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file; expected a folder to write the run into")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        what = "already holds a run" if (out / "run.sqlite").exists() else "is not empty"
        raise ValueError(f"--out: {out} {what}; choose a new folder or pass --overwrite")
    return out


@contextlib.contextmanager
def staged_output(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside ``out``; on success it replaces ``out``.

    On any exception (KeyboardInterrupt included) the staging folder is removed and ``out``
    is left as it was.
    """
    out = check_output(out, overwrite=overwrite).absolute()
    made = [p for p in out.parents if not p.exists()]  # folders created for it, deepest first
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    stage.chmod(0o777 & ~umask)  # mkdtemp makes it private; the run gets the usual mode
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty
        raise
    old = None
    if out.exists():
        if any(out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            old.rmdir()
            out.rename(old)
        else:
            out.rmdir()
    try:
        stage.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
