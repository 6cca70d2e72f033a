"""Sweeps on a Dask cluster: one task per cell; the calling process keeps the results.

    from estimators.distributed import cluster_client
    with cluster_client(workers=2) as client:          # or scheduler="tcp://HOST:8786"
        df = sweep(models, methods, num_samples, repeats, data, out="reports/mine", client=client)

``estimators run --workers N`` / ``--scheduler tcp://HOST:PORT`` do the same. Without a client
the sweep runs in-process, as before; with one, it gives the same table: same cells, rows and
truths; estimates equal up to float32 round-off, which comes from the workers' TensorFlow thread
count (it changes the order of floating-point sums). HMC chains (AIS, BDMC) amplify that
round-off into different, equally valid chains: equal in distribution, and equal digit by digit
only under equal thread counts (``--workers 1`` reproduces an in-process run exactly).

How a distributed sweep runs (``run_cells``):
- Every task carries all it needs (no task depends on another's result, so the scheduler hands
  queued cells to whichever worker is free, and a task lost with its worker is simply rerun):
  the model's pickle (without the library's caches; tens of kB), its data and fingerprint
  (``ModelPayload``), the truth, and the cell's names and numbers. A worker unpickles a model
  once and keeps it, with its compiled functions, in a module-level dict keyed by the
  fingerprint (``_STATES``), so the next M of a model on the same worker does not recompile
  (``worker_trace_counts`` counts the traces).
- Truths: one task per model whose truth is not yet in ``out/truths/`` (a worker computes it,
  with that worker's reference cache); the calling process writes it, then submits the
  model's cells with it.
- Cells: one task each, described by names and numbers (``CellTask``); the worker rebuilds the
  ``_Cell`` and checks that its settings (its fingerprint's inputs) match the caller's (same
  code, model and data), then runs exactly the in-process code (``sweep._compute_cell``). Every
  cell draws from its own seed, so a recomputed cell gives the same numbers on any worker with
  the same thread count.
- The calling process writes each finished cell to ``out/cells/`` as it arrives
  (``as_completed``): workers need no shared filesystem, and an interrupted run resumes, with a
  cluster or without.
- Failures: a worker that dies mid-task (killed, out of memory) is replaced by its nanny and
  the scheduler reruns its task elsewhere (``distributed.scheduler.allowed-failures`` deaths per
  task, then ``ClusterError``). A ``ValueError`` (bad input: deterministic) is returned as a
  value, never retried, and raised once in the calling process. Other exceptions are retried
  ``TASK_RETRIES`` times (transient trouble), then raised.

Workers import TensorFlow inside their first task, after ``local_cluster`` has set its thread
counts in their environment: N workers on C cores get C // N intra- and inter-op threads each,
so they do not oversubscribe the cores. Timing: cells that run at the same time on one machine
share its cores and memory bandwidth; each cell's record says which host timed it and how many
cells that host ran at once (``host_concurrency``), and the report and ``compare`` say when
seconds are not comparable with a sequential run.

Nothing here imports TensorFlow at module level: the scheduler side needs none.
"""

import hashlib
import os
import pickle
import socket
import time
import uuid
from collections import Counter, deque
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


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class ModelPayload:
    """A model as it travels to the workers: pickled (no caches), with its data. ``key`` names
    it on the workers: its fingerprint, or (a model that cannot be fingerprinted, in a sweep
    without ``out``) a hash of its pickle and data."""

    name: str
    fingerprint: str | None
    key: str
    model: bytes
    x: object  # numpy [N, D]
    latents: object  # numpy [N, d] or None

    @classmethod
    def of(cls, state):
        import cloudpickle
        import numpy as np

        try:
            blob = cloudpickle.dumps(state.model)
        except Exception as err:  # pickling raises whatever the offending object raises
            raise ValueError(
                f"model {state.name} cannot be sent to the workers: it does not "
                f"pickle ({type(err).__name__}: {err})"
            ) from None
        x = state.x.numpy()
        latents = None if state.latents is None else state.latents.numpy()
        key = state.fingerprint
        if key is None:
            digest = hashlib.sha256(state.name.encode() + blob + np.ascontiguousarray(x).tobytes())
            if latents is not None:
                digest.update(np.ascontiguousarray(latents).tobytes())
            key = "unfingerprinted-" + digest.hexdigest()
        return cls(state.name, state.fingerprint, key, blob, x, latents)


@dataclass(frozen=True)
class CellTask:
    """What a worker needs, besides the model, to rebuild a ``_Cell``: names and numbers."""

    method: str  # canonical spec
    num_samples: int
    repeats: int
    seed: int
    jit_compile: bool
    min_chunk: int
    max_chunk: int
    settings: dict  # the caller's cell settings: the worker's rebuilt cell must have the same

    @classmethod
    def of(cls, cell):
        return cls(
            cell.method,
            cell.num_samples,
            cell.repeats,
            cell.seed,
            cell.jit_compile,
            cell.min_chunk,
            cell.max_chunk,
            cell.settings,
        )


@dataclass(frozen=True)
class TaskFailure:
    """A ValueError raised in a task, returned as a value so that Dask does not retry it."""

    where: str
    message: str


_STATES = {}  # payload key -> sweep._ModelState: a worker's models and their compiled functions
_WARMED = set()  # compiled shapes this worker has warmed up (see sweep._compute_cell)


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


def _worker_state(payload):
    """This worker's ``_ModelState`` of the payload's model, built once per worker."""
    state = _STATES.get(payload.key)
    if state is None:
        _worker_tensorflow()
        from estimators import sweep

        model = pickle.loads(payload.model)
        state = sweep._ModelState(payload.name, model, payload.x, latents=payload.latents)
        if state.fingerprint != payload.fingerprint:
            raise ValueError(
                f"model {payload.name} differs on worker {socket.gethostname()} "
                "from the caller's (another version of estimators or TensorFlow?)"
            )
        _STATES[payload.key] = state
    return state


def _truth_task(payload):
    """(log p(x) [N], standard error [N]) of the payload's model, or a TaskFailure."""
    try:
        return _worker_state(payload).truth()
    except ValueError as err:
        return TaskFailure(f"truth of {payload.name}", str(err))


def _cell_task(task, payload, truth):
    """Run one cell on this worker: (frame, record), or a TaskFailure."""
    if isinstance(truth, TaskFailure):
        return truth
    where = f"{payload.name}/{task.method}/{task.num_samples}"
    try:
        from distributed import get_worker

        from estimators import methods as registry
        from estimators import sweep

        state = _worker_state(payload)
        if state._truth is None:
            state._truth = truth
        cell = sweep._Cell(
            state,
            registry.parse(task.method),
            task.num_samples,
            task.repeats,
            task.seed,
            task.jit_compile,
            task.min_chunk,
            task.max_chunk,
        )
        if cell.settings != task.settings:
            differ = sorted(k for k, v in cell.settings.items() if task.settings.get(k) != v)
            raise ValueError(
                f"cell {where} has another configuration on worker "
                f"{socket.gethostname()} than in the calling process "
                f"({', '.join(differ)} differ: another version of estimators?)"
            )
        frame, record = sweep._compute_cell(cell, _WARMED)
    except ValueError as err:
        return TaskFailure(where, str(err))
    return frame, {**record, "worker": get_worker().address}


def worker_trace_counts():
    """{model name: {compiled function: times traced}} on this worker (run it with
    ``client.run(worker_trace_counts)``): 1 everywhere means no recompilation across cells."""
    counts = {}
    for state in _STATES.values():
        found = counts.setdefault(state.name, {})
        for cache_name, cache in getattr(state.model, "_cache", {}).items():
            for key, fn in _compiled_functions(cache):
                found[f"{cache_name}{key}"] = fn.experimental_get_tracing_count()
    return counts


def _compiled_functions(value, path=""):
    if hasattr(value, "experimental_get_tracing_count"):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _compiled_functions(item, f"{path}[{key!r}]")
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from _compiled_functions(item, f"{path}[{index}]")


# --------------------------------------------------------------------------- the caller's side


def run_cells(client, cells, on_truth, on_cell):
    """Compute ``cells`` (sweep ``_Cell``s) on the cluster. As each result arrives (in any
    order): ``on_truth(state, (truth, truth_se))`` for a truth computed on a worker (its model's
    cells become ready then), ``on_cell(cell, frame, record)`` for a cell; the record gains
    the ``worker`` and ``host_concurrency`` (cells its host could run at once) besides
    ``host``. Cells are submitted in order, at most ``IN_FLIGHT_PER_THREAD`` per worker thread
    at a time (each task carries its model's pickle: this bounds the scheduler's memory).
    Unfinished tasks are cancelled on the way out, whatever the exit (an error, an interrupt)."""
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]
    states = {cell.state.name: cell.state for cell in cells}
    payloads = {name: ModelPayload.of(state) for name, state in states.items()}
    truths = {name: state.stored_truth() for name, state in states.items()}
    pending, finished = {}, as_completed()  # task key -> (future, kind, the cell or model state)
    ready = deque(cell for cell in cells if truths[cell.state.name] is not None)  # in order
    blocked = {}  # model name -> its cells, until its truth arrives
    for cell in cells:
        if truths[cell.state.name] is None:
            blocked.setdefault(cell.state.name, []).append(cell)
    limit, in_flight = _InFlightLimit(client), Counter()

    def submit(kind, entry, function, *args, **options):
        future = client.submit(function, *args, pure=False, retries=TASK_RETRIES, **options)
        pending[future.key] = (future, kind, entry)
        in_flight[kind] += 1
        finished.add(future)

    def submit_ready_cells():
        while ready and in_flight["cell"] < limit.now():
            cell = ready.popleft()
            submit(
                "cell",
                cell,
                _cell_task,
                CellTask.of(cell),
                payloads[cell.state.name],
                truths[cell.state.name],
                key=f"cell-{cell.cell_id}-{run}",
            )

    for name, truth in truths.items():  # truths first: their cells wait for them
        if truth is None:
            submit(
                "truth",
                states[name],
                _truth_task,
                payloads[name],
                key=f"truth-{name}-{run}",
                priority=1,
            )
    submit_ready_cells()
    concurrency = _HostConcurrency(client)
    try:
        for future in finished:
            future, kind, entry = pending.pop(future.key)
            in_flight[kind] -= 1
            result = _result(
                future, f"cell {entry.cell_id}" if kind == "cell" else f"the truth of {entry.name}"
            )
            if kind == "truth":
                on_truth(entry, result)
                truths[entry.name] = result
                ready.extend(blocked.pop(entry.name))
            else:
                frame, record = result
                record["host_concurrency"] = concurrency.of(record["worker"])
                on_cell(entry, frame, record)
            submit_ready_cells()
    finally:
        client.cancel([future for future, _, _ in pending.values()])


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
