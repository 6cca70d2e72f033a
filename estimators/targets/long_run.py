"""The logistic-regression target's reference log Z: the suite's own long run, stored once.

    python -m estimators.targets.long_run       # recomputes it and rewrites references.json

The breast-cancer posterior is far from Gaussian (near-separable data: in some directions the
likelihood is a soft step and the posterior keeps a tail out to the prior's scale), so the
Laplace approximation is a poor importance proposal (k-hat > 1; its IS estimates sit ~0.8 nats
low). The reference is made in two stages, in float64:

1. posterior moments from HMC: ``HMC_CHAINS`` chains of ``HMC_STEPS`` draws after ``HMC_BURNIN``
   (TFP's HamiltonianMonteCarlo with dual-averaging step size, in coordinates whitened by the
   Laplace fit, so the collinear features do not slow it down); R-hat is recorded;
2. importance sampling (the registry's posterior baseline, ``posterior_is``, given the proposal)
   from a multivariate Student-t with ``DF`` degrees of freedom and those moments: ``RUNS``
   independent runs of ``SAMPLES`` samples, pooled in probability space. Its SE is the larger
   of the delta method over the pooled weights and the runs' spread / sqrt(R); the Pareto k-hat
   of each run is recorded (below 0.7: the SE can be trusted).

A cross-check with AIS from the Laplace fit (``AIS_CHAINS`` chains, ``AIS_STEPS`` temperatures)
is stored beside it.
"""

import json
import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from estimators import methods as registry
from estimators.files import atomic_write
from estimators.models.target import FittedStudentT
from estimators.targets import REFERENCES_FILE, logistic_regression

HMC_CHAINS, HMC_STEPS, HMC_BURNIN, HMC_LEAPFROG = 32, 4000, 1000, 10
DF = 5.0
RUNS, SAMPLES = 16, 2**18
AIS_CHAINS, AIS_STEPS = 64, 2000
SEED = 20260601


def posterior_moments(target, seed=SEED):
    """(mean [d], covariance [d, d], max R-hat, acceptance) of HMC draws from the target."""
    q = target.amortized_posterior  # the Laplace fit: whitening coordinates u, z = mu + L u
    loc, tril = q.loc, q.scale_tril
    d = target.latent_dim

    def log_density(u):
        return target.log_density(loc + tf.linalg.matvec(tril, u))

    @tf.function(jit_compile=True)
    def run(seed):
        kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(
            tfp.mcmc.HamiltonianMonteCarlo(log_density, 0.3, HMC_LEAPFROG),
            num_adaptation_steps=int(0.8 * HMC_BURNIN),
            target_accept_prob=0.8,
        )
        start = tf.random.stateless_normal([HMC_CHAINS, d], seed, dtype=target.dtype)
        return tfp.mcmc.sample_chain(
            HMC_STEPS,
            start,
            kernel=kernel,
            num_burnin_steps=HMC_BURNIN,
            trace_fn=lambda _, results: results.inner_results.is_accepted,
            seed=seed,
        )

    u, accepted = run(tf.constant([seed % 2**31, 1], tf.int32))
    z = loc + tf.linalg.matvec(tril, u)  # [steps, chains, d]
    rhat = float(tf.reduce_max(tfp.mcmc.potential_scale_reduction(z)))
    flat = z.numpy().reshape(-1, d)
    return flat.mean(0), np.cov(flat.T), rhat, float(np.mean(accepted.numpy()))


def pooled(log_p, se):
    """Runs pooled in probability space: (log mean p^, SE = max(delta method, spread))."""
    runs = len(log_p)
    value = float(np.logaddexp.reduce(log_p) - math.log(runs))
    weights = np.exp(log_p - log_p.max())
    delta = float(np.sqrt(np.sum((weights * se) ** 2)) / np.sum(weights))
    spread = float(np.std(log_p, ddof=1) / math.sqrt(runs))
    return value, max(delta, spread)


def compute_logistic_reference(seed=SEED, ais_check=True):
    """The logistic-regression target's reference as the dict stored in references.json."""
    from estimators.estimator import estimate

    target = logistic_regression(tf.float64)
    mean, cov, rhat, accept = posterior_moments(target, seed)
    proposal = FittedStudentT(DF, mean, np.linalg.cholesky(cov), tf.float64)
    log_p, diagnostics = estimate(
        target,
        target.data(RUNS),
        registry.method_with(baseline_role="posterior"),
        SAMPLES,
        seed=seed,
        proposal=proposal,
        return_diagnostics=True,
    )
    log_p, se = np.asarray(log_p, np.float64), np.asarray(diagnostics["se"], np.float64)
    value, error = pooled(log_p, se)
    found = {
        "log_z": value,
        "se": error,
        "source": (
            f"the suite's own long run: importance sampling (float64) from a multivariate "
            f"Student-t (df {DF:g}) with the moments of {HMC_CHAINS} x {HMC_STEPS} HMC draws, "
            f"{RUNS} runs x {SAMPLES} samples pooled"
        ),
        "hmc": {
            "chains": HMC_CHAINS,
            "steps": HMC_STEPS,
            "burnin": HMC_BURNIN,
            "leapfrog": HMC_LEAPFROG,
            "max_rhat": rhat,
            "accept": accept,
        },
        "importance": {
            "df": DF,
            "runs": RUNS,
            "samples": SAMPLES,
            "seed": seed,
            "run_estimates": log_p.round(5).tolist(),
            "run_se": se.round(5).tolist(),
            "max_khat": float(np.max(diagnostics["khat"])),
        },
    }
    if ais_check:
        lower = registry.method_with(sandwich_side="lower")
        ais, ais_diag = estimate(
            target,
            target.data(1),
            lower,
            AIS_CHAINS,
            seed=seed,
            steps=AIS_STEPS,
            start="posterior",
            return_diagnostics=True,
        )
        found["ais_cross_check"] = {
            "start": "the Laplace fit",
            "chains": AIS_CHAINS,
            "steps": AIS_STEPS,
            "log_z": float(ais[0]),
            "se": float(ais_diag["se"][0]),
        }
    return found


def main():
    stored = json.loads(REFERENCES_FILE.read_text()) if REFERENCES_FILE.exists() else {}
    stored["logistic_regression"] = compute_logistic_reference()
    text = json.dumps(stored, indent=2) + "\n"
    atomic_write(REFERENCES_FILE, lambda f: f.write(text.encode()))
    print(json.dumps(stored["logistic_regression"], indent=2))


if __name__ == "__main__":
    main()
