"""The standard targets: their log Z against closed forms and quadrature, their densities against
NumPy/SciPy, the stored logistic-regression reference against the published ELBO, and AIS/SMC
against log Z at a moderate budget (graph mode: compiles faster than XLA at these sizes)."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf
from scipy.special import log_expit, logsumexp
from scipy.stats import norm

from estimators import estimate, methods, presets, reference_log_marginal
from estimators.targets import (
    GMM40_MEANS_FILE,
    MANY_WELL_LOG_Z_PUBLISHED,
    PUBLISHED,
    TARGETS,
    VIPS_ELBO,
    load_target,
    published_table,
    stored_reference,
)

AIS = methods.method_with(sandwich_side="lower")
SMC = methods.method_with(samples="particles")
ROWS = 8  # independent runs of each estimator: rows of the dummy data point


@pytest.fixture(scope="module")
def targets():
    return {name: load_target(name, tf.float64) for name in TARGETS}


def pooled(log_p, se):
    """Runs pooled in probability space: (log mean p^, SE = max(delta method, spread / sqrt(R)))."""
    value = logsumexp(log_p) - math.log(len(log_p))
    w = np.exp(log_p - log_p.max())
    delta = np.sqrt(np.sum((w * se) ** 2)) / w.sum()
    return value, max(delta, np.std(log_p, ddof=1) / math.sqrt(len(log_p)))


# ------------------------------------------------------------------------ log Z by construction


def test_funnel_is_a_normalized_density_against_scipy(targets):
    funnel = targets["funnel"]
    assert funnel.log_z.value == 0.0 and funnel.log_z.exact
    z = np.random.default_rng(0).normal(size=(50, 10)) * [3.0] + [0.0] * 10
    want = norm.logpdf(z[:, 0], 0, 3) + norm.logpdf(z[:, 1:], 0, np.exp(z[:, :1] / 2)).sum(1)
    np.testing.assert_allclose(funnel.log_density(z).numpy(), want, rtol=1e-12, atol=1e-10)
    np.testing.assert_array_equal(funnel.log_marginal(funnel.data(3)).numpy(), [0.0, 0.0, 0.0])


def test_gmm40_is_a_normalized_density_of_the_shipped_means(targets):
    gmm = targets["gmm40"]
    means = np.asarray(json.loads(GMM40_MEANS_FILE.read_text())["means"])
    # The file says how the means were drawn; they are those draws.
    np.testing.assert_array_equal(means, np.random.default_rng(0).uniform(-40, 40, (40, 2)))
    assert gmm.log_z.value == 0.0 and gmm.log_z.exact
    z = np.random.default_rng(1).uniform(-45, 45, size=(64, 2))
    want = logsumexp(norm.logpdf(z[:, None, :], means, 1.0).sum(-1), axis=1) - math.log(40)
    np.testing.assert_allclose(gmm.log_density(z).numpy(), want, rtol=1e-12)


def test_many_well_log_z_against_its_own_quadrature(targets):
    """log Z = 16 (log \\int exp(-x^4 + 6 x^2 + 0.5 x) dx + log sqrt(2 pi)): a trapezoid rule on
    a fine grid (geometrically convergent for this smooth, fast-decaying integrand) agrees with
    the target's adaptive quadrature to 1e-6, and both with the published 164.696."""
    many_well = targets["many_well"]
    x = np.linspace(-7.0, 7.0, 140_001)
    exponent = -(x**4) + 6 * x**2 + 0.5 * x
    log_i = logsumexp(exponent) + math.log(x[1] - x[0])
    want = 16 * (log_i + 0.5 * math.log(2 * math.pi))
    assert many_well.log_z.exact and abs(many_well.log_z.value - want) < 1e-6
    assert abs(many_well.log_z.value - MANY_WELL_LOG_Z_PUBLISHED) < 5e-4
    z = np.random.default_rng(2).normal(size=(20, 32))
    energy = (z[:, 0::2] ** 4 - 6 * z[:, 0::2] ** 2 - 0.5 * z[:, 0::2] + 0.5 * z[:, 1::2] ** 2).sum(
        1
    )
    np.testing.assert_allclose(many_well.log_density(z).numpy(), -energy, rtol=1e-12)


def test_logistic_regression_log_likelihood_against_numpy(targets):
    """The breast-cancer target from scratch: features / sd (ddof 0), not centred, ones first;
    Bernoulli log likelihood sum y log s(eta) + (1 - y) log s(-eta) with SciPy's log_expit."""
    from sklearn.datasets import load_breast_cancer

    target = targets["logistic_regression"]
    features, labels = load_breast_cancer(return_X_y=True)
    design = np.column_stack([np.ones(569), features / features.std(axis=0, ddof=0)])
    np.testing.assert_allclose(target.features.numpy(), design, rtol=1e-15)
    assert target.latent_dim == 31 and target.prior_scale == 10.0
    theta = np.random.default_rng(3).normal(scale=0.5, size=(6, 31))
    eta = theta @ design.T
    want = (labels * log_expit(eta) + (1 - labels) * log_expit(-eta)).sum(1)
    np.testing.assert_allclose(target.log_likelihood(theta).numpy(), want, rtol=1e-12)
    prior = norm.logpdf(theta, 0, 10).sum(1)
    np.testing.assert_allclose(target.log_density(theta).numpy(), want + prior, rtol=1e-12)


def test_logistic_regression_reference_lies_above_the_published_elbo(targets):
    target = targets["logistic_regression"]
    found = stored_reference("logistic_regression")
    assert not target.log_z.exact and target.log_z.value == found["log_z"]
    assert found["se"] < 0.01 and found["importance"]["max_khat"] < 0.7
    assert found["hmc"]["max_rhat"] < 1.01
    # The ELBO of a Gaussian mixture (VIPS) bounds log Z from below.
    assert target.log_z.value - 3 * target.log_z.se > VIPS_ELBO
    # An independent check stored beside it: AIS from the Laplace fit, within 3 of its SEs.
    check = found["ais_cross_check"]
    assert abs(check["log_z"] - found["log_z"]) < 3 * math.hypot(check["se"], found["se"])
    # The sweep scores against it, with its SE; no closed form is claimed.
    log_z, se = reference_log_marginal(target, target.data(2))
    np.testing.assert_array_equal(log_z, [found["log_z"]] * 2)
    np.testing.assert_array_equal(se, [found["se"]] * 2)
    with pytest.raises(NotImplementedError, match="no closed form"):
        target.log_marginal(target.data(1))
    assert {row["target"] for _, row in published_table().iterrows()} == set(PUBLISHED)


def test_targets_are_models_with_one_dummy_point(targets):
    for name, target in targets.items():
        x = target.data(2)
        assert x.shape == (2, 1) and target.data_dim == 1
        log_z, se = reference_log_marginal(target, x)
        assert np.all(log_z == target.log_z.value) and np.all(se == target.log_z.se), name
        with pytest.raises(NotImplementedError, match="does not simulate"):
            target.sample(1)


def test_the_targets_preset_builds_every_target():
    full = presets.get_preset("targets")
    assert set(full.models) == set(TARGETS)
    assert all(x.shape == (1, 1) for x in full.data.values())
    quick = presets.get_preset("targets", quick=True)
    assert set(quick.models) == set(presets.QUICK_TARGETS)


# ------------------------------------------------------------------------ AIS and SMC vs log Z


@pytest.mark.parametrize(
    "name, method, num, options",
    [
        ("gmm40", AIS, 16, {"steps": 100, "start": "prior"}),
        ("gmm40", SMC, 64, {"start": "prior"}),
        ("many_well", AIS, 16, {"steps": 1000, "start": "prior"}),
        ("many_well", SMC, 256, {"start": "prior"}),
    ],
)
def test_ais_and_smc_find_log_z_within_3_se(name, method, num, options):
    """8 independent runs pooled (as one run of 8x the chains or particles): within 3 SE of log Z,
    the SE the larger of the delta method and the runs' spread (SMC's own SE is too small on the
    many-well: its 2^16 modes make the runs spread more than the weights within a run show)."""
    target = load_target(name)  # float32, as the preset runs it
    log_p, diagnostics = estimate(
        target,
        target.data(ROWS),
        method,
        num,
        seed=2,
        return_diagnostics=True,
        jit_compile=False,
        **options,
    )
    value, se = pooled(log_p.numpy().astype(np.float64), diagnostics["se"].numpy())
    assert abs(value - target.log_z.value) < 3 * se, (value, se)


@pytest.mark.parametrize(
    "method, num, options",
    [(AIS, 16, {"steps": 100, "start": "prior"}), (SMC, 64, {"start": "prior"})],
)
def test_the_funnel_is_biased_low(method, num, options):
    """The funnel's neck (z0 << 0, where z_1..9 have sd e^(z0/2)) is narrow: HMC with one step
    size per temperature rarely enters it, so AIS and SMC miss that mass and, as reported in the
    literature for annealing methods on the funnel, underestimate log Z = 0. Measured here: the
    pooled estimate is below 0 by more than 2 SE (about -0.4 to -0.8 nats at this budget), and
    not absurdly so."""
    target = load_target("funnel")
    log_p, diagnostics = estimate(
        target,
        target.data(ROWS),
        method,
        num,
        seed=2,
        return_diagnostics=True,
        jit_compile=False,
        **options,
    )
    value, se = pooled(log_p.numpy().astype(np.float64), diagnostics["se"].numpy())
    assert -1.5 < value < -2 * se, (value, se)


def test_the_report_shows_each_targets_published_values(tmp_path):
    """A run on two targets: its report has a "Published values" section naming each target's
    source, read from the shipped data (the report loads no TensorFlow for it)."""
    from estimators.manifests import published
    from estimators.report import write_report
    from estimators.sweep import sweep

    names = ("funnel", "gmm40")
    models = {name: load_target(name) for name in names}
    data = {name: models[name].data(2) for name in names}
    naive = methods.method_with(baseline_role="prior")
    df = sweep(models, [naive], [16], 2, data, out=tmp_path, progress=False)
    write_report(df, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "## Published values" in text
    for name in names:
        assert published(name) == PUBLISHED[name]
        assert PUBLISHED[name][0]["source"] in text
    assert published("digits-gaussian-d8") == []
