"""Speed of AIS on a trained decoder, and its evaluation rate against naive MC's.

The digits VAEs shipped with the package (decoder z(8) -> 64 pixels; Gaussian and Bernoulli) are
fixed files, so the benchmark's model does not move with the code. 32 test points, K = 16 chains,
L = 10 leapfrog steps, at two budgets (T = 50 and T = 500 temperatures). Compilation happens in
``setup`` (one compiled function serves both T). ``track_evaluation_rate_ratio`` is the ratio of
naive MC's rate of log p(x|z) evaluations to AIS's (each AIS evaluation includes the gradient, ~3
forward passes): lower is better, and about 3-4 means AIS runs near the same fraction of the
machine's peak as naive MC.
"""

from .common import AIS, NAIVE_MC, best_seconds, evaluation_rate

MODELS = ("digits-gaussian-d8", "digits-bernoulli-d8")
SPECS = (f"{AIS}:steps=50", f"{AIS}:steps=500")
CHAINS = 16
NAIVE_SAMPLES = 2**14
NUM_POINTS = 32

_cache = {}


def _model_and_data(name):
    if name not in _cache:
        from estimators import load_data, load_model

        _cache[name] = (load_model(name), load_data(name, "test")[:NUM_POINTS])
    return _cache[name]


class TimeAIS:
    """Seconds per compiled ``estimate(model, x, "ais:steps=T", K=16)`` call (x: 32 points)."""

    params = (list(MODELS), list(SPECS))
    param_names = ("model", "method")
    number = 1
    repeat = (2, 4, 10.0)
    rounds = 1
    warmup_time = 0.0
    timeout = 600

    def setup(self, model, method):
        from estimators import estimate

        self.model, self.x = _model_and_data(model)
        estimate(self.model, self.x, method, CHAINS, seed=0, steps=2)

    def time_ais(self, model, method):
        from estimators import estimate

        estimate(self.model, self.x, method, CHAINS, seed=0).numpy()


class TrackEvaluationRate:
    """naive MC's evaluation rate / AIS's (with gradients), on the same decoder, in one process."""

    params = (list(MODELS),)
    param_names = ("model",)
    timeout = 600
    unit = "ratio"

    def track_evaluation_rate_ratio(self, model):
        model, x = _model_and_data(model)
        return evaluation_rate(model, x, NAIVE_MC, NAIVE_SAMPLES) / evaluation_rate(
            model, x, SPECS[1], CHAINS
        )


TFP_STEPS, TFP_LEAPFROG = 200, 10


def _tfp_rate(model, x):
    """Evaluations (with gradients) per second of TFP's ``sample_annealed_importance_chain``
    with its HMC kernel on the same path from the prior, K chains, T steps, L leapfrog steps,
    counted as the suite counts AIS's: K T (L + 1) per point (best of 3 warm calls)."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    def target(z):
        return model.prior.log_prob(z) + model.likelihood(z).log_prob(x)

    @tf.function(jit_compile=True)
    def run(seed):
        z0 = model.prior.sample([CHAINS, x.shape[0]], seed=seed)
        _, log_w, _ = tfp.mcmc.sample_annealed_importance_chain(
            num_steps=TFP_STEPS,
            proposal_log_prob_fn=model.prior.log_prob,
            target_log_prob_fn=target,
            current_state=z0,
            make_kernel_fn=lambda tlp: tfp.mcmc.HamiltonianMonteCarlo(
                tlp, step_size=0.1, num_leapfrog_steps=TFP_LEAPFROG
            ),
            seed=seed,
        )
        return tf.reduce_logsumexp(log_w, axis=0)

    best = best_seconds(lambda: run(tf.constant([1, 0], tf.int32)).numpy())
    return CHAINS * TFP_STEPS * (TFP_LEAPFROG + 1) * x.shape[0] / best


class TrackRateAgainstTFP:
    """TFP's ``sample_annealed_importance_chain``'s evaluation rate / the suite's AIS's, on the
    same decoder and path (from the prior), K = 16, T = 200, L = 10, in one process: at most 1
    means the suite's loop (pilot and chunks included) is as lean as TFP's (lower is better, as
    asv reads it)."""

    params = (list(MODELS),)
    param_names = ("model",)
    timeout = 900
    unit = "ratio"

    def track_tfp_rate_over_suite(self, model):
        model, x = _model_and_data(model)
        spec = f"{AIS}:start=prior,steps={TFP_STEPS}"
        return _tfp_rate(model, x) / evaluation_rate(model, x, spec, CHAINS)
