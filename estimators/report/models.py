"""The report's models table: per model, what this run measured and what its zoo manifest says.

From the run: the ELBO gap (minus the bias of the method that returns the ELBO, averaged over M:
its expectation does not depend on M) and Var(log p^) at M = FACTS_M for the two textbook
baselines (``Method.baseline_role``: sampling from the prior, and from the posterior). From a
model shipped in the zoo (``estimators.manifests.manifest``): test log p(x), active latent
dimensions, rate and what the latent carries.
"""

import numpy as np
import pandas as pd

from estimators.manifests import manifest
from estimators.summary.cells import method_of

FACTS_M = 64  # the M at which the models table reports Var(log p^)
BASELINE_LABELS = {"prior": "naive MC", "posterior": "posterior-IS"}  # by Method.baseline_role
MODELS_INTRO = (
    "Per model. From this run: the ELBO gap log p(x) − E[ELBO] (minus the ELBO's bias, averaged "
    f"over M: its expectation does not depend on M) and Var(log p̂) at M = {FACTS_M} for "
    f"{BASELINE_LABELS['prior']} (z from the prior) and {BASELINE_LABELS['posterior']} (z from "
    "the exact or amortized posterior). From a shipped model's manifest (its whole test set): "
    "test log p(x), the active latent dimensions (mean KL(q(z_j|x) ‖ N(0, 1)) above the stated "
    "threshold), the rate Σ_j KL (about the information I(x; z) in nats) and what the latent "
    "carries: log p(x) − log p(x | z = 0), the mixture's gain over its component at the prior "
    "mean."
)


def model_facts(cells: pd.DataFrame, zoo_dir=None) -> pd.DataFrame:
    """One row per model of the cell table (``Summary.cells``): the run's ELBO gap and
    Var(log p^) at M = FACTS_M, and, for a model shipped in the zoo (``zoo_dir``: default the
    package's), its manifest's latent usage."""
    methods = {m: method_of(m) for m in cells["method"].unique()}
    elbo = cells["method"].map(lambda m: methods[m].returns_elbo)
    role = cells["method"].map(lambda m: methods[m].baseline_role)
    rows = []
    for model in dict.fromkeys(cells["model"]):
        mine = cells["model"] == model
        gap = cells.loc[mine & elbo, "bias"]
        row = {"model": model, "ELBO gap": -gap.mean() if len(gap) else np.nan}
        for key, label in BASELINE_LABELS.items():
            at = cells[mine & (role == key) & (cells["num_samples"] == FACTS_M)]
            row[f"Var {label} M={FACTS_M}"] = at["variance"].iloc[0] if len(at) else np.nan
        row.update(manifest_facts(model, zoo_dir))
        rows.append(row)
    return pd.DataFrame(rows)


def manifest_facts(model, zoo_dir=None) -> dict:
    """The latent-usage columns from ``model``'s zoo manifest; dashes and NaN without one."""
    facts = {
        "test log p(x)": "—",
        "test ELBO gap": np.nan,
        "active dims": "—",
        "rate": np.nan,
        "latent carries": np.nan,
    }
    try:
        info = manifest(model, zoo_dir)
    except (OSError, ValueError):  # not a zoo model, or an unreadable manifest
        return facts
    results = info.get("results", {})
    latent = results.get("latent", {})
    if "test_log_p" in results:
        facts["test log p(x)"] = (
            f"{results['test_log_p']:.3f} ± {results.get('test_log_p_se', 0):.2g}"
        )
        facts["test ELBO gap"] = results.get("elbo_gap", np.nan)
    if latent:
        d = info.get("architecture", {}).get("latent_dim", "—")
        facts["active dims"] = (
            f"{latent['active_dims']} / {d} (KL > {latent['active_threshold_nats']:g})"
        )
        facts["rate"] = latent.get("rate", np.nan)
        facts["latent carries"] = latent.get("latent_carries", np.nan)
    return facts
