"""The fixed cost of a warm ``estimate()`` call, against a bare compiled function.

Users who call ``estimate`` in a loop (evaluation during training, many small batches) pay a
call's fixed cost every time: argument checks, cache lookups, the tf.function dispatch. At M = 1
on the linear-Gaussian benchmark model (N = 32, D = 16, d = 4) the compiled work is tiny, so the
call is almost all overhead. The reference is a bare XLA-compiled function that does the same
sampling and reduction as ``posterior_is`` at M = 1 (draw z ~ p(z|x), log weights, logsumexp),
called the ordinary way, as a user's own ``tf.function`` would be. Data are passed as a tensor
of the model's dtype, as in a training loop.
"""

import time

import numpy as np

from .common import METHODS, cached_model, data

NUM_SAMPLES = 1


def _bare_posterior_is(model):
    import tensorflow as tf

    from estimators import sampling

    @tf.function(jit_compile=True)
    def bare(x, seed):
        z, log_q = sampling.sample_and_log_prob(model.posterior(x), [NUM_SAMPLES], seed)
        log_w = model.prior.log_prob(z) + model.likelihood(z).log_prob(x) - log_q
        return tf.reduce_logsumexp(log_w, axis=0) - tf.math.log(float(NUM_SAMPLES))

    return bare


class TimeCallOverhead:
    """Seconds per warm call at M = 1: ``estimate()`` per method, and the bare function."""

    params = (list(METHODS),)
    param_names = ("method",)
    number = 50  # calls take about 0.3-1 ms: time 50 per sample
    repeat = (5, 10, 3.0)
    warmup_time = 0.0
    timeout = 120

    def setup(self, method):
        import tensorflow as tf

        from estimators import estimate

        self.estimate = estimate
        self.model = cached_model("linear_gaussian")
        self.x = tf.constant(data("linear_gaussian"))
        self.seed = tf.constant([0, 0], tf.int64)
        self.bare = _bare_posterior_is(self.model)
        for _ in range(3):  # compile both, and let the first calls' allocations settle
            self.estimate(self.model, self.x, method, NUM_SAMPLES, seed=0).numpy()
            self.bare(self.x, self.seed).numpy()

    def time_estimate(self, method):
        self.estimate(self.model, self.x, method, NUM_SAMPLES, seed=0).numpy()

    def time_bare_compiled_function(self, method):
        self.bare(self.x, self.seed).numpy()

    def track_overhead_ratio(self, method):
        """Median seconds of a warm ``estimate()`` call over the bare function's, measured side
        by side in one process (rounds interleaved), so machine noise mostly cancels."""
        calls, rounds = 50, 9
        timings = {"estimate": [], "bare": []}
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(calls):
                self.estimate(self.model, self.x, method, NUM_SAMPLES, seed=0).numpy()
            timings["estimate"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(calls):
                self.bare(self.x, self.seed).numpy()
            timings["bare"].append(time.perf_counter() - start)
        return float(np.median(timings["estimate"]) / np.median(timings["bare"]))

    track_overhead_ratio.unit = "ratio"
