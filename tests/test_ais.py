"""AIS and BDMC against exact answers: the HMC kernel alone, unbiasedness in linear space, the
sandwich, step-size adaptation, compilation and bad input.

Tolerances are K standard errors of the quantity tested (SE = sd / sqrt(n)); repeats are rows of
a tiled x (each row runs its own chains), so one call gives hundreds of independent estimates.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from estimators import LinearGaussian, estimate
from estimators.algorithms import annealing, hmc
from estimators.methods import parse

from conftest import make_gmm, make_linear_gaussian, make_nonlinear

tfd = tfp.distributions
K = 4.0  # standard errors: a false alarm has probability ~6e-5 per check
# One model for most tests: compiled functions are cached on it and shared (compiling an AIS
# function costs seconds; K and T are tensors, so tests that vary them reuse one).
LG = make_linear_gaussian(D=6, d=2, sigma=0.5)


def tiled(model, points, repeats, seed=5):
    x = model.sample(points, seed=seed).numpy()
    return np.tile(x, (repeats, 1)), np.tile(
        model.log_marginal(x).numpy().astype(np.float64), repeats
    )


def assert_mean_within(values, target, k=K):
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - target) < k * se + 1e-12, (values.mean(), target, se)
    return se


def widened(model, shift=0.3, scale=1.6):
    """A deliberately wrong q(z|x): the exact posterior shifted and widened."""

    def q(x):
        post = model.posterior(x)
        return tfd.MultivariateNormalDiag(post.mean() + shift, scale * post.stddev())

    return q


# ---------------------------------------------------------------------------------- the kernel


def test_hmc_step_leaves_a_correlated_gaussian_invariant():
    """Chains started far away converge to N(m, S): mean and covariance within K SE."""
    m = tf.constant([1.0, -2.0], tf.float64)
    S = np.array([[1.0, 0.8], [0.8, 2.0]])
    target = tfd.MultivariateNormalTriL(m, tf.constant(np.linalg.cholesky(S)))
    chains = 4000

    @tf.function(jit_compile=True)
    def run(seed):
        point = hmc.evaluate(
            target.log_prob, target.log_prob, tf.fill([chains, 1, 2], tf.constant(5.0, tf.float64))
        )
        beta = tf.ones([1], tf.float64)
        for_loop = tf.range(150)

        def body(i, point):
            point, _ = hmc.step(
                lambda z: hmc.evaluate(target.log_prob, target.log_prob, z),
                point,
                beta,
                tf.constant(0.35, tf.float64),
                5,
                tf.random.experimental.stateless_fold_in(seed, i),
            )
            return i + 1, point

        _, point = tf.while_loop(lambda i, _: i < tf.size(for_loop), body, (0, point))
        return point.z[:, 0, :]

    z = run(tf.constant([0, 1], tf.int64)).numpy()
    for j in range(2):
        assert_mean_within(z[:, j], m.numpy()[j])
    cov = np.cov(z.T)
    se = np.sqrt((S**2 + np.outer(np.diag(S), np.diag(S))) / (chains - 1))  # SE of each entry
    assert np.all(np.abs(cov - S) < K * se), (cov, S)


def test_schedules_run_from_zero_to_one_increasing():
    t = tf.range(0, 51)
    for kind in ("linear", "sigmoid", "geometric"):
        beta = annealing.schedule(kind, t, 50, tf.float64).numpy()
        assert beta[0] == 0.0 and abs(beta[-1] - 1.0) < 1e-12, kind
        assert np.all(np.diff(beta) > 0), kind


# ------------------------------------------------------------------------ exact answers


@pytest.mark.parametrize("start", ["prior", "posterior"])
def test_ais_is_unbiased_for_p_in_linear_space(start):
    """E[p^ / p] = 1 from the prior, and from a mismatched q(z|x) (shifted, widened)."""
    model = LG
    x, truth = tiled(model, 5, 300)
    est = estimate(
        model,
        x,
        f"ais:start={start},steps=30",
        4,
        seed=1,
        proposal=widened(model) if start == "posterior" else None,
    ).numpy()
    assert np.all(np.isfinite(est))
    assert_mean_within(np.exp(est - truth), 1.0)


def test_ais_from_the_exact_posterior_is_exact():
    """Starting at p(z|x), log p(x, z) - log f_0(z) = log p(x) everywhere: zero variance."""
    model = make_linear_gaussian(dtype=tf.float64)
    x = model.sample(6, seed=2)
    truth = model.log_marginal(x).numpy()
    for steps in (1, 7):
        est = estimate(model, x, "ais", 3, seed=steps, steps=steps).numpy()
        np.testing.assert_allclose(est, truth, atol=1e-10)


def test_ais_error_falls_as_steps_grow():
    model = LG
    x, truth = tiled(model, 5, 40)
    rmse = {
        T: np.sqrt(
            np.mean(
                (estimate(model, x, f"ais:start=prior,steps={T}", 2, seed=T).numpy() - truth) ** 2
            )
        )
        for T in (2, 20, 200)
    }
    assert rmse[200] < 0.5 * rmse[20] < 0.5 * rmse[2], rmse


def _one_dimensional_case():
    """p(z) = N(0, 1), p(x|z) = N(2 z, 0.5^2), x = 1; a start q 0.7x as wide as p(z|x)."""
    model = LinearGaussian([[2.0]], [0.0], 0.5)
    x0 = np.array([[1.0]])

    def narrow(x):
        post = model.posterior(x)
        return tfd.MultivariateNormalDiag(post.mean(), 0.7 * post.stddev())

    return model, x0, float(model.log_marginal(x0).numpy()[0]), narrow


def test_frozen_step_sizes_are_unbiased_and_online_adaptation_is_not():
    """T = 200, L = 10, K = 8, 2000 runs: with step sizes tuned in a pilot and frozen, the mean of
    p^/p is 1 within 4 SE (SE < 0.001); adapting each chain online from its own acceptances
    (eval_gen's x1.02 / x0.98) moves it measurably below 1."""
    model, x0, truth, narrow = _one_dimensional_case()
    x = np.tile(x0, (2000, 1))
    ratio = {}
    for adapt in ("pilot", "online"):
        est = estimate(
            model, x, f"ais:start=posterior,steps=200,adapt={adapt}", 8, seed=3, proposal=narrow
        ).numpy()
        ratio[adapt] = np.exp(est.astype(np.float64) - truth)
    se = assert_mean_within(ratio["pilot"], 1.0)
    assert se < 0.001
    online_se = ratio["online"].std(ddof=1) / np.sqrt(ratio["online"].size)
    assert ratio["online"].mean() < 1.0 - K * online_se, (ratio["online"].mean(), online_se)


def test_pilot_tunes_acceptance_toward_the_target():
    model = LG
    x = model.sample(4, seed=0)
    for step_size in (0.005, 2.0):  # far too small and far too large to start with
        _, diag = estimate(
            model,
            x,
            "ais:start=prior,steps=100",
            8,
            seed=0,
            step_size=step_size,
            return_diagnostics=True,
        )
        accept = diag["accept"].numpy()
        assert np.all((accept > 0.5) & (accept < 0.85)), (step_size, accept)


# ------------------------------------------------------------------------------ the sandwich


def test_bdmc_sandwiches_log_p_and_the_width_shrinks():
    """E[upper] >= log p(x) >= E[lower] within SE; 1/p^_upper is unbiased for 1/p; the width
    of [ais, bdmc] falls with T."""
    model = LG
    x, truth = tiled(model, 4, 60)
    width = {}
    for T in (10, 100):
        lower = estimate(model, x, f"ais:start=prior,steps={T}", 4, seed=T).numpy() - truth
        upper = estimate(model, x, f"bdmc:start=prior,steps={T}", 4, seed=T).numpy() - truth
        lower_se, upper_se = (v.std(ddof=1) / np.sqrt(v.size) for v in (lower, upper))
        assert lower.mean() < K * lower_se and upper.mean() > -K * upper_se, (
            T,
            lower.mean(),
            upper.mean(),
        )
        assert_mean_within(np.exp(-upper.astype(np.float64)), 1.0)
        width[T] = upper.mean() - lower.mean()
    assert 0 < width[100] < 0.5 * width[10], width


def test_bdmc_from_simulated_latents_on_a_nonlinear_model():
    """Data simulated with their latents: each z is one exact draw from p(z|x), so E[exp(log p(x)
    - upper)] = 1 over the simulated pairs (truth by quadrature)."""
    model = make_nonlinear(dtype=tf.float64)
    x, z = model.sample(250, seed=4, return_latents=True)
    truth = model.log_marginal(x).numpy()
    upper = estimate(model, x, "bdmc:start=prior,steps=20", 4, seed=0, posterior_samples=z).numpy()
    assert_mean_within(np.exp(truth - upper), 1.0)
    lower = estimate(model, x, "ais:start=prior,steps=20", 4, seed=0).numpy()
    assert np.mean(upper - lower) > 0


# ------------------------------------------------------------------------ compiling and options


def test_one_trace_serves_every_number_of_chains_and_steps():
    model = make_linear_gaussian()
    x = model.sample(3, seed=0)
    for chains, steps in ((1, 5), (7, 5), (300, 2), (3, 40), (600, 1)):
        estimate(model, x, "ais:start=prior", chains, seed=chains, steps=steps, chunk_size=8)
    spec = parse("ais:start=prior")
    fn = annealing.compiled_annealer(
        model, spec, None, False, False, spec.method.default_chunk, True
    )
    assert fn.experimental_get_tracing_count() == 1


XLA_COMPILES = """
import tensorflow as tf
from estimators import LinearGaussian, estimate
model = LinearGaussian([[1.0, 0.3], [0.2, -0.5], [0.4, 0.4]], [0.0, 0.0, 0.0], 0.7)
x = model.sample(3, seed=0)
for chains, steps in ((8, 5), (16, 6), (100, 50), (9, 200), (64, 7)):
    estimate(model, x, "ais:start=prior", chains, seed=0, steps=steps).numpy()
# data that come with exact latents (a sweep's simulated points): forward AIS ignores them
z = tf.zeros([3, 2])
estimate(model, x, "ais:start=prior", 16, seed=0, steps=9, posterior_samples=z).numpy()
"""


def test_one_xla_compilation_serves_every_k_and_t_with_the_pilot():
    """A tf.function traced once can still be compiled by XLA once per value of an input that
    an op needs at compile time (a slice index derived from T did that: every new T cost a
    compilation of seconds). Counted from XLA's own log in a fresh interpreter: with the default
    options (adapt=pilot) and K >= the default chunk, new K and T reuse one compilation, and so
    do data given with exact latents (only the reverse path uses them)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "TF_CPP_VMODULE": "device_compiler=2"}
    done = subprocess.run(
        [sys.executable, "-c", XLA_COMPILES], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    compiles = [
        line
        for line in done.stderr.splitlines()
        if "Instantly compiling" in line and "__inference_compute" in line
    ]
    assert len(compiles) == 1, compiles


def test_a_single_chain_runs():
    """K = 1 (a chunk of one chain would lose its static shape in the loops): finite estimates,
    forward and reverse."""
    model = make_linear_gaussian()
    x = model.sample(3, seed=0)
    for spec in ("ais:steps=5", "bdmc:steps=5"):
        log_p, diag = estimate(model, x, spec, 1, seed=0, return_diagnostics=True)
        assert np.all(np.isfinite(log_p.numpy())), spec
        assert np.all(np.isnan(diag["se"].numpy())), spec  # one chain: no spread to report


def test_spec_string_and_keyword_options_are_the_same_call():
    model = make_linear_gaussian()
    x = model.sample(3, seed=0)
    a = estimate(model, x, "ais:steps=12,schedule=linear", 5, seed=2).numpy()
    b = estimate(model, x, "ais", 5, seed=2, steps=12, schedule="linear").numpy()
    np.testing.assert_array_equal(a, b)


def test_chunked_chains_agree_with_one_chunk():
    """Chains in chunks of 8 (the default) or all at once: the same distribution of estimates."""
    model = LG
    x, truth = tiled(model, 4, 100)
    one = estimate(model, x, "ais:start=prior,steps=10", 32, seed=1, chunk_size=32).numpy() - truth
    many = estimate(model, x, "ais:start=prior,steps=10", 32, seed=2).numpy() - truth
    se = np.hypot(one.std(), many.std()) / np.sqrt(one.size)
    assert abs(one.mean() - many.mean()) < K * se


def test_far_data_stay_finite():
    model = LG
    x = model.sample(4, seed=1).numpy() + 200.0  # log p(x) ~ -1e4
    for method in ("ais:start=prior,steps=5", "ais:steps=5", "bdmc:start=prior,steps=5"):
        est, diag = estimate(model, x, method, 4, seed=0, return_diagnostics=True)
        assert np.all(np.isfinite(est.numpy())), method
        assert np.all(np.isfinite(diag["ess"].numpy())), method


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model="gmm", method="ais"), "continuous latent"),
        (dict(method="ais", steps=0), "steps must be >= 1"),
        (dict(method="ais:schedule=cubic"), "schedule must be one of"),
        (dict(method="ais:temperature=3"), "unknown option 'temperature'"),
        (dict(method="ais", leapfrog=2.5), "leapfrog must be int"),
        (dict(method="ais", step_size=0), "step_size must be > 0"),
        (dict(model="nonlinear", method="bdmc"), "needs exact posterior samples"),
        (
            dict(method="bdmc", posterior_samples=np.zeros((2, 2))),
            "posterior_samples must have shape",
        ),
        (dict(method="annealing"), "unknown method 'annealing'"),
    ],
)
def test_bad_input_names_the_problem(kwargs, message):
    models = {"lg": make_linear_gaussian(), "gmm": make_gmm(), "nonlinear": make_nonlinear()}
    model = models[kwargs.pop("model", "lg")]
    x = model.sample(3, seed=0)
    with pytest.raises(ValueError, match=message):
        estimate(model, x, num_samples=4, seed=0, **kwargs)
