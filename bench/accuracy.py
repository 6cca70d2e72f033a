"""Accuracy at fixed seeds: |bias|, variance and inefficiency (M/ESS) of every estimator.

Every number is computed once per commit, in ``setup_cache`` (one TensorFlow process): each of
the NUM_POINTS data points is estimated REPEATS times with independent samples, and compared with
the model's exact log p(x) (closed form for the GMM and linear-Gaussian models, grid quadrature
for the 2-d infinite mixture). The ``track_*`` functions only look the numbers up, so their
processes start without TensorFlow.

Seeds are fixed, so on one machine the numbers change only when the code changes. asv reads
lower as better, and every quantity here is one where lower is better:

    track_abs_bias      |mean(log p^ - log p)| over points and repeats        nats
    track_variance      mean over points of the variance across repeats     nats^2
    track_m_over_ess    mean over points and repeats of M / ESS (Kish)      >= 1; 1 = perfect weights

For ``elbo`` the "bias" is the ELBO's gap below log p(x) (the KL divergence to the posterior).
The infinite mixture's posterior_is/elbo use the fixed linear q(z|x) of ``common.py``.
Values are rounded to well below any meaningful change (1e-4 nats, 1e-6 nats^2), so float32
round-off, e.g. from reordered operations, is not reported as a change.

Reading a comparison: log p^ is biased low (E log p^ <= log p(x), Jensen), so a bug that pushes
estimates up can shrink |bias| at small M and be listed as an *improvement*. At fixed seeds an
accuracy number only moves when the code does, so treat unexpected improvements as suspect too.
The exact cases (``posterior_is`` and ``elbo`` with the exact posterior of the GMM and
linear-Gaussian models: |bias| = variance = 0, M/ESS = 1) are the sharpest sentinels: any shift
of the estimate, in either direction, shows up there as a change from 0.
"""

import numpy as np

from .common import METHODS, MODELS, cached_model, data

ACCURACY_M = [16, 256]
REPEATS = 64
SEED = 7


def _accuracy(num_samples, log_p_hat, log_ess, truth):
    """The three tracked numbers from estimates [REPEATS, N], log ESS [REPEATS, N], truth [N]."""
    error = log_p_hat - truth
    return {
        "abs_bias": round(float(abs(error.mean())), 4),
        "variance": round(float(log_p_hat.var(axis=0, ddof=1).mean()), 6),
        "m_over_ess": round(float(np.mean(num_samples / np.exp(log_ess))), 4),
    }


class TrackAccuracy:
    """Bias, variance and M/ESS per model x method x M (see the module docstring)."""

    params = (list(MODELS), list(METHODS), ACCURACY_M)
    param_names = ("model", "method", "M")
    timeout = 900

    def setup_cache(self):
        """Run every (model, method, M) once; return plain numbers keyed by the parameters."""
        from estimators import estimate  # TensorFlow: imported here only, see the docstring

        results = {}
        for model_name in MODELS:
            model = cached_model(model_name)
            x = data(model_name)
            truth = np.asarray(model.log_marginal(x), np.float64)
            # Repeats are rows: the data tiled REPEATS times, each row with its own samples.
            x_rep = np.tile(x, (REPEATS, 1))
            for method in METHODS:
                for m in ACCURACY_M:
                    log_p_hat, diag = estimate(
                        model, x_rep, method, m, seed=SEED, return_diagnostics=True
                    )
                    log_p_hat = np.asarray(log_p_hat, np.float64).reshape(REPEATS, -1)
                    log_ess = np.log(np.asarray(diag["ess"], np.float64)).reshape(REPEATS, -1)
                    results[model_name, method, m] = _accuracy(m, log_p_hat, log_ess, truth)
        return results

    def track_abs_bias(self, results, model, method, M):
        return results[model, method, M]["abs_bias"]

    track_abs_bias.unit = "nats"

    def track_variance(self, results, model, method, M):
        return results[model, method, M]["variance"]

    track_variance.unit = "nats^2"

    def track_m_over_ess(self, results, model, method, M):
        return results[model, method, M]["m_over_ess"]

    track_m_over_ess.unit = "M/ESS"
