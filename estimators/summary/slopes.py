"""Log-log slopes of variance and |bias| against M, per (model, method): fitted once, here.

Least squares of log variance and log |bias| on log M over the upper half of the M range
(M >= sqrt(M_min M_max)), where importance sampling is asymptotic: variance ~ Var(w) / (M p(x)^2)
and bias ~ -variance / 2, so both slopes should be near -1. |bias| is fitted only on cells whose
CI excludes 0 (an unresolved bias has no meaningful log). A method that returns the ELBO gets no
bias slope: its bias tends to -KL(q || p(z|x)), not to 0.
"""

import numpy as np
import pandas as pd

from estimators.summary.cells import PAIR, method_of

# Below these an error is floating-point round-off of an exact estimator (float32: ~1e-7 relative).
ROUNDOFF_BIAS = 1e-5  # nats
ROUNDOFF_VARIANCE = 1e-9  # nats^2
SLOPE_COLUMNS = [
    "model",
    "method",
    "variance_slope",
    "bias_slope",
    "fit_min_samples",
    "fit_max_samples",
    "variance_points",
    "bias_points",
    "note",
]


def fit_slopes(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method) of the cell table: the slopes, their fit range and a note."""
    return pd.DataFrame(
        [
            _pair_slopes(key, rows.sort_values("num_samples"))
            for key, rows in cells.groupby(PAIR, sort=False)
        ],
        columns=SLOPE_COLUMNS,
    )


def _pair_slopes(key, cells):
    m = cells["num_samples"].to_numpy(float)
    in_range = m >= np.sqrt(m.min() * m.max())
    if in_range.sum() < 2:
        in_range = np.ones_like(in_range)
    notes = []
    fit = cells[in_range]
    variance_slope = np.nan
    if (fit["variance"] <= ROUNDOFF_VARIANCE).all():
        notes.append("zero variance (exact)")
    else:
        usable = fit[fit["variance"] > ROUNDOFF_VARIANCE]
        variance_slope = _slope(usable["num_samples"], usable["variance"])
    bias_slope, bias_points = np.nan, 0
    resolved = fit[
        (np.sign(fit["bias_ci_low"]) == np.sign(fit["bias_ci_high"]))
        & (fit["bias"].abs() > ROUNDOFF_BIAS)
    ]
    if method_of(key[1]).returns_elbo:
        notes.append("ELBO: bias -> -KL, no slope")
    elif (fit["bias"].abs() <= ROUNDOFF_BIAS).all():
        notes.append("zero bias (exact)")
    elif len(resolved) < 2:
        notes.append("bias within its CI at large M: no slope")
    else:
        bias_slope = _slope(resolved["num_samples"], resolved["bias"].abs())
        bias_points = len(resolved)
    return {
        "model": key[0],
        "method": key[1],
        "variance_slope": variance_slope,
        "bias_slope": bias_slope,
        "fit_min_samples": int(fit["num_samples"].min()),
        "fit_max_samples": int(fit["num_samples"].max()),
        "variance_points": int((fit["variance"] > ROUNDOFF_VARIANCE).sum()),
        "bias_points": bias_points,
        "note": "; ".join(notes),
    }


def _slope(x, y):
    """Least-squares slope of log y on log x (NaN with fewer than two points)."""
    if len(x) < 2:
        return np.nan
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])
