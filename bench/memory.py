"""Peak memory at large M: flat in M, because samples are reduced in fixed-size chunks.

``peakmem_*`` reports the peak resident memory of the whole benchmark process: Python and
TensorFlow (most of it, about 0.9 GB), the compilation in ``setup``, and one ``estimate()`` call
at M samples per point for 32 points. The 2^16 and 2^18 results should be equal; an estimator that
held all M samples at once would need on the order of a gigabyte more at 2^18.
"""

from estimators import estimate

from .common import MODELS, POSTERIOR_IS, cached_model, data


class PeakMemEstimate:
    """Peak RSS of a process that compiles and runs ``posterior_is`` at M samples per point."""

    params = (list(MODELS), [2**16, 2**18])
    param_names = ("model", "M")
    timeout = 300

    def setup(self, model, M):
        self.model = cached_model(model)
        self.x = data(model)
        estimate(self.model, self.x, POSTERIOR_IS, M, seed=0)

    def peakmem_estimate(self, model, M):
        estimate(self.model, self.x, POSTERIOR_IS, M, seed=0).numpy()
