"""Compilation cost: seconds for the first ``estimate()`` call on a new model.

That first call traces the estimator into a graph and compiles it with XLA, then runs it once at
M = 1 (a chunk of one sample); later calls reuse the compiled function (from M = 256 on, one
function serves every M; see ``speed.py``). Each sample
builds a new model instance (milliseconds), so the per-model cache of compiled estimators is
always cold. TensorFlow's one-off start-up is paid in ``setup``, not in the first sample.
"""

from estimators import estimate

from .common import MODELS, POSTERIOR_IS, build_model, data, warm_up_tensorflow


class TimeCompile:
    """Seconds to trace + XLA-compile + run once ``posterior_is`` on a fresh model."""

    params = (list(MODELS),)
    param_names = ("model",)
    number = 1  # every call must compile from scratch
    repeat = 4
    rounds = 1
    warmup_time = 0.0
    timeout = 300

    def setup(self, model):
        warm_up_tensorflow()
        self.x = data(model)

    def time_compile(self, model):
        estimate(build_model(model), self.x, POSTERIOR_IS, 1, seed=0).numpy()
