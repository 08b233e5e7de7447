"""RayExecutor: batches of runs as Ray tasks, on an embedded local Ray or a cluster.

Workers get the project on their ``PYTHONPATH`` (the repo on a shared or the
same disk: a laptop, a loopback cluster, NFS) or, with ``ship_code=True``, as a
Ray ``working_dir`` upload. A worker or node that dies has its tasks retried by
Ray (``max_retries``); a task lost beyond that comes back as a Completion with
an error, and the controller retries its runs.

An embedded Ray ends with its driver, even a SIGKILLed one (``_ray_watchdog``).
Joining a cluster checks first, in a second, that the address answers and accepts
this client's credentials (token authentication), instead of letting Ray retry
for 20 s and then blame the address.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from sweep._executor import BatchFunction, Completion, Executor
from sweep._task import BatchResult, RunTask, execute_batch, pack_outcomes

#: Where the packages live: a checkout's root (workers/, sweep/, configs/profiles), or site-packages for a wheel.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: A checkout ships whole with ``ship_code``; an installed wheel ships only its packages (profiles are inside).
IS_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file()
#: Started beside an embedded Ray, so that its processes die with the driver.
WATCHDOG = Path(__file__).with_name("_ray_watchdog.py")
#: How long joining a cluster may take to find out that the address is wrong or refuses us.
PROBE_TIMEOUT_S = 5.0
#: Words that mark a token-authentication failure anywhere in an error Ray raises.
_AUTH_MARKERS = ("unauthenticated", "invalidauthtoken", "authentication token", "token authentication", "ray_auth_mode")
#: Not shipped with ``ship_code``: environments, results, caches.
SHIP_EXCLUDES = [".venv", ".git", "flushsweep-data", "**/__pycache__", ".pytest_cache", ".hypothesis", "*.parquet", "*.db", "build", "dist"]


def _ray_batch(tasks: Sequence[RunTask], batch: BatchFunction = execute_batch) -> BatchResult:
    """The Ray task: record which node ran the batch, run it, pack its rows into one table (here, not on the driver)."""
    import ray

    return pack_outcomes(batch(tasks, ray.get_runtime_context().get_node_id()))


class RayExecutor(Executor):
    """Runs batches as Ray tasks.

    Args:
        address: None starts an embedded local Ray with ``workers`` CPUs;
            ``"auto"`` or ``"ray://host:port"`` / ``"host:port"`` joins a cluster.
        workers: concurrent batches (default: the CPUs of the local machine or of the cluster).
        max_retries: Ray retries of a task whose worker process or node died.
        ship_code: upload the project as a ``working_dir`` instead of relying on a shared disk.
        object_store_mb: object store size of an embedded Ray (results are small).
        batch: what a task runs (default ``execute_batch``, the real simulation; a
            module-level function, so Ray can ship it to the workers).

    Example:
        >>> with RayExecutor(workers=2) as ex:  # doctest: +SKIP
        ...     ticket = ex.submit([RunTask(run_id, config)])
        ...     ex.wait(timeout=10.0)
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        max_retries: int = 3,
        ship_code: bool = False,
        object_store_mb: int = 100,
        batch: BatchFunction = execute_batch,
    ) -> None:
        import ray

        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        self._watchdog: subprocess.Popen[bytes] | None = None
        if self._owns_ray:
            kwargs: dict[str, Any] = dict(runtime_env=worker_runtime_env(ship_code), logging_level="warning", log_to_driver=False)
            if address is None:  # "local": a new embedded Ray even if RAY_ADDRESS points elsewhere
                kwargs.update(address="local", num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, object_store_memory=object_store_mb * 1024 * 1024)
            else:
                _check_reachable(address)
                _check_credentials(address)
                kwargs.update(address=address)
            try:
                context = ray.init(**kwargs)
            except Exception as exc:  # unreachable address, wrong token, version mismatch: one line that says what to do
                raise ClusterError(_join_problem(address, exc)) from None
            if address is None:
                self._watchdog = _start_watchdog(context.address_info["session_dir"])
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        self._workers = max(1, workers or cluster_cpus)
        self._batch = batch
        self._remote = ray.remote(_ray_batch).options(num_cpus=1, max_retries=max_retries, retry_exceptions=False)
        self._in_flight: dict[Any, int] = {}
        self._tickets = itertools.count(1)
        self.address = address

    @property
    def workers(self) -> int:
        return self._workers

    def nodes(self) -> list[str]:
        """Node ids of the live nodes of the cluster."""
        return [n["NodeID"] for n in self._ray.nodes() if n.get("Alive")]

    def submit(self, tasks: Sequence[RunTask]) -> int:
        ticket = next(self._tickets)
        self._in_flight[self._remote.remote(list(tasks), self._batch)] = ticket
        return ticket

    def wait(self, timeout: float) -> list[Completion]:
        if not self._in_flight:
            return []
        refs = list(self._in_flight)
        ready, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return []
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)  # everything else already done too
        out: list[Completion] = []
        for ref in ready:
            ticket = self._in_flight.pop(ref)
            try:
                result: BatchResult = self._ray.get(ref)
                out.append(Completion.of(ticket, result))
            except self._ray.exceptions.RayError as exc:  # worker/node died beyond max_retries, object lost, ...
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                out.append(Completion(ticket, None, f"{type(exc).__name__}: {first}"))
        return out

    def cancel(self) -> None:
        for ref in list(self._in_flight):
            try:
                self._ray.cancel(ref, force=False)
            except Exception:  # already finished or its worker is gone: nothing to cancel
                pass
        self._in_flight.clear()

    def close(self) -> None:
        self.cancel()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        if self._watchdog is not None:  # it stops whatever of the session outlived shutdown, then exits
            self._watchdog.stdin.close()  # type: ignore[union-attr]
            self._watchdog = None

    def describe(self) -> str:
        where = f"cluster {self.address}" if self.address else "embedded local Ray"
        return f"{where}, {self._workers} workers, {len(self.nodes())} node(s)"


class ClusterError(RuntimeError):
    """Ray could not be started or joined; the message is one line that says what to check."""


def _start_watchdog(session_dir: str) -> "subprocess.Popen[bytes]":
    """The embedded Ray's watchdog (see ``_ray_watchdog``), in a session of its own so that a signal
    to the driver's process group does not reach it. Only this process holds the pipe's write end."""
    return subprocess.Popen(
        [sys.executable, "-I", str(WATCHDOG), session_dir], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
    )


def _join_problem(address: str | None, exc: BaseException) -> str:
    text = str(exc)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    if address is None:
        return f"could not start a local Ray: {first}"
    if isinstance(exc, _auth_error_types()) or any(m in text.lower() for m in _AUTH_MARKERS):
        return f"could not join the Ray cluster at {address}: {_auth_hint()}"
    hint = "check the address (ray status --address ...) and that the cluster runs the same Ray and Python versions"
    return f"could not join the Ray cluster at {address}: {first[:200]}; {hint}"


def _auth_hint() -> str:
    """What to do about a refused client, depending on whether it tried token authentication."""
    token = "RAY_AUTH_TOKEN=<the cluster's token> (or RAY_AUTH_TOKEN_PATH=<file>, default ~/.ray/auth_token; `ray get-auth-token` on the head prints it)"
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return f"the cluster did not accept this client's token (none found, or not the cluster's); set {token}"
    return f"the cluster uses token authentication; set RAY_AUTH_MODE=token and {token}"


def _auth_error_types() -> tuple[type[BaseException], ...]:
    try:
        from ray.exceptions import AuthenticationError
    except ImportError:
        return ()
    return (AuthenticationError,)


def _check_credentials(address: str) -> None:
    """Ask the cluster's GCS once whether it accepts this client (a token-auth cluster answers at once).

    ``ray.init`` would retry an unauthenticated connection for 20 s, printing a gRPC error
    a second, and then report "Failed to connect". The probe is Ray's own GCS call with
    Ray's own channel (TLS and token headers as ``ray.init`` would send them); these are
    Ray internals, so if they move in a Ray upgrade the probe is skipped, not the join.
    """
    text = address.removeprefix("ray://")
    if address.startswith("ray://") or text == "auto" or ":" not in text:
        return  # the Ray Client server or a local lookup: ray.init reports those quickly itself
    try:
        import grpc
        from ray._private.grpc_utils import init_grpc_channel
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:
        return
    try:
        channel = init_grpc_channel(text)
        try:
            stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=PROBE_TIMEOUT_S)
        finally:
            channel.close()
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise ClusterError(f"could not join the Ray cluster at {address}: {_auth_hint()}") from None
    except _auth_error_types():  # RAY_AUTH_MODE=token but no token at all
        raise ClusterError(f"could not join the Ray cluster at {address}: {_auth_hint()}") from None
    except Exception:  # noqa: BLE001 - a probe that cannot run leaves the verdict to ray.init
        return


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds on a wrong HOST:PORT (Ray itself retries the GCS for minutes)."""
    text = address.removeprefix("ray://")
    if text == "auto" or ":" not in text:
        return
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise ClusterError(f"could not join the Ray cluster at {address}: {port!r} is not a port; use HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(
            f"could not join the Ray cluster at {address}: {exc.strerror or exc}; is `ray start --head` running there "
            "(ray status --address HOST:PORT)?"
        ) from None


def worker_runtime_env(ship_code: bool = False) -> dict[str, Any]:
    """What workers need to import the project and find the driver's cost profiles."""
    env_vars = {"PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    if os.environ.get("FLUSHSWEEP_PROFILES"):
        env_vars["FLUSHSWEEP_PROFILES"] = os.environ["FLUSHSWEEP_PROFILES"]
    if ship_code:
        env_vars.pop("PYTHONPATH")
        if not IS_CHECKOUT:
            return {"py_modules": [str(PROJECT_ROOT / p) for p in ("workers", "storage", "sweep")], "env_vars": env_vars}
        return {"working_dir": str(PROJECT_ROOT), "excludes": SHIP_EXCLUDES, "env_vars": env_vars}
    return {"env_vars": env_vars}


__all__ = ["ClusterError", "PROJECT_ROOT", "RayExecutor", "worker_runtime_env"]
