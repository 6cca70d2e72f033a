"""``dynesty``: a peer library, dynesty's static nested sampling (Speagle 2020), one run per row.

    sampler = dynesty.NestedSampler(log p(x_n | .), prior transform, d, nlive=K, pool=...)
    sampler.run_nested(dlogz=...)
    log p^(x_n) = results.logz[-1],   se = results.logzerr[-1]

The prior enters as dynesty expects, a transform of the unit cube: for a Gaussian prior
N(m, L L^T), z = m + L Phi^-1(u) (``ndtri``); other priors are refused with a ValueError. The
likelihood is log p(x_n | z).

Batching. dynesty evaluates likelihoods through a user ``pool``'s ``map``: the initial live points
as map(loglikelihood, points), and every later batch of ``queue`` proposals as
map(sampler's evolve function, arguments), each evolve function calling the likelihood one point
at a time (a random walk or slice sampler calls it many times). ``BatchingPool.map`` runs the
mapped calls in worker threads; their likelihood calls meet in a ``Batcher``, which evaluates
them together, in one compiled TensorFlow call, once every running worker is waiting for a
value. The numbers do not depend on the batching: each value is that of its own point, and
dynesty seeds each proposal itself.

Cost: ``evaluations`` is dynesty's own count of likelihood calls (``ncall``, per row), and the
rows run one after another (nested sampling is sequential; ``queue`` proposals at a time).
Seeds: row n's generator is ``numpy.random.default_rng((seed, n))``. Needs the optional package
dynesty (``pip install -e ".[peers]"``); without it the registry's applicability check says so.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from estimators.algorithms.compiled import cached_function

tfd = tfp.distributions

MIN_BATCH = 8  # batches are padded to a power of two >= this: few compiled shapes under XLA


def run(spec, model, x, num_live, seed, context):
    try:
        import dynesty
    except ImportError:  # check_applicable says so first; this is for direct calls
        raise ValueError('dynesty is not installed: pip install -e ".[peers]"') from None
    from scipy.special import ndtri

    options = spec.kwargs
    loc, tril = gaussian_prior(model)
    batch_fn = compiled(model, context.jit_compile)
    d = model.latent_dim
    seed_words = [int(s) & (2**63 - 1) for s in np.asarray(seed)]
    estimates, errors, calls = [], [], []
    for row in range(int(x.shape[0])):
        x_row = x[row : row + 1]
        batcher = Batcher(lambda z, x_row=x_row: evaluate(batch_fn, z, x_row, model.dtype))
        with BatchingPool(batcher, options["queue"]) as pool:
            sampler = dynesty.NestedSampler(
                batcher.call,
                lambda u: loc + tril @ ndtri(u),
                d,
                nlive=num_live,
                bound=options["bound"],
                sample=options["sample"],
                pool=pool,
                queue_size=options["queue"],
                use_pool={
                    "prior_transform": False,
                    "loglikelihood": True,
                    "propose_point": True,
                    "update_bound": False,
                },
                rstate=np.random.default_rng([*seed_words, row]),
            )
            sampler.run_nested(dlogz=options["dlogz"], print_progress=False)
        results = sampler.results
        estimates.append(results["logz"][-1])
        errors.append(results["logzerr"][-1])
        calls.append(sampler.ncall)
    dtype = model.dtype
    return tf.constant(estimates, dtype), {
        "se": tf.constant(errors, dtype),
        "evaluations": tf.constant(np.asarray(calls, np.float64), dtype),
    }


def gaussian_prior(model):
    """(m [d], L [d, d]) of a Gaussian prior N(m, L L^T) as float64 NumPy; ValueError otherwise."""
    prior = model.prior
    if not isinstance(prior, tfd.MultivariateNormalLinearOperator):
        raise ValueError(
            f"dynesty maps the unit cube onto the prior, which it can do here for a Gaussian "
            f"prior only; {type(model).__name__}'s prior is a {type(prior).__name__}"
        )
    d = model.latent_dim
    loc = np.zeros(d) if prior.loc is None else np.asarray(prior.loc, np.float64)
    return np.broadcast_to(loc, [d]).copy(), np.asarray(prior.scale.to_dense(), np.float64)


def compiled(model, jit_compile):
    """fn(z [B, d], x [1, D]) -> log p(x | z_b) [B] in the model's dtype."""

    def make():
        def compute(z, x):
            return model.likelihood(z).log_prob(x)

        return compute

    signature = [
        tf.TensorSpec([None, model.latent_dim], model.dtype),
        tf.TensorSpec([1, model.data_dim], model.dtype),
    ]
    return cached_function(
        model, "dynesty", "log_likelihood", make, jit_compile=jit_compile, input_signature=signature
    )


def evaluate(batch_fn, points, x_row, dtype):
    """log p(x | z) for points [B, d] (float64 NumPy), padded to a power of two >= MIN_BATCH."""
    size = len(points)
    padded = max(MIN_BATCH, 1 << (size - 1).bit_length())
    z = np.zeros((padded, points.shape[1]))
    z[:size] = points
    values = batch_fn(tf.constant(z, dtype), x_row).numpy().astype(np.float64)[:size]
    return np.where(np.isnan(values), -np.inf, values)


class Batcher:
    """Gathers the likelihood calls of concurrent workers into one batched evaluation.

    ``call(z)`` (a worker's likelihood call) waits until every running worker is waiting for a
    value, then one of them evaluates all waiting points at once with ``evaluate(points [B, d])``.
    ``start()`` / ``stop()`` count the running workers (``BatchingPool.map`` calls them)."""

    def __init__(self, evaluate):
        self.evaluate = evaluate
        self.condition = threading.Condition()
        self.running = 0
        self.pending = {}  # ticket -> point
        self.results = {}  # ticket -> value or exception
        self.tickets = 0

    def start(self):
        with self.condition:
            self.running += 1

    def stop(self):
        with self.condition:
            self.running -= 1
            self.flush_if_all_wait()

    def call(self, z):
        with self.condition:
            if self.running == 0:  # called outside a pool's map: evaluate it alone
                return float(self.evaluate(np.asarray(z, np.float64)[None])[0])
            ticket = self.tickets
            self.tickets += 1
            self.pending[ticket] = np.asarray(z, np.float64)
            self.flush_if_all_wait()
            while ticket not in self.results:
                self.condition.wait()
            value = self.results.pop(ticket)
        if isinstance(value, BaseException):
            raise value
        return value

    def flush_if_all_wait(self):
        """With the lock held: evaluate the pending points once every running worker waits."""
        if not self.pending or len(self.pending) < self.running:
            return
        tickets = list(self.pending)
        points = np.stack([self.pending.pop(t) for t in tickets])
        try:
            values = self.evaluate(points)
            self.results.update((t, float(v)) for t, v in zip(tickets, values, strict=True))
        except Exception as err:  # every waiting worker raises it
            self.results.update((t, err) for t in tickets)
        self.condition.notify_all()


class BatchingPool:
    """A pool for dynesty whose ``map`` runs the calls on ``size`` worker threads (kept for the
    pool's life), so that their likelihood calls are batched by ``batcher`` (see the module
    docstring). A context manager: leaving it stops the threads."""

    def __init__(self, batcher, size):
        self.batcher = batcher
        self.size = int(size)
        self.executor = ThreadPoolExecutor(max_workers=self.size)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.executor.shutdown(wait=True)

    def map(self, function, iterable):
        items = list(iterable)
        results = [None] * len(items)
        indices = iter(range(len(items)))
        take = threading.Lock()

        def work():
            try:
                while True:
                    with take:
                        index = next(indices, None)
                    if index is None:
                        return
                    results[index] = function(items[index])
            finally:
                self.batcher.stop()

        workers = min(self.size, len(items))
        for _ in range(workers):  # counted before any starts: no batch is flushed half full
            self.batcher.start()
        futures = [self.executor.submit(work) for _ in range(workers)]
        for future in futures:
            future.result()  # re-raises a worker's exception
        return results
