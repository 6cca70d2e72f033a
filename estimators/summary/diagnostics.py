"""Diagnostics against the error: could a user, who has no truth, have seen it coming?

Each estimate (row) has a *real error* when |estimate - truth| > max(3 truth_se, ERROR_FLOOR):
three of the reference's standard errors, and never less than ERROR_FLOOR = 0.05 nats (p^ off by
5%; exact truths have truth_se = 0). Two warnings a user could compute from the weights alone:

    k-hat   the Pareto tail index of the weights is above min(1 - 1/log10 M, 0.7)
            (Vehtari et al. 2024: above it, even the Pareto-smoothed estimate is unreliable)
    ESS     the Kish effective sample size is below ESS_FRACTION = 10% of M

Per cell: the mean k-hat, the share of estimates flagged, and the share with a real error among
the flagged (``bad_if_khat_high``) against among the others (``bad_if_khat_low``); the same for
ESS. Estimates without the diagnostic (NaN: M < 21 for k-hat, or a method without weights) count
in neither share. Per model: counts of both (``diagnostic_counts``) and a verdict each.
"""

import numpy as np
import pandas as pd

from estimators import methods as registry
from estimators.methods import PSIS_MIN_SAMPLES

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
COUNT_COLUMNS = [
    "model",
    "diagnostic",
    "estimates",
    "bad",
    "flagged",
    "bad_flagged",
    "bad_unflagged",
    "methods",
]
DIAGNOSTIC_NAMES = {
    "khat": "k̂ above min(1 − 1/log10 M, 0.7)",
    "ess": f"ESS/M below {ESS_FRACTION:g}",
}


def khat_threshold(num_samples):
    """min(1 - 1/log10 M, 0.7): above it k-hat says the weights' tail is too heavy for M
    (NaN below M = 21, where k-hat is not defined)."""
    m = np.asarray(num_samples, np.float64)
    with np.errstate(divide="ignore"):
        threshold = np.minimum(1.0 - 1.0 / np.log10(m), KHAT_LIMIT)
    return np.where(m >= PSIS_MIN_SAMPLES, threshold, np.nan)


def flag_estimates(df: pd.DataFrame) -> pd.DataFrame:
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


def diagnostic_shares(rows: pd.DataFrame) -> dict:
    """The per-cell numbers of DIAGNOSTIC_COLUMNS from one cell's flagged rows."""

    def share(mask):
        return rows.loc[mask, "bad"].mean() if mask.any() else np.nan

    out = {
        "khat": rows["khat"].mean(),
        "khat_threshold": float(khat_threshold(rows["num_samples"].iloc[0])),
        "bad": rows["bad"].mean(),
    }
    for name, flag in (("khat", rows["khat_flag"]), ("ess", rows["ess_flag"])):
        high, low = ("high", "low") if name == "khat" else ("low", "high")
        out[f"{name}_{high}"] = flag.mean()  # NaN-skipping: share warned among rows with the flag
        out[f"bad_if_{name}_{high}"] = share(flag == 1.0)
        out[f"bad_if_{name}_{low}"] = share(flag == 0.0)
    return out


def diagnostic_counts(flagged: pd.DataFrame) -> pd.DataFrame:
    """Per model, over the estimates that have a k-hat: how many had a real error, and for each
    diagnostic how many it flagged, and how many of the bad ones. One row per (model, diagnostic).
    ``flagged``: ``flag_estimates(df)`` (a plain tidy table is flagged here)."""
    if "khat_flag" not in flagged:
        flagged = flag_estimates(flagged)
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
                    "methods": ", ".join(registry.label(m) for m in dict.fromkeys(cells["method"])),
                }
            )
    return pd.DataFrame(rows, columns=COUNT_COLUMNS)


def diagnostic_verdicts(counts: pd.DataFrame) -> dict[str, str]:
    """{model: text}: could k-hat, and could Kish ESS, have warned a user of the real errors?

    ``counts``: ``diagnostic_counts``. Judged on the estimates with a k-hat (so both diagnostics
    see the same ones). A diagnostic *could have warned* when it flagged at least 80% of the
    estimates with a real error and the flagged ones were more often wrong than the unflagged;
    *partly* at 30-80%; else not.
    """
    texts = {}
    for model, rows in counts.groupby("model", sort=False):
        rows = rows.set_index("diagnostic")
        total, bad = rows.loc["khat", "estimates"], rows.loc["khat", "bad"]
        if total == 0:
            continue
        methods = rows.loc["khat", "methods"]
        if bad == 0:
            alarms = "; ".join(
                f"{DIAGNOSTIC_NAMES[d]} flagged {r['flagged'] / total:.0%}"
                for d, r in rows.iterrows()
            )
            texts[model] = (
                f"None of the {total} estimates with a k̂ ({methods}) had a real error "
                f"(|error| > max(3 SE, {ERROR_FLOOR:g} nats)): nothing to warn about. "
                f"False alarms: {alarms}."
            )
            continue
        sentences = [
            f"{bad} of {total} estimates with a k̂ ({bad / total:.0%}; {methods}) had a real "
            f"error (|error| > max(3 SE, {ERROR_FLOOR:g} nats))."
        ]
        sentences += [_warning_sentence(DIAGNOSTIC_NAMES[name], r) for name, r in rows.iterrows()]
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
