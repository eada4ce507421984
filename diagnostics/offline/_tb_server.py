"""Scalars read through TensorBoard's data server (the Rust ``tensorboard-data-server``).

The server is started for one import (``--reload once``, every scalar kept, every record's
CRC checked, bound to 127.0.0.1 on a free port, killed when we close its stdin), its log is
read until it reports the end of its load cycle, and the scalars come over its gRPC API
(``TensorBoardDataProvider.ReadScalars``) as packed arrays. The server logs a record it cannot
read (``Read error in PATH: ...``) and goes on; we turn that line into an error naming the
file, as the in-process reader does.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from diagnostics.offline.scalars import ScalarLog, ScalarSeries

__all__ = ["ServerError", "read_scalars", "server_binary"]

_READ_ERROR = re.compile(r"Read error in (?P<path>.+?): (?P<why>.*)$")
_DONE = "Finished load cycle"
_ALL_POINTS = (1 << 62) - 1


class ServerError(ValueError):
    """The data server did not start or did not answer (not a problem with the log)."""


def server_binary() -> str | None:
    """Path of the data server binary, or ``None`` when it is not installed for this
    platform (``tensorboard-data-server`` ships it for Linux x86-64 and macOS)."""
    try:
        import grpc  # noqa: F401
        import tensorboard_data_server
    except ImportError:
        return None
    return tensorboard_data_server.server_binary()


class _Server:
    """One data server process over ``logdir``; a context manager."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self._tmp = tempfile.TemporaryDirectory(prefix="infoscope_tb_")
        self.port_file = Path(self._tmp.name) / "port"
        self.error_file = Path(self._tmp.name) / "error"
        self.read_errors: list[tuple[str, str]] = []
        self.log_tail: list[str] = []
        self._loaded = threading.Event()
        self.finished = False  # the server logged the end of its load cycle
        env = {**os.environ, "RUST_LOG": "rustboard_core=info"}
        self.proc = subprocess.Popen(
            [
                server_binary(),
                "--logdir", str(logdir),
                "--host", "127.0.0.1",
                "--port", "0",
                "--port-file", str(self.port_file),
                "--error-file", str(self.error_file),
                "--reload", "once",
                "--samples-per-plugin", "scalars=all",
                "--checksum",
                "--die-after-stdin",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        # read the server's log to its end (a full pipe would stall the server)
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            m = _READ_ERROR.search(line)
            if m:
                self.read_errors.append((m.group("path"), m.group("why")))
            if _DONE in line:
                self.finished = True
                self._loaded.set()
            self.log_tail = (self.log_tail + [line])[-20:]
        self._loaded.set()  # the server exited

    def wait_loaded(self) -> None:
        self._loaded.wait()
        if not self.finished or not self.port_file.exists():  # it exited instead
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            why = self.error_file.read_text().strip() if self.error_file.exists() else ""
            why = why or "; ".join(self.log_tail[-3:]) or f"exit code {self.proc.returncode}"
            raise ServerError(f"{self.logdir}: TensorBoard's data server failed: {why}")

    def stub(self) -> Any:
        import grpc
        from tensorboard.data.proto import data_provider_pb2_grpc

        port = int(self.port_file.read_text().strip())
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[("grpc.max_receive_message_length", -1), ("grpc.enable_http_proxy", 0)],
        )
        return data_provider_pb2_grpc.TensorBoardDataProviderStub(self.channel)

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        if getattr(self, "channel", None) is not None:
            self.channel.close()
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        self._tmp.cleanup()


def read_scalars(
    logdir: Path, runs: dict[str, list[Path]], *, progress: bool | None = None
) -> list[ScalarLog]:
    """The scalar series of ``runs`` (run name -> event files, as
    :func:`~diagnostics.offline.tensorboard.discover_runs` gives them) below ``logdir``."""
    from tensorboard.data.proto import data_provider_pb2 as pb

    from diagnostics.offline.progress import progress_bar

    with _Server(logdir) as server:
        server.wait_loaded()
        known = {p.resolve() for fs in runs.values() for p in fs}
        for path, why in server.read_errors:
            # a file of a run that was not asked for does not stop the import
            if Path(path).resolve() in known or not Path(path).exists():
                if "Crc" in why or "Checksum" in why:
                    why = "a record failed its CRC check"
                raise ValueError(f"{path}: corrupt TensorBoard event file ({why})")
        stub = server.stub()
        logs = []
        for run in progress_bar(runs, enabled=progress, desc="read", unit="run"):
            req = pb.ReadScalarsRequest(experiment_id="")
            req.plugin_filter.plugin_name = "scalars"
            req.run_tag_filter.runs.names.append(run)
            req.downsample.num_points = _ALL_POINTS
            try:
                resp = stub.ReadScalars(req)
            except Exception as exc:  # grpc.RpcError: the server went away
                raise ServerError(
                    f"{logdir}: TensorBoard's data server did not answer ({exc})"
                ) from None
            series: dict[str, ScalarSeries] = {}
            for run_entry in resp.runs:
                for tag in run_entry.tags:
                    d = tag.data
                    series[tag.tag_name] = ScalarSeries(
                        np.array(d.step, dtype=np.int64),
                        np.array(d.wall_time, dtype=np.float64),
                        np.array(d.value, dtype=np.float64),
                    )
            source = str(logdir / run) if run != "." else str(logdir)
            logs.append(
                ScalarLog(name=run, source=source, series=series, info={"reader": "server"})
            )
    return logs
