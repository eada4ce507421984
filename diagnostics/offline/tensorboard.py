"""TensorBoard event files (verl, TRL, any SummaryWriter) imported as infoscope runs.

``infoscope import-tb LOGDIR --out RUN`` reads every scalar series of every run below
``LOGDIR`` with the ``tensorboard`` package (the optional extra ``infoscope[tb]``), renames
the tags infoscope knows (verl's and TRL's entropy, reward, KL and response length, see
:mod:`diagnostics.offline.names`; ``--map TAG=METRIC`` for others), keeps every other tag
under its own name, writes one run per TensorBoard run and replays the collapse detectors
over it, so the Collapse page works on an imported run.

Runs: as in TensorBoard, a run is a folder holding event files (files whose name contains
``tfevents``), named by its path relative to ``LOGDIR`` (``.`` for ``LOGDIR`` itself); its
event files are read in name order. One run is written to ``--out`` itself; several are
written to ``--out/<run name>`` (the log dir's own run to ``--out/_root``), a folder of runs
for ``infoscope dashboard``. ``runs=`` (``--run NAME``, repeatable) imports only those.

Readers, both from the ``tensorboard`` distribution, with the same result:

- ``server``: TensorBoard's data server (``tensorboard-data-server``, the Rust reader that
  ``tensorboard --load_fast`` uses; installed with ``tensorboard`` on Linux x86-64 and
  macOS), started for the import and read over its gRPC API; checks every record's CRC.
- ``python``: ``tensorboard``'s own record reader and ``Event`` protos, in-process; about
  ten times slower.

``auto`` (the default) takes the server when its binary is installed, and falls back to the
Python reader (with a warning) when the server does not start.

Semantics, the same in both (TensorBoard's): a scalar is a ``simple_value`` or a 0-d tensor
of the ``scalars`` plugin; when a tag's step goes back (a run resumed from a checkpoint),
its points at that step and later are dropped and replaced by the new ones; a truncated last
record (a writer killed mid-write) ends the file quietly; a record that fails its CRC check
makes the import fail with the file's name.
"""

from __future__ import annotations

import bisect
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from diagnostics.offline.scalars import (
    Imported,
    ScalarLog,
    ScalarSeries,
    run_path_for,
    write_scalar_log,
)

__all__ = ["discover_runs", "import_tensorboard", "read_tensorboard"]

READERS = ("auto", "server", "python")
_EXTRA = "TensorBoard import needs the tensorboard package: pip install 'infoscope[tb]'"


def _require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ImportError(_EXTRA) from None


def resolve_reader(reader: str = "auto") -> str:
    """``"server"`` or ``"python"``: the reader ``reader`` stands for (``auto``: the data
    server when its binary is installed)."""
    if reader not in READERS:
        raise ValueError(f"--reader: expected one of {', '.join(READERS)}, got {reader!r}")
    _require_tensorboard()
    from diagnostics.offline import _tb_server

    if reader == "auto":
        return "server" if _tb_server.server_binary() is not None else "python"
    if reader == "server" and _tb_server.server_binary() is None:
        raise ValueError(
            "--reader server: TensorBoard's data server is not installed for this platform "
            "(the tensorboard-data-server package ships it for Linux x86-64 and macOS); "
            "use --reader python"
        )
    return reader


def discover_runs(logdir: str | os.PathLike) -> dict[str, list[Path]]:
    """Run name -> its event files (name order), for every folder below ``logdir`` holding
    files whose name contains ``tfevents``; ``"."`` is ``logdir`` itself."""
    logdir = Path(logdir)
    runs: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(logdir):
        dirnames.sort()
        files = sorted(f for f in filenames if "tfevents" in f)
        if files:
            rel = os.path.relpath(dirpath, logdir)
            runs[Path(rel).as_posix()] = [Path(dirpath) / f for f in files]
    return runs


def read_tensorboard(
    logdir: str | os.PathLike,
    *,
    runs: Sequence[str] | None = None,
    reader: str = "auto",
    progress: bool | None = None,
) -> list[ScalarLog]:
    """Every scalar series of every run below ``logdir`` (or of ``runs`` only), one
    :class:`~diagnostics.offline.scalars.ScalarLog` per run, in run-name order.

    Raises ``ValueError`` (naming the folder or file) for a missing or empty log dir, a log
    dir without event files, an unknown run name or a corrupt event file.
    """
    asked = reader
    reader = resolve_reader(reader)
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise ValueError(f"{logdir}: expected a TensorBoard log folder, got no folder there")
    found = discover_runs(logdir)
    if not found:
        what = "is empty" if not any(logdir.iterdir()) else "holds no event files"
        raise ValueError(
            f"{logdir}: {what} (expected TensorBoard event files, events.out.tfevents.*, "
            "in it or below it)"
        )
    if runs:
        unknown = [r for r in runs if r not in found]
        if unknown:
            raise ValueError(
                f"--run: {', '.join(map(repr, unknown))} not found in {logdir}; its runs: "
                f"{', '.join(found)}"
            )
        found = {r: found[r] for r in runs}
    logs = None
    if reader == "server":
        from diagnostics.offline import _tb_server

        try:
            logs = _tb_server.read_scalars(logdir, found, progress=progress)
        except _tb_server.ServerError as exc:
            if asked != "auto":
                raise
            warnings.warn(f"{exc}; reading with the Python reader instead", stacklevel=2)
    if logs is None:
        logs = [_read_run_python(name, files, logdir, progress) for name, files in found.items()]
    return sorted(logs, key=lambda log: log.name)


# --------------------------------------------------------------------------- python reader
def _iter_records(path: Path) -> Iterable[bytes]:
    """The serialized records of one event file, read with tensorboard's record reader
    (CRC-checked): a truncated last record ends the file, a failed CRC raises."""
    from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow

    reader = pywrap_tensorflow.PyRecordReader_New(str(path))
    try:
        while True:
            try:
                reader.GetNext()
            except errors.OutOfRangeError:
                return
            except errors.DataLossError as exc:
                if "truncated" in str(exc):
                    return  # a writer killed mid-record: what came before is intact
                raise ValueError(
                    f"{path}: corrupt TensorBoard event file (a record failed its CRC check)"
                ) from None
            yield reader.record()
    finally:
        reader.file_handle.close()


def _read_run_python(
    name: str, files: list[Path], logdir: Path, progress: bool | None
) -> ScalarLog:
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import event_pb2
    from tensorboard.util import tensor_util

    from diagnostics.offline.progress import progress_bar

    points: dict[str, tuple[list[int], list[float], list[float]]] = {}
    plugin_of: dict[str, str] = {}
    parse = event_pb2.Event.FromString
    total = sum(f.stat().st_size for f in files)
    with progress_bar(
        total=total, enabled=progress, desc=f"read {name}", unit="B", unit_scale=True
    ) as bar:
        for path in files:
            for record in _iter_records(path):
                bar.update(len(record) + 16)
                try:
                    event = parse(record)
                except DecodeError:
                    raise ValueError(
                        f"{path}: not a TensorBoard event file (a record is not an Event)"
                    ) from None
                if not event.HasField("summary"):
                    continue
                step, wall = event.step, event.wall_time
                for v in event.summary.value:
                    kind = v.WhichOneof("value")
                    if kind == "simple_value":
                        value = v.simple_value
                    elif kind == "tensor":
                        tag = v.tag
                        if v.HasField("metadata") and v.metadata.plugin_data.plugin_name:
                            plugin_of[tag] = v.metadata.plugin_data.plugin_name
                        if plugin_of.get(tag) != "scalars":
                            continue
                        arr = tensor_util.make_ndarray(v.tensor)
                        if arr.size != 1:
                            continue
                        value = float(arr.reshape(-1)[0])
                    else:
                        continue
                    p = points.get(v.tag)
                    if p is None:
                        p = points[v.tag] = ([], [], [])
                    steps = p[0]
                    if steps and step <= steps[-1]:
                        # TensorBoard's rule: a step that goes back replaces what followed
                        cut = bisect.bisect_left(steps, step)
                        del steps[cut:], p[1][cut:], p[2][cut:]
                    steps.append(step)
                    p[1].append(wall)
                    p[2].append(value)
    return ScalarLog(
        name=name,
        source=str(logdir / name) if name != "." else str(logdir),
        info={"reader": "python"},
        series={
            tag: ScalarSeries(
                np.asarray(p[0], dtype=np.int64),
                np.asarray(p[1], dtype=np.float64),
                np.asarray(p[2], dtype=np.float64),
            )
            for tag, p in points.items()
        },
    )


# --------------------------------------------------------------------------- import
def import_tensorboard(
    logdir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    mapping: Mapping[str, str] | None = None,
    runs: Sequence[str] | None = None,
    overwrite: bool = False,
    reader: str = "auto",
    progress: bool | None = None,
    rl: bool | None = None,
) -> list[Imported]:
    """Import the TensorBoard runs below ``logdir`` into ``out`` (see the module docstring).

    ``mapping``: extra ``tag -> metric`` renames (``--map``), each tag must occur in some
    run. A run without scalars is skipped with a warning. ``rl``: whether the runs are RL
    fine-tuning (``None``: the detectors tell from the series). Returns an
    :class:`~diagnostics.offline.scalars.Imported` per run. Nothing is left at ``out`` when
    it fails (the runs are written into a staging folder renamed at the end).
    """
    from diagnostics.offline.names import resolve_names
    from diagnostics.offline.output import check_output, staged_output

    check_output(out, overwrite=overwrite)
    logs = read_tensorboard(logdir, runs=runs, reader=reader, progress=progress)
    mapping = dict(mapping or {})
    all_tags = {t for log in logs for t in log.series}
    missing = [t for t in mapping if t not in all_tags]
    if missing:
        raise ValueError(
            f"--map: tag(s) {', '.join(map(repr, missing))} not found in {logdir}; its scalar "
            f"tags: {', '.join(sorted(all_tags)[:30])}"
        )
    if not any(log.points for log in logs):
        raise ValueError(f"{logdir}: its event files hold no scalar summaries")
    for log in logs:
        if not log.points:
            warnings.warn(
                f"{log.source}: no scalar summaries; run {log.name!r} skipped", stacklevel=2
            )
    logs = [log for log in logs if log.points]
    plans = [(log, resolve_names(log.series, mapping)) for log in logs]
    results = []
    with staged_output(out, overwrite=overwrite) as stage:
        for log, names in plans:
            rel = Path() if len(plans) == 1 else run_path_for(log.name)
            run_name = Path(out).name if len(plans) == 1 else rel.as_posix()
            meta = {
                "name": run_name,
                "config": {
                    "source": "infoscope import-tb",
                    "logdir": str(Path(logdir).absolute()),
                    "tensorboard_run": log.name,
                    "tag_map": {t: m for t, m in names.items() if t != m},
                    **log.info,
                },
            }
            alerts = write_scalar_log(
                log, stage / rel, names=names, meta=meta, progress=progress, rl=rl
            )
            results.append(Imported(Path(out) / rel, log, names, alerts))
    return results
