"""``memstore serve --workers N``: N processes serving one port, under a supervisor.

The supervisor binds nothing and serves nothing: it forks the workers, forwards SIGTERM and
SIGINT to them, restarts one that dies, and exits when they have all stopped. Each worker
is a whole ``memstore serve`` (``app.serve``: its own event loop, manager, cache, backend
connections and bus subscription, like a replica of its own) listening with SO_REUSEPORT
on the same address, so the kernel spreads incoming connections over the workers (a
connection stays with the worker that accepted it). Why SO_REUSEPORT rather than one
listening socket inherited by every worker: with a shared socket every idle asyncio worker
is woken by each connection and the first to run accepts a whole burst of them, so the
load lands unevenly; the kernel's per-socket queues spread it by the connection's address.

* Start-up: a worker writes its pid to a pipe once it listens. A worker that exits before
  that (the port taken, a bad setting) stops the whole server with exit status 1: retrying
  would not help.
* A worker that dies after it listened (killed, out of memory, a crash) is forked again
  under the same number, at most ``MAX_RESTARTS`` times in ``RESTART_WINDOW_SECONDS``;
  beyond that the supervisor stops the others and exits 1, so the container restarts.
* SIGTERM/SIGINT: forwarded as SIGTERM to every worker, each of which drains as a single
  process does (listener closed, in-flight requests finished, backend closed); workers
  still running ``shutdown_timeout_seconds`` + ``KILL_GRACE_SECONDS`` later are killed.
  Exit status 0 when every worker stopped cleanly.
* Metrics: prometheus-client's multiprocess mode, in ``$PROMETHEUS_MULTIPROC_DIR`` (a fresh
  temporary directory when not set; ``*.db`` files left there by an earlier run are
  removed at start, as the library requires). A dead worker's live gauges are dropped
  (``mark_process_dead``); its counters stay in the sums.
* A worker gets SIGTERM when the supervisor dies (``PR_SET_PDEATHSIG``), so a
  ``kill -9`` of the supervisor leaves no orphan holding the port.
* The embedded backend, as the primary or the secondary, is refused: its one file has one
  owner process (docs/architecture.md, "Embedded backend: one owner process"; "Workers"
  says why it stays so).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import struct
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from memstore.core.errors import ConfigurationError
from memstore.core.settings import Settings

log = logging.getLogger("memstore.server.workers")

MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
KILL_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.1
_PID = struct.Struct("!i")
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def check_workers(settings: Settings) -> None:
    """The settings ``--workers N`` (N > 1) cannot serve with, as one clear error."""
    if settings.memory_type == "embedded":
        raise ConfigurationError(
            f"--workers {settings.workers} needs a shared backend (MEMORY_TYPE redis or "
            "mongodb): an embedded SQLite file has one owner process, whose cache hears only "
            "its own writes; run one worker, or several replicas on Redis or MongoDB"
        )
    if settings.secondary_backend == "embedded":
        raise ConfigurationError(
            f"--workers {settings.workers} needs a shared secondary backend "
            "(MEMSTORE_SECONDARY_BACKEND redis or mongodb): an embedded SQLite file has one "
            "owner process; run one worker, or a Redis or MongoDB secondary"
        )
    if settings.port == 0:
        raise ConfigurationError(
            "--workers needs a fixed port: with port 0 every worker would get its own"
        )


def check_port_free(host: str, port: int) -> None:
    """Bind (and release) every address ``host`` resolves to, without SO_REUSEPORT: an
    address in use by anyone, another ``memstore serve --workers`` included, fails here
    as it would for one worker, instead of joining that server's SO_REUSEPORT group."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)


@contextlib.contextmanager
def multiprocess_metrics_dir() -> Iterator[Path]:
    """``$PROMETHEUS_MULTIPROC_DIR`` emptied of old series files, or a new temporary one
    (set in the environment, removed at the end)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            old.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="memstore-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    try:
        yield path
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(path, ignore_errors=True)


def serve_workers(settings: Settings) -> int:
    """Run ``settings.workers`` workers until SIGTERM/SIGINT; the exit status."""
    check_workers(settings)
    check_port_free(settings.host, settings.port)
    with multiprocess_metrics_dir():
        # Imported only now: prometheus-client picks multiprocess mode when it is imported,
        # from the variable just set; the workers inherit the modules through fork.
        from memstore.server.security import check_bind

        check_bind(settings)
        return Supervisor(settings).run()


class Supervisor:
    """The parent process of the workers (see the module doc)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers: dict[int, int] = {}  # pid -> worker number
        self.listening: set[int] = set()  # pids that reported listening
        self.killed: set[int] = set()  # pids sent SIGKILL (late to stop)
        self.deaths: deque[float] = deque()
        self.stopping_since: float | None = None
        self.status = 0
        self.ready_r, self.ready_w = os.pipe()
        os.set_blocking(self.ready_r, False)

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        try:
            for number in range(self.settings.workers):
                self._fork(number)
            log.info(
                "memstore supervisor: %d workers on %s:%s",
                self.settings.workers,
                self.settings.host,
                self.settings.port,
            )
            while self.workers:
                self._read_listening()
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    self._kill_late_workers()
                    time.sleep(POLL_SECONDS)
                    continue
                self._read_listening()  # a report written just before the exit
                self._reaped(pid, os.waitstatus_to_exitcode(wait_status))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self.ready_r)
            os.close(self.ready_w)
        log.info("memstore supervisor: all workers stopped (exit status %d)", self.status)
        return self.status

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop(f"signal {signal.Signals(signum).name}")

    def stop(self, reason: str) -> None:
        """Tell every worker to drain and stop (again, on a second signal)."""
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
            log.info("memstore supervisor: stopping the workers (%s)", reason)
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _kill_late_workers(self) -> None:
        if self.stopping_since is None:
            return
        limit = self.settings.shutdown_timeout_seconds + KILL_GRACE_SECONDS
        if time.monotonic() - self.stopping_since < limit:
            return
        for pid, number in list(self.workers.items()):
            if pid in self.killed:
                continue
            self.killed.add(pid)
            log.error("memstore supervisor: worker %d (pid %d) did not stop; killed", number, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.status = 1

    def _read_listening(self) -> None:
        with contextlib.suppress(BlockingIOError):
            data = os.read(self.ready_r, 4096)
            for (pid,) in _PID.iter_unpack(data):
                self.listening.add(pid)

    def _reaped(self, pid: int, code: int) -> None:
        number = self.workers.pop(pid, None)
        if number is None:
            return  # not a worker of ours
        listened = pid in self.listening
        self.listening.discard(pid)
        _mark_process_dead(pid)
        if self.stopping_since is not None:
            # -SIGTERM: told to stop before its own handlers were set (still starting).
            if code not in (0, -signal.SIGTERM):
                log.error("memstore supervisor: worker %d exited with status %d", number, code)
                self.status = 1
            return
        if not listened:
            log.error(
                "memstore supervisor: worker %d exited with status %d before it listened; "
                "stopping (see its lines above)",
                number,
                code,
            )
            self.status = 1
            self.stop("a worker could not start")
            return
        now = time.monotonic()
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > RESTART_WINDOW_SECONDS:
            self.deaths.popleft()
        if len(self.deaths) > MAX_RESTARTS:
            log.error(
                "memstore supervisor: workers died %d times in %.0f s; stopping",
                len(self.deaths),
                RESTART_WINDOW_SECONDS,
            )
            self.status = 1
            self.stop("workers keep dying")
            return
        log.warning(
            "memstore supervisor: worker %d (pid %d) died with status %d; restarting it",
            number,
            pid,
            code,
        )
        self._fork(number)

    # -- a worker -----------------------------------------------------------------------

    def _fork(self, number: int) -> None:
        supervisor = os.getpid()
        # Blocked across the fork: in the child, the supervisor's handlers would forward a
        # signal to its (copied) worker table. Pending signals arrive once unblocked.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
        if pid:
            self.workers[pid] = number
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            return
        # The child: never returns into the supervisor's loop.
        status = 1
        try:
            for sig in _STOP_SIGNALS:
                # Until the worker's own handlers (its event loop's), a signal ends it.
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            _stop_with_parent(supervisor)
            status = self._worker_main(number)
        except BaseException:
            log.exception("worker %d failed", number)
        finally:
            logging.shutdown()
            os._exit(status)

    def _worker_main(self, number: int) -> int:
        os.close(self.ready_r)
        ready_w = self.ready_w
        # Traces name the worker (a resource attribute, from the SDK's own variable).
        attributes = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
        os.environ["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(
            a for a in (attributes, f"memstore.worker={number}") if a
        )
        from memstore.core.errors import MemoryStoreError
        from memstore.observability.logs import configure_logging
        from memstore.server.app import serve

        configure_logging(self.settings.log_level, worker=number)

        def listening() -> None:
            os.write(ready_w, _PID.pack(os.getpid()))

        try:
            serve(self.settings, worker=number, on_listening=listening)
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", self.settings.host, self.settings.port, exc)
            return 1
        except MemoryStoreError as exc:
            log.error("%s: %s", exc.code, exc.message)
            return 1
        return 0


#: prctl(2) option: the signal this process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def _stop_with_parent(supervisor: int) -> None:
    """A worker whose supervisor died (``kill -9``) gets SIGTERM and drains, rather than
    serving on as an orphan nobody will stop (Linux's ``PR_SET_PDEATHSIG``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != supervisor:  # it died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def _mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges from the aggregate (prometheus-client's call)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
