"""Dask clusters, and an executor that runs a function's calls on one.

    from estimators.distributed import cluster_client
    with cluster_client(workers=2) as client:          # or scheduler="tcp://HOST:8786"
        df = sweep(models, methods, num_samples, repeats, data, out="reports/mine", client=client)

``estimators run --workers N`` / ``--scheduler tcp://HOST:PORT`` do the same. Without a client
the sweep runs in-process; with one, it gives the same table: same cells, rows and truths;
estimates equal up to float32 round-off, which comes from the workers' TensorFlow thread count
(it changes the order of floating-point sums). HMC chains (AIS, BDMC) amplify that round-off
into different, equally valid chains: equal in distribution, and equal digit by digit only under
equal thread counts (``--workers 1`` reproduces an in-process run exactly).

``DaskExecutor`` is handed a function and its arguments, nothing else: it imports nothing of the
sweep (benchopt's ``parallel_backends`` have this shape). The sweep hands it
``sweep.cell.compute_truth`` and ``sweep.cell.compute_cell`` with their arguments; each task
carries all it needs (the model pickles without the library's caches, tens of kB), so no task
depends on another's result. The calling process writes each result as it arrives: workers need
no shared filesystem, and an interrupted run resumes, with a cluster or without.

Failures: a worker that dies mid-task (killed, out of memory) is replaced by its nanny and the
scheduler reruns its task elsewhere (``distributed.scheduler.allowed-failures`` deaths per task,
then ``ClusterError``). A ``ValueError`` (bad input: deterministic) is returned as a value, never
retried, and raised once in the calling process. Other exceptions are retried ``TASK_RETRIES``
times (transient trouble), then raised.

Workers import TensorFlow inside their first task, after ``local_cluster`` has set its thread
counts in their environment: N workers on C cores get C // N intra- and inter-op threads each,
so they do not oversubscribe the cores. Timing: tasks that run at the same time on one machine
share its cores and memory bandwidth; each result comes back with the worker that ran it and
how many tasks its host ran at once (``host_concurrency``), and the report and ``compare`` say
when seconds are not comparable with a sequential run.

Nothing here imports TensorFlow at module level: the scheduler side needs none.
"""

import os
import socket
import time
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass

CONNECT_TIMEOUT = 10  # seconds to reach a scheduler
WORKER_TIMEOUT = 60  # seconds to wait for a scheduler's first worker
TASK_RETRIES = 2  # reruns of a task that raised something other than ValueError
IN_FLIGHT_PER_THREAD = 4  # cell tasks submitted ahead, per worker thread
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
NUMERIC_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class ClusterError(RuntimeError):
    """The cluster cannot be reached, has no workers, or kept losing workers on one task."""


# --------------------------------------------------------------------------- clusters


def available_cores():
    """CPU cores this process may use (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def worker_threads(workers, cores=None):
    """TensorFlow threads per worker so that ``workers`` processes fill ``cores`` once."""
    return max(1, (available_cores() if cores is None else cores) // workers)


def local_cluster(workers):
    """A ``LocalCluster`` of ``workers`` spawned processes (TensorFlow is not fork-safe), one
    Dask thread each (one cell at a time), TensorFlow and BLAS threads = cores // workers."""
    import dask
    from distributed import LocalCluster

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer; got {workers!r}")
    threads = str(worker_threads(workers))
    numeric = {name: threads for name in NUMERIC_THREAD_VARIABLES}
    saved = {name: os.environ.get(name) for name in numeric}
    config = {
        "distributed.worker.multiprocessing-method": "spawn",
        # BLAS reads these when it loads, so they are set before the process starts
        # (the nanny sets them in its own environment too: restored below).
        "distributed.nanny.pre-spawn-environ": numeric,
    }
    try:
        with dask.config.set(config):
            return LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                env={
                    **{name: threads for name in THREAD_VARIABLES},
                    "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
                },
            )
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def connect(scheduler):
    """A ``Client`` of the scheduler at ``scheduler`` (e.g. tcp://HOST:8786) with at least one
    worker; ``ClusterError`` with one line when it cannot be reached within ``CONNECT_TIMEOUT``
    seconds or has no worker within ``WORKER_TIMEOUT``."""
    from distributed import Client

    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ValueError(f"scheduler must be an address such as tcp://HOST:8786; got {scheduler!r}")
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {reason}") from None
    try:
        client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
    except (OSError, TimeoutError) as err:
        client.close()
        raise ClusterError(
            f"the Dask scheduler at {scheduler} has no worker after "
            f"{WORKER_TIMEOUT} s ({type(err).__name__}); start some with "
            f"`dask worker {scheduler} --nthreads 1`"
        ) from None
    return client


@contextmanager
def cluster_client(workers=None, scheduler=None):
    """``with cluster_client(workers=N) as client`` (a local cluster, closed at the end), or
    ``scheduler="tcp://HOST:PORT"`` (an existing one, left running); neither: None (in-process)."""
    if workers is not None and scheduler is not None:
        raise ValueError(
            "give either workers (a local cluster) or scheduler (an existing cluster), not both"
        )
    if scheduler is not None:
        client = connect(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    if workers is None:
        yield None
        return
    import logging

    from distributed import Client

    cluster = local_cluster(workers)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        # Workers that ran TensorFlow take a few seconds to exit; the nanny then ends them
        # and warns about it: nothing to tell the user.
        nanny_log = logging.getLogger("distributed.nanny")
        level = nanny_log.level
        nanny_log.setLevel(logging.ERROR)
        try:
            cluster.close()
        finally:
            nanny_log.setLevel(level)


def describe_cluster(client):
    """What the cluster was: scheduler, workers, threads, and per host its workers and threads."""
    info = client.scheduler_info(n_workers=-1)
    hosts = {}
    for worker in info.get("workers", {}).values():
        host = hosts.setdefault(worker["host"], {"workers": 0, "threads": 0})
        host["workers"] += 1
        host["threads"] += int(worker["nthreads"])
    return {
        "scheduler": client.scheduler.address,
        "workers": len(info.get("workers", {})),
        "threads": sum(h["threads"] for h in hosts.values()),
        "hosts": hosts,
        "dashboard": client.dashboard_link or None,
    }


def probe_workers(client):
    """One task per worker (so that all of them import TensorFlow at once, at the start): the
    distinct worker environments (TensorFlow version, device, thread settings), each with its
    number of workers and their hosts. ``sweep`` resolves ``jit_compile="auto"`` from these: XLA
    when every worker has a GPU, else ``sweep.PER_METHOD`` (the mode measured per model and
    method, in the calling process)."""
    workers = list(client.scheduler_info(n_workers=-1).get("workers", {}))
    if not workers:
        raise ClusterError(f"the Dask cluster at {client.scheduler.address} has no workers")
    futures = [
        client.submit(_worker_environment, pure=False, workers=[worker], allow_other_workers=True)
        for worker in workers
    ]
    distinct = {}
    for environment in client.gather(futures):
        host = environment.pop("host")
        key = repr(sorted(environment.items()))
        entry = distinct.setdefault(key, {**environment, "workers": 0, "hosts": []})
        entry["workers"] += 1
        if host not in entry["hosts"]:
            entry["hosts"].append(host)
    return list(distinct.values())


def _worker_environment():
    tf = _worker_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "host": socket.gethostname(),
        "tensorflow": tf.__version__,
        "device": "GPU" if gpus else "CPU",
        "gpus": len(gpus),
        "cpu_count": available_cores(),
        "env": {
            k: os.environ[k]
            for k in (*THREAD_VARIABLES, *NUMERIC_THREAD_VARIABLES, "CUDA_VISIBLE_DEVICES")
            if k in os.environ
        },
    }


# --------------------------------------------------------------------------- the executor


@dataclass(frozen=True)
class TaskFailure:
    """A ValueError raised in a task, returned as a value so that Dask does not retry it."""

    where: str
    message: str


def _worker_tensorflow():
    """Import TensorFlow in a worker (first task only). It takes its thread counts from
    TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS, which ``local_cluster`` put in the
    worker's environment (or the user did, for ``dask worker``). Its native start-up logging
    stays quiet as in the CLI (``quiet_tensorflow``) unless TF_CPP_MIN_LOG_LEVEL says otherwise
    (``--verbose`` sets it to 0 for local workers)."""
    from estimators.environment import quiet_tensorflow

    quiet_tensorflow(os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0")
    import tensorflow as tf

    return tf


def _run_task(function, where, args):
    """On a worker: (function(*args), the worker's address), or a TaskFailure."""
    from distributed import get_worker

    _worker_tensorflow()
    try:
        value = function(*args)
    except ValueError as err:
        return TaskFailure(where, str(err))
    return value, get_worker().address


class DaskExecutor:
    """Runs calls of one function on a Dask cluster, handing each result back as it arrives.

    It knows nothing of what it runs: ``map(function, calls, on_result)`` with calls
    [(name, args)] submits ``function(*args)`` as one task per call (each task carries its
    arguments, so the scheduler hands queued tasks to whichever worker is free, and a task lost
    with its worker is simply rerun), at most ``IN_FLIGHT_PER_THREAD`` per worker thread at a
    time, and calls ``on_result(name, value, place)`` in this process as each finishes, where
    place = {"worker": address, "host_concurrency": threads of that worker's host}. Unfinished
    tasks are cancelled on the way out, whatever the exit (an error, an interrupt).
    """

    def __init__(self, client):
        self.client = client

    def describe(self):
        """The cluster (``describe_cluster``) and its workers' distinct environments."""
        return {
            **describe_cluster(self.client),
            "worker_environments": probe_workers(self.client),
        }

    def map(self, function, calls, on_result, priority=0):
        from distributed import as_completed

        run = uuid.uuid4().hex[:8]
        waiting, pending, finished = deque(calls), {}, as_completed()
        limit, concurrency = _InFlightLimit(self.client), _HostConcurrency(self.client)

        def submit_ready():
            while waiting and len(pending) < limit.now():
                name, args = waiting.popleft()
                try:
                    future = self.client.submit(
                        _run_task,
                        function,
                        name,
                        args,
                        pure=False,
                        retries=TASK_RETRIES,
                        priority=priority,
                        key=f"{function.__name__}-{name}-{run}",
                    )
                except Exception as err:  # pickling raises whatever the offending object raises
                    raise ValueError(
                        f"{name}: its arguments cannot be sent to the workers: they do not "
                        f"pickle ({type(err).__name__}: {err})"
                    ) from None
                pending[future.key] = (future, name)
                finished.add(future)

        submit_ready()
        try:
            for future in finished:
                future, name = pending.pop(future.key)
                value, worker = _result(future, name)
                on_result(
                    name, value, {"worker": worker, "host_concurrency": concurrency.of(worker)}
                )
                submit_ready()
        finally:
            self.client.cancel([future for future, _ in pending.values()])


class _InFlightLimit:
    """How many cell tasks may be submitted and unfinished at once: ``IN_FLIGHT_PER_THREAD``
    per worker thread (asks the scheduler again every ``REFRESH`` seconds: workers come and go)."""

    REFRESH = 10.0

    def __init__(self, client):
        self.client, self.limit, self.checked = client, 0, -float("inf")

    def now(self):
        if time.monotonic() - self.checked > self.REFRESH:
            threads = sum(self.client.nthreads().values())
            self.limit, self.checked = IN_FLIGHT_PER_THREAD * max(threads, 1), time.monotonic()
        return self.limit


def _result(future, what):
    """The task's result; a TaskFailure becomes the ValueError it was, a task that killed its
    workers a ClusterError."""
    from distributed import KilledWorker

    try:
        result = future.result()
    except KilledWorker as err:
        raise ClusterError(
            f"{what}: the workers running it died repeatedly (out of memory?): {err}"
        ) from None
    if isinstance(result, TaskFailure):
        raise ValueError(f"{result.where}: {result.message}")
    return result


class _HostConcurrency:
    """How many cells a worker's host runs at once: the threads of all workers on that host
    (asks the scheduler again for a host it has not seen)."""

    def __init__(self, client):
        self.client, self.threads = client, {}

    def of(self, worker):
        from distributed.comm import get_address_host

        host = get_address_host(worker)
        if host not in self.threads:
            self.threads = {
                h: info["threads"] for h, info in describe_cluster(self.client)["hosts"].items()
            }
        return self.threads.get(host, 1)
