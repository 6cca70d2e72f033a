"""From the tidy results table to numbers a person reads: bias, variance, cost, slopes, verdicts.

Pure pandas/numpy (no TensorFlow: see docs/architecture.md). For one cell (model, method, M) with data points
n = 1..N and repeats r = 1..R, let e_nr = estimate_nr - truth_n. Then

    bias      = mean_{n,r} e_nr                          (mean error, nats)
    variance  = mean_n  var_r(e_nr)   (ddof = 1)         (spread across repeats, averaged over points)
    rmse      = sqrt(mean_{n,r} e_nr^2)                  (includes the bias)
    seconds   = mean wall time of one repeat (N points x M samples); samples_per_second = N M / seconds

95% confidence intervals come from a bootstrap stratified by point: each replicate resamples the
R repeats of every point with replacement (the points are fixed; the Monte Carlo noise is what
varies). When the truth is itself an estimate (truth_se > 0), the bias's replicates also get its
error, drawn as N(0, sqrt(sum_n truth_se_n^2) / N).

Slopes: per (model, method), least squares of log variance and log |bias| on log M over the
upper half of the M range (M >= sqrt(M_min M_max)), where importance sampling is asymptotic:
variance ~ Var(w) / (M p(x)^2) and bias ~ -variance / 2, so both slopes should be near -1.
|bias| is fitted only on cells whose CI excludes 0 (an unresolved bias has no meaningful log).
The ELBO gets no bias slope: its bias tends to -KL(q || p(z|x)), not to 0.

Diagnostics against the error ("could a user, who has no truth, have seen it coming?"). Each
estimate (row) has a *real error* when |estimate - truth| > max(3 truth_se, ERROR_FLOOR): three
of the reference's standard errors, and never less than ERROR_FLOOR = 0.05 nats (p^ off by 5%;
exact truths have truth_se = 0). Two warnings a user could compute from the weights alone:
    k-hat   the Pareto tail index of the weights is above min(1 - 1/log10 M, 0.7)
            (Vehtari et al. 2024: above it, even the Pareto-smoothed estimate is unreliable)
    ESS     the Kish effective sample size is below ESS_FRACTION = 10% of M
Per cell: the mean k-hat, the share of estimates flagged, and the share with a real error among
the flagged (``bad_if_khat_high``) against among the others (``bad_if_khat_low``); the same for
ESS. Estimates without the diagnostic (NaN: M < 21 for k-hat, or a method without weights) count
in neither share.
"""

import numpy as np
import pandas as pd

from estimators.methods import PSIS_MIN_SAMPLES

CELL = ["model", "method", "num_samples"]
PAIR = ["model", "method"]
BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95
# Below these an error is floating-point round-off of an exact estimator (float32: ~1e-7 relative).
ROUNDOFF_BIAS = 1e-5  # nats
ROUNDOFF_VARIANCE = 1e-9  # nats^2
EXACT_RMSE = 1e-5
SUMMARY_COLUMNS = CELL + [
    "num_points",
    "repeats",
    "bias",
    "bias_ci_low",
    "bias_ci_high",
    "variance",
    "variance_ci_low",
    "variance_ci_high",
    "rmse",
    "rmse_ci_low",
    "rmse_ci_high",
    "ess",
    "seconds",
    "samples_per_second",
    "compile_seconds",
    "bias_slope",
    "variance_slope",
    "truth_se",
    "evaluations",
    "accept",
]
KHAT_LIMIT = 0.7
ESS_FRACTION = 0.1  # ESS / M below this warns
ERROR_SE = 3.0  # a real error exceeds this many reference standard errors...
ERROR_FLOOR = 0.05  # ...and this many nats
DIAGNOSTIC_COLUMNS = [
    "khat",
    "khat_threshold",
    "khat_high",
    "bad_if_khat_high",
    "bad_if_khat_low",
    "ess_low",
    "bad_if_ess_low",
    "bad_if_ess_high",
    "bad",
]
SUMMARY_COLUMNS += DIAGNOSTIC_COLUMNS


def summarize(
    df: pd.DataFrame, *, bootstrap: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> pd.DataFrame:
    """One row per (model, method, M) with the statistics above and the per-(model, method) slopes.

    ``compile_seconds`` comes from ``df.attrs["compile"]`` (written by ``sweep``); NaN if absent.
    """
    rng = np.random.default_rng(seed)
    flagged = flag_estimates(df)
    rows = [
        _cell_statistics(key, cell, rng, bootstrap) | _diagnostic_shares(cell)
        for key, cell in flagged.groupby(CELL, sort=False)
    ]
    summary = pd.DataFrame(rows)
    summary = summary.merge(_compile_table(df), on=CELL, how="left")
    slopes = fit_slopes(summary)
    summary = summary.merge(slopes[PAIR + ["bias_slope", "variance_slope"]], on=PAIR, how="left")
    return summary[SUMMARY_COLUMNS]


def _cell_statistics(key, cell, rng, bootstrap):
    errors = cell.pivot(index="point", columns="repeat", values="estimate").to_numpy()
    truth = cell.groupby("point")[["truth", "truth_se"]].first()
    errors = errors - truth["truth"].to_numpy()[:, None]  # e[n, r]
    num_points, repeats = errors.shape
    if repeats < 2 or np.isnan(errors).any():
        raise ValueError(
            f"cell {key}: needs >= 2 repeats of every point and no NaN estimates "
            f"({repeats} repeats, {int(np.isnan(errors).sum())} NaN)"
        )
    seconds = cell["seconds"].mean()
    low, high = _bootstrap_intervals(errors, truth["truth_se"].to_numpy(), rng, bootstrap)
    return {
        **dict(zip(CELL, key, strict=True)),
        "num_points": num_points,
        "repeats": repeats,
        "bias": errors.mean(),
        "bias_ci_low": low["bias"],
        "bias_ci_high": high["bias"],
        "variance": errors.var(axis=1, ddof=1).mean(),
        "variance_ci_low": low["variance"],
        "variance_ci_high": high["variance"],
        "rmse": np.sqrt(np.mean(errors**2)),
        "rmse_ci_low": low["rmse"],
        "rmse_ci_high": high["rmse"],
        "ess": cell["ess"].mean(),
        "seconds": seconds,
        # log p(x|z) evaluations (a gradient counts as one) per point: the implementation-free cost
        "evaluations": _mean(cell, "evaluations"),
        "accept": _mean(cell, "accept"),
        "samples_per_second": key[2] * num_points / seconds if seconds > 0 else np.nan,
        # The reference's own error bar: the RMS over points of its standard error (0 = exact).
        "truth_se": np.sqrt(np.mean(truth["truth_se"].to_numpy() ** 2)),
    }


def _mean(cell, column):
    """Mean of an optional column (tables from before it existed lack it): NaN when absent."""
    return cell[column].mean() if column in cell else np.nan


def _bootstrap_intervals(errors, truth_se, rng, bootstrap):
    """Percentile CIs of (bias, variance, rmse), resampling each point's repeats."""
    num_points, repeats = errors.shape
    picks = rng.integers(0, repeats, size=(bootstrap, num_points, repeats))
    resampled = errors[np.arange(num_points)[None, :, None], picks]  # [B, N, R]
    truth_error = rng.normal(0.0, np.sqrt(np.sum(truth_se**2)) / num_points, size=bootstrap)
    replicates = {
        "bias": resampled.mean(axis=(1, 2)) + truth_error,
        "variance": resampled.var(axis=2, ddof=1).mean(axis=1),
        "rmse": np.sqrt(np.mean(resampled**2, axis=(1, 2))),
    }
    tail = 100 * (1 - CONFIDENCE) / 2
    low = {k: np.percentile(v, tail) for k, v in replicates.items()}
    high = {k: np.percentile(v, 100 - tail) for k, v in replicates.items()}
    return low, high


def _compile_table(df):
    records = df.attrs.get("compile") or []
    table = pd.DataFrame(records, columns=CELL + ["compile_seconds"])
    return table[CELL + ["compile_seconds"]].astype(
        {"num_samples": "int64", "compile_seconds": "float64"}
    )


# --------------------------------------------------------------------------- diagnostics vs error


def khat_threshold(num_samples):
    """min(1 - 1/log10 M, 0.7): above it k-hat says the weights' tail is too heavy for M
    (NaN below M = 21, where k-hat is not defined)."""
    m = np.asarray(num_samples, np.float64)
    with np.errstate(divide="ignore"):
        threshold = np.minimum(1.0 - 1.0 / np.log10(m), KHAT_LIMIT)
    return np.where(m >= PSIS_MIN_SAMPLES, threshold, np.nan)


def flag_estimates(df):
    """``df`` plus per-row columns: ``abs_error``, ``bad`` (a real error, see the module
    docstring), ``khat_flag`` and ``ess_flag`` (1.0 warned, 0.0 not, NaN without the diagnostic)."""
    abs_error = (df["estimate"] - df["truth"]).abs()
    tolerance = np.maximum(ERROR_SE * df["truth_se"], ERROR_FLOOR)
    missing = pd.Series(np.nan, index=df.index)
    khat, ess = df.get("khat", missing), df.get("ess", missing)
    khat_flag = (khat > khat_threshold(df["num_samples"])).astype(float).where(khat.notna())
    ess_flag = (ess < ESS_FRACTION * df["num_samples"]).astype(float).where(ess.notna())
    return df.assign(
        khat=khat,
        ess=ess,
        abs_error=abs_error,
        bad=(abs_error > tolerance).astype(float),
        khat_flag=khat_flag,
        ess_flag=ess_flag,
    )


def _diagnostic_shares(cell):
    """The per-cell numbers of DIAGNOSTIC_COLUMNS from flagged rows (``flag_estimates``)."""

    def share(mask):
        return cell.loc[mask, "bad"].mean() if mask.any() else np.nan

    out = {
        "khat": cell["khat"].mean(),
        "khat_threshold": float(khat_threshold(cell["num_samples"].iloc[0])),
        "bad": cell["bad"].mean(),
    }
    for name, flag in (("khat", cell["khat_flag"]), ("ess", cell["ess_flag"])):
        high, low = ("high", "low") if name == "khat" else ("low", "high")
        out[f"{name}_{high}"] = flag.mean()  # NaN-skipping: share warned among rows with the flag
        out[f"bad_if_{name}_{high}"] = share(flag == 1.0)
        out[f"bad_if_{name}_{low}"] = share(flag == 0.0)
    return out


def diagnostic_counts(df):
    """Per model, over the estimates that have a k-hat: how many had a real error, and for each
    diagnostic how many it flagged, and how many of the bad ones. One row per (model, diagnostic)."""
    flagged = flag_estimates(df)
    rows = []
    for model, cells in flagged.groupby("model", sort=False):
        cells = cells[cells["khat_flag"].notna()]  # both diagnostics on the same estimates
        for name in ("khat", "ess"):
            flag = cells[f"{name}_flag"] == 1.0
            known = cells[f"{name}_flag"].notna()
            bad = cells["bad"] == 1.0
            rows.append(
                {
                    "model": model,
                    "diagnostic": name,
                    "estimates": int(known.sum()),
                    "bad": int((bad & known).sum()),
                    "flagged": int(flag.sum()),
                    "bad_flagged": int((bad & flag).sum()),
                    "bad_unflagged": int((bad & known & ~flag).sum()),
                    "methods": ", ".join(dict.fromkeys(cells["method"])),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "model",
            "diagnostic",
            "estimates",
            "bad",
            "flagged",
            "bad_flagged",
            "bad_unflagged",
            "methods",
        ],
    )


DIAGNOSTIC_NAMES = {
    "khat": "k̂ above min(1 − 1/log10 M, 0.7)",
    "ess": f"ESS/M below {ESS_FRACTION:g}",
}


def diagnostic_verdicts(df):
    """{model: text}: could k-hat, and could Kish ESS, have warned a user of the real errors?

    Judged on the estimates with a k-hat (so both diagnostics see the same ones). A diagnostic
    *could have warned* when it flagged at least 80% of the estimates with a real error and the
    flagged ones were more often wrong than the unflagged; *partly* at 30-80%; else not.
    """
    texts = {}
    for model, rows in diagnostic_counts(df).groupby("model", sort=False):
        rows = rows.set_index("diagnostic")
        total, bad = rows.loc["khat", "estimates"], rows.loc["khat", "bad"]
        if total == 0:
            continue
        if bad == 0:
            alarms = "; ".join(
                f"{DIAGNOSTIC_NAMES[d]} flagged {r['flagged'] / total:.0%}"
                for d, r in rows.iterrows()
            )
            texts[model] = (
                f"None of the {total} estimates with a k̂ ({rows.loc['khat', 'methods']}) "
                f"had a real error (|error| > max(3 SE, {ERROR_FLOOR:g} nats)): nothing "
                f"to warn about. False alarms: {alarms}."
            )
            continue
        sentences = [
            f"{bad} of {total} estimates with a k̂ ({bad / total:.0%}; "
            f"{rows.loc['khat', 'methods']}) had a real error (|error| > max(3 SE, "
            f"{ERROR_FLOOR:g} nats))."
        ]
        for name, r in rows.iterrows():
            sentences.append(_warning_sentence(DIAGNOSTIC_NAMES[name], r))
        texts[model] = " ".join(sentences)
    return texts


def _warning_sentence(label, r):
    """'k̂ ... caught 95% of them; flagged estimates were wrong 60% of the time, the others 2%:
    it could have warned a user.'"""
    recall = r["bad_flagged"] / r["bad"]
    unflagged = r["estimates"] - r["flagged"]
    p_flag = r["bad_flagged"] / r["flagged"] if r["flagged"] else np.nan
    p_other = r["bad_unflagged"] / unflagged if unflagged else np.nan
    informative = unflagged == 0 or (r["flagged"] > 0 and p_flag > p_other)
    if recall >= 0.8 and informative:
        verdict = "it could have warned a user"
    elif recall >= 0.3 and informative:
        verdict = "it could have warned a user in part"
    else:
        verdict = "it could not have warned a user"
    detail = (
        f"flagged estimates were wrong {p_flag:.0%} of the time"
        if r["flagged"]
        else "it flagged nothing"
    )
    if unflagged:
        detail += f", unflagged ones {p_other:.0%}"
    return f"{label} caught {recall:.0%} of them ({detail}): {verdict}."


# --------------------------------------------------------------------------- slopes


def fit_slopes(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method): log-log slopes of variance and |bias| against M, with notes."""
    return pd.DataFrame(
        [
            _pair_slopes(key, cells.sort_values("num_samples"))
            for key, cells in summary.groupby(PAIR, sort=False)
        ]
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
    if key[1] == "elbo":
        notes.append("ELBO: bias -> -KL, no slope")
    elif (fit["bias"].abs() <= ROUNDOFF_BIAS).all():
        notes.append("zero bias (exact)")
    elif len(resolved) < 2:
        notes.append("bias within its CI at large M: no slope")
    else:
        bias_slope, bias_points = (
            _slope(resolved["num_samples"], resolved["bias"].abs()),
            len(resolved),
        )
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


# --------------------------------------------------------------------------- verdicts


def best_at_budgets(summary, num_budgets=3):
    """Per model, at log-spaced time budgets: each method's best RMSE within the budget.

    A method's RMSE at budget t is the smallest RMSE among its cells with seconds <= t. Budgets
    run from the first time at which every method has a cell to the slowest cell.
    Returns one row per (model, budget, method), ``rank`` 1 = best.
    """
    rows = []
    for model, cells in summary.groupby("model", sort=False):
        fastest = cells.groupby("method", sort=False)["seconds"].min()
        low, high = fastest.max(), cells["seconds"].max()
        budgets = np.geomspace(low, high, num_budgets) if high > low else [high]
        for budget in budgets:
            within = cells[cells["seconds"] <= budget * (1 + 1e-9)]
            best = within.groupby("method", sort=False)["rmse"].min().sort_values()
            rows += [
                {
                    "model": model,
                    "budget_seconds": budget,
                    "method": method,
                    "rmse": rmse,
                    "rank": rank,
                }
                for rank, (method, rmse) in enumerate(best.items(), start=1)
            ]
    return pd.DataFrame(rows)


def verdicts(summary: pd.DataFrame) -> dict[str, str]:
    """{model: a short paragraph}: who wins at which time budget and by how much; the ELBO gap."""
    order = list(dict.fromkeys(summary["method"]))
    texts = {}
    for model, ranks in best_at_budgets(summary).groupby("model", sort=False):
        budgets = [
            (budget, ranking.sort_values("rank"))
            for budget, ranking in ranks.groupby("budget_seconds", sort=True)
        ]
        exact = {
            tuple(sorted(r.loc[r["rmse"] <= EXACT_RMSE, "method"], key=order.index))
            for _, r in budgets
        }
        if len(exact) == 1 and exact != {()}:
            text = _exact_verdict(next(iter(exact)), budgets)
        else:
            text = " ".join(
                _budget_sentence(low, high, ranking)
                for low, high, ranking in _collapse_budgets(budgets)
            )
        elbo = summary[(summary["model"] == model) & (summary["method"] == "elbo")]
        if len(elbo):
            gap = elbo.sort_values("num_samples")["bias"].iloc[-1]
            if abs(gap) > ROUNDOFF_BIAS:
                text += (
                    f" The ELBO stays {abs(gap):.3g} nats below log p(x) at the largest M: "
                    "its KL gap, which more samples do not close."
                )
        texts[model] = text
    return texts


def _exact_verdict(exact, budgets):
    """Some methods are exact at every budget: say so once, then rank the others."""
    verb = "is" if len(exact) == 1 else "are"
    text = f"{' and '.join(exact)} {verb} exact (RMSE at round-off) at every time budget."
    others = [(budget, ranking[~ranking["method"].isin(exact)]) for budget, ranking in budgets]
    parts = [
        f"within {format_seconds(budget)} per repeat {rest['method'].iloc[0]} "
        f"(RMSE {rest['rmse'].iloc[0]:.3g} nats)"
        for budget, rest in others
        if len(rest)
    ]
    return text + (" Best of the others: " + "; ".join(parts) + "." if parts else "")


def _collapse_budgets(budgets):
    """Merge consecutive budgets whose two best (method, RMSE) agree: [(low, high, ranking)]."""
    merged = []
    for budget, ranking in budgets:
        top = ranking[["method", "rmse"]].head(2).to_numpy().tolist()
        if merged and merged[-1][3] == top:
            merged[-1][1] = budget
        else:
            merged.append([budget, budget, ranking, top])
    return [(low, high, ranking) for low, high, ranking, _ in merged]


def _budget_sentence(low, high, ranking):
    """'Within 1.2 ms per repeat: A wins (RMSE 0.1 nats vs 0.5 for B, 5x smaller).'"""
    head = (
        f"Within {format_seconds(high)} per repeat"
        if low == high
        else f"At every budget from {format_seconds(low)} to {format_seconds(high)} per repeat"
    )
    winner, rmse = ranking["method"].iloc[0], ranking["rmse"].iloc[0]
    if len(ranking) == 1:
        return f"{head}: {winner} (RMSE {rmse:.3g} nats)."
    runner_up, runner_rmse = ranking["method"].iloc[1], ranking["rmse"].iloc[1]
    if rmse <= EXACT_RMSE:
        return (
            f"{head}: {winner} is exact (RMSE at round-off; {runner_up}: {runner_rmse:.3g} nats)."
        )
    return (
        f"{head}: {winner} wins (RMSE {rmse:.3g} nats vs {runner_rmse:.3g} for "
        f"{runner_up}, {runner_rmse / rmse:.3g}x smaller)."
    )


def format_seconds(seconds):
    """0.00123 -> '1.23 ms'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


# --------------------------------------------------------------------------- timing conditions


def timing_conditions(attrs):
    """How a run's seconds were measured, from its per-cell records (``attrs["compile"]``):
    {"concurrency": the most cells one host ran at once (1: one at a time, as in-process),
    "shared": cells timed while their host ran others, "cells": cells, "hosts": sorted host
    names}. Records without these fields (older runs) count as in-process."""
    records = attrs.get("compile") or []
    concurrency = [int(r.get("host_concurrency") or 1) for r in records]
    return {
        "concurrency": max(concurrency, default=1),
        "shared": sum(c > 1 for c in concurrency),
        "cells": len(records),
        "hosts": sorted({r["host"] for r in records if r.get("host")}),
    }


def timing_note(attrs):
    """A sentence for the report when its seconds are not those of a sequential run on one
    machine (cells shared a host's cores, or several hosts timed them); else None."""
    conditions = timing_conditions(attrs)
    notes = []
    if conditions["concurrency"] > 1:
        notes.append(
            f"{conditions['shared']} of {conditions['cells']} cells were timed while "
            f"their host ran up to {conditions['concurrency']} cells at once (Dask "
            "workers sharing its cores and memory bandwidth): their seconds are not "
            "comparable with a sequential run"
        )
    hosts = conditions["hosts"]
    if len(hosts) > 1:
        shown = ", ".join(hosts[:4]) + (", ..." if len(hosts) > 4 else "")
        notes.append(
            f"cells were timed on {len(hosts)} hosts ({shown}): seconds of different "
            "cells compare only as far as the hosts are alike"
        )
    if not notes:
        return None
    text = "; ".join(notes)
    return text[0].upper() + text[1:] + "."


def timing_mismatch(old_attrs, new_attrs):
    """A warning when two runs' seconds were measured under different conditions (cells run
    one at a time vs concurrently on a host, or one host vs several); else None."""
    old, new = timing_conditions(old_attrs), timing_conditions(new_attrs)

    def describe(c):
        text = (
            "one cell at a time"
            if c["concurrency"] == 1
            else f"up to {c['concurrency']} cells at once per host"
        )
        return text + (f" on {len(c['hosts'])} hosts" if len(c["hosts"]) > 1 else "")

    if (old["concurrency"], len(old["hosts"]) > 1) == (new["concurrency"], len(new["hosts"]) > 1):
        return None
    return (
        f"seconds are not comparable: the old run timed {describe(old)}, the new run "
        f"{describe(new)}"
    )
