"""Reference values of log p(x) for scoring estimators: exact where possible, else high-budget IS.

    reference_log_marginal(model, x) -> (log_p [N], standard_error [N])

Order of preference: the model's own ``log_marginal`` (closed form, or grid quadrature for a
latent of dimension <= 2; standard error 0), else posterior importance sampling with the exact or
amortized posterior at ``num_samples`` (>= 1e5) per point. Its standard error follows from the
delta method on the weights: Var(log p^) ~= Var(w) / (M E[w]^2) ~= 1/ESS - 1/M (Kish ESS).
"""
import numpy as np

from estimators.estimator import estimate

REFERENCE_SAMPLES = 100_000


def reference_log_marginal(model, x, *, num_samples=REFERENCE_SAMPLES, seed=20240601,
                           chunk_size=1024):
    x = model.check_data(x)
    try:
        return np.asarray(model.log_marginal(x), np.float64), np.zeros(int(x.shape[0]))
    except NotImplementedError:
        pass
    log_p, diag = estimate(model, x, "posterior_is", num_samples, seed=seed, chunk_size=chunk_size,
                           return_diagnostics=True)
    ess = np.asarray(diag["ess"], np.float64)
    se = np.sqrt(np.maximum(1.0 / np.maximum(ess, 1.0) - 1.0 / num_samples, 0.0))
    return np.asarray(log_p, np.float64), se
