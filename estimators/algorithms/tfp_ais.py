"""``tfp_ais``: a peer library, TFP's annealed importance sampling, run as its documentation shows.

    weights = tfp.mcmc.sample_annealed_importance_chain(
        num_steps=T, proposal_log_prob_fn=prior.log_prob, target_log_prob_fn=log p(x, .),
        current_state=z_0 ~ p(z) [K, N, d],
        make_kernel_fn=lambda f: tfp.mcmc.HamiltonianMonteCarlo(f, step_size, L))
    log p^(x) = logsumexp_k(weights_k) - log K

K chains per data point, the path linear in beta (beta_t = (t + 1) / T), a fixed HMC step size:
nothing is tuned, as in TFP's docstring. Known flaw, measured here and not fixed (TFP issue
#1429): each step builds the kernel for the new temperature but hands it the previous step's
kernel results, whose cached target log-probability and gradient are the *previous*
temperature's, so the HMC accept test compares energies at two temperatures and the move does
not leave the new tempered density invariant: E[w] is no longer p(x) exactly (the registry
declares no bound). The suite's own ``ais`` recomputes both energies at the new temperature
(``hmc.step``). ``tests/test_peers.py`` records the error on a linear-Gaussian.

Diagnostics: ``se`` (the delta method over the K chains' weights, ``logspace``), ``ess``
(Kish), ``accept`` (the acceptance of the last HMC move: TFP returns only the final kernel
results), ``evaluations`` (K T (L + 1) per point).
"""

import tensorflow as tf
import tensorflow_probability as tfp

from estimators import sampling
from estimators.algorithms import logspace
from estimators.algorithms.compiled import cached_function


def run(spec, model, x, num_chains, seed, context):
    options = spec.kwargs
    fn = compiled(model, options, context.jit_compile)
    log_w, accept = fn(x, tf.constant(num_chains, tf.int32), seed)  # [K, N], [N]
    sums = logspace.update_weight_sums(
        logspace.empty_weight_sums(tf.shape(x)[0], model.dtype), log_w
    )
    log_sum_w, _ = logspace.log_sums(sums)
    log_p = log_sum_w - tf.math.log(tf.cast(num_chains, model.dtype))
    evaluations = tf.fill(
        tf.shape(log_p), tf.constant(float(spec.evaluations(num_chains)), model.dtype)
    )
    return log_p, {
        "ess": logspace.sums_ess(sums),
        "se": logspace.delta_method_se(sums, num_chains),
        "accept": accept,
        "evaluations": evaluations,
    }


def compiled(model, options, jit_compile):
    """fn(x [N, D], K, seed) -> (the K chains' log weights [K, N], last acceptance [N])."""
    steps, leapfrog, step_size = options["steps"], options["leapfrog"], options["step_size"]

    def make():
        def compute(x, num_chains, seed):
            prior = model.prior

            def target_log_prob(z):
                return prior.log_prob(z) + model.likelihood(z).log_prob(x)

            def make_kernel(log_prob_fn):
                return tfp.mcmc.HamiltonianMonteCarlo(
                    target_log_prob_fn=log_prob_fn,
                    step_size=tf.constant(step_size, model.dtype),
                    num_leapfrog_steps=leapfrog,
                )

            start_seed, chain_seed = tf.unstack(
                tf.random.experimental.stateless_split(seed, 2, alg=sampling.RNG_ALG)
            )
            start = sampling.sample(prior, tf.stack([num_chains, tf.shape(x)[0]]), start_seed)
            _, log_w, results = tfp.mcmc.sample_annealed_importance_chain(
                num_steps=steps,
                proposal_log_prob_fn=prior.log_prob,
                target_log_prob_fn=target_log_prob,
                current_state=start,
                make_kernel_fn=make_kernel,
                seed=tf.cast(chain_seed, tf.int32),
            )
            accepted = tf.cast(results.inner_results.is_accepted, model.dtype)
            return log_w, tf.reduce_mean(accepted, axis=0)

        return compute

    key = (steps, leapfrog, step_size)
    # Every size open: a static N would meet TFP's loop state with N unknown after one step.
    signature = [
        tf.TensorSpec([None, model.data_dim], model.dtype),
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([2], tf.int64),
    ]
    return cached_function(
        model, "tfp_ais", key, make, jit_compile=jit_compile, input_signature=signature
    )
