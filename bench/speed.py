"""Speed of the compiled estimator: seconds per ``estimate()`` call, per model x method x M.

Each call estimates log p(x) for NUM_POINTS = 32 data points with M samples per point. The
compilation happens in ``setup`` (a warm-up call at M = 1: one compiled function serves every M),
so the timed call is sampling, log weights and the chunked reduction, plus the fixed Python cost
of a call. M = 1 shows that fixed cost (it still runs one chunk of 256 samples); M = 2^16 shows
the per-sample throughput (256 chunks). Compilation itself is timed in ``compilation.py``.
"""

from estimators import estimate

from .common import METHODS, MODELS, cached_model, data


class TimeEstimate:
    """Seconds per compiled ``estimate(model, x, method, M)`` call (x: 32 points)."""

    params = (list(MODELS), list(METHODS), [1, 2**16])
    param_names = ("model", "method", "M")
    number = 1  # one call per sample: calls take 3 ms to 1 s
    repeat = (3, 6, 3.0)  # 3 to 6 samples per round, stopping after 3 s
    rounds = 2  # two processes per parameter set, interleaved with the others
    warmup_time = 0.0  # setup already made a warm call
    timeout = 300

    def setup(self, model, method, M):
        # asv may call setup again before each sample: the model is cached for the whole
        # process, so only the first call compiles; later ones are a cheap warm call.
        self.model = cached_model(model)
        self.x = data(model)
        estimate(self.model, self.x, method, 1, seed=0)

    def time_estimate(self, model, method, M):
        estimate(self.model, self.x, method, M, seed=0).numpy()
