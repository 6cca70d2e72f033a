"""Fit an infinite mixture (decoder) and its amortized posterior (encoder) to data.

Three objectives, all maximised with Adam in XLA-compiled steps:

``"elbo"`` (a VAE). With z = mu_phi(x) + sigma_phi(x) * eps, eps ~ N(0, I),
    ELBO(x) = E_q[log p(z) + log p_theta(x | z) - log q_phi(z | x)]  <=  log p_theta(x),
estimated with k reparameterized samples; decoder and encoder are trained jointly.

``"iwae"`` (Burda et al. 2016): the importance-weighted bound with k > 1 samples,
    L_k(x) = E[logsumexp_i log w_i - log k],   log w_i = log p(z_i) + log p(x | z_i) - log q(z_i | x),
which tightens toward log p(x) as k grows (L_1 = ELBO).

``"ml"`` (the "maximum likelihood" route, with no encoder during training): maximise the plain
Monte Carlo estimate of log p(x) with k prior samples z_1..z_k ~ N(0, I) shared by the batch,
    log p^(x) = logsumexp_i log p(x | z_i) - log k.
With a fixed decoder variance sigma^2, log p(x | z) = -||x - g(z)||^2 / (2 sigma^2) + const, so
this is a soft-min of the L2 reconstruction errors over the k decoded prior samples: each x pulls
on the decoded samples nearest to it. It is a biased (low) estimate of log p(x) whose bias grows with
the dimension, which is why the VAE needs an encoder. An encoder is fitted afterwards (ELBO, decoder
frozen) so the model can still be used with posterior-IS.

Early stopping watches the objective on a held-out validation split (fixed noise each epoch, so
epochs are compared with common random numbers) and restores the best weights.
"""

import dataclasses
import math
import time

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from estimators import data as datasets
from estimators import methods as registry
from estimators import sampling
from estimators.models import AmortizedPosterior, InfiniteMixture
from estimators.models.autoregressive import AUTOREGRESSIVE_KINDS, ConditionalMADE
from estimators.nn import MLP
from estimators.progress import ProgressBar

# The objectives; the VAE's is the registry's ELBO (the same quantity the method estimates).
ELBO = registry.method_with(returns="ELBO")
OBJECTIVES = (ELBO, "iwae", "ml")


# ----------------------------------------------------------------------------- the model


def build_model(
    data_dim,
    latent_dim,
    likelihood="gaussian",
    *,
    decoder_hidden=(128, 128),
    encoder_hidden=(128,),
    activation="tanh",
    scale="learned",
    scale_floor=0.01,
    init_scale=None,
    x_init=None,
    seed=0,
    dtype=tf.float32,
):
    """A fresh InfiniteMixture with an AmortizedPosterior attached as ``.amortized_posterior``.

    decoder: MLP z [d] -> hidden -> [D] (Gaussian mean, or Bernoulli logits); for the
    autoregressive likelihoods a ``ConditionalMADE`` (x, z) -> per-pixel parameters with hidden
    layers ``decoder_hidden`` and Gaussian scale floor ``scale_floor`` (``scale`` is not used);
    encoder: MLP x [D] -> hidden -> [2d] (loc and softplus scale of q(z | x)).
    ``scale`` (Gaussian only): "learned" = a per-dimension log sigma variable, kept >= log
    ``scale_floor`` during training; or a float for a fixed sigma.
    ``x_init`` (training data, optional) sets the output bias to the data mean (Bernoulli: its
    logit) and the learned log sigma to the data's log sd, so training starts from the
    independent-dimension fit rather than from noise. ``init_scale`` (a float) instead starts a
    learned sigma at that fraction of the data's sd: a small start keeps the decoder from
    explaining everything as noise and ignoring z (posterior collapse), which low-dimensional
    data invite.
    """
    encoder = MLP(
        [data_dim, *encoder_hidden, 2 * latent_dim], activation, seed=seed + 1, dtype=dtype
    )
    if likelihood in AUTOREGRESSIVE_KINDS:
        model = _autoregressive_model(
            data_dim,
            latent_dim,
            likelihood,
            decoder_hidden,
            activation,
            scale_floor,
            x_init,
            seed,
            dtype,
        )
        model.amortized_posterior = AmortizedPosterior(encoder)
        return model
    decoder = MLP([latent_dim, *decoder_hidden, data_dim], activation, seed=seed, dtype=dtype)
    log_scale = None
    np_dtype = tf.as_dtype(dtype).as_numpy_dtype
    if x_init is not None:
        mean = np.asarray(x_init, np.float64).mean(0)
        if likelihood == "bernoulli":
            mean = np.clip(mean, 1e-3, 1 - 1e-3)
            mean = np.log(mean) - np.log1p(-mean)
        decoder.biases[-1].assign(mean.astype(np_dtype))
    if likelihood == "gaussian" and scale == "learned":
        sd = np.ones(data_dim) if x_init is None else np.asarray(x_init, np.float64).std(0)
        sd = sd if init_scale is None else init_scale * sd
        log_scale = tf.Variable(
            np.log(np.maximum(sd, scale_floor)).astype(np_dtype), name="log_scale"
        )
        model = InfiniteMixture(decoder, latent_dim, likelihood, log_scale=log_scale, dtype=dtype)
    elif likelihood == "gaussian":
        model = InfiniteMixture(decoder, latent_dim, likelihood, scale=float(scale), dtype=dtype)
    else:
        model = InfiniteMixture(decoder, latent_dim, likelihood, dtype=dtype)
    model.amortized_posterior = AmortizedPosterior(encoder)
    return model


def _autoregressive_model(
    data_dim, latent_dim, likelihood, hidden, activation, scale_floor, x_init, seed, dtype
):
    """An InfiniteMixture whose decoder is a ConditionalMADE (x, z) -> per-pixel parameters.

    With ``x_init``, the output biases start at the independent-pixel fit: the data mean's logit
    (Bernoulli), or the mean and a raw scale with scale_floor + softplus(raw) = the data's sd
    (Gaussian)."""
    num_params = AUTOREGRESSIVE_KINDS[likelihood]
    network = ConditionalMADE(
        data_dim, latent_dim, hidden, num_params, activation, seed=seed, dtype=dtype
    )
    if x_init is not None:
        x_init = np.asarray(x_init, np.float64)
        mean = x_init.mean(0)
        if likelihood == "autoregressive_bernoulli":
            mean = np.clip(mean, 1e-3, 1 - 1e-3)
            bias = np.log(mean) - np.log1p(-mean)
        else:
            excess = np.maximum(x_init.std(0) - scale_floor, 1e-3)
            bias = np.concatenate([mean, excess + np.log(-np.expm1(-excess))])  # softplus^-1
        network.biases[-1].assign(bias.astype(tf.as_dtype(dtype).as_numpy_dtype))
    return InfiniteMixture(network, latent_dim, likelihood, min_scale=scale_floor, dtype=dtype)


# ----------------------------------------------------------------------------- objectives


def log_weights(model, x, k, seed):
    """[k, B] importance log weights log p(z) + log p(x | z) - log q(z | x), z ~ q(z | x)."""
    q = model.amortized_posterior(x)
    z = sampling.sample(q, [k], seed)  # [k, B, d]
    return model.prior.log_prob(z) + model.likelihood(z).log_prob(x) - q.log_prob(z)


def objective_value(model, x, objective, k, seed, beta=1.0):
    """The per-batch mean of the objective (nats per data point); see the module docstring.

    ``beta`` < 1 (KL warm-up, "elbo" only) down-weights the prior and entropy terms:
    E_q[log p(x | z) + beta (log p(z) - log q(z | x))]; beta = 1 is the ELBO.
    """
    if objective == ELBO:
        q = model.amortized_posterior(x)
        z = sampling.sample(q, [k], seed)  # [k, B, d]
        kl_terms = model.prior.log_prob(z) - q.log_prob(z)
        return tf.reduce_mean(model.likelihood(z).log_prob(x) + beta * kl_terms)
    if objective == "iwae":
        lw = log_weights(model, x, k, seed)
        return tf.reduce_mean(tf.reduce_logsumexp(lw, axis=0)) - math.log(k)
    if objective == "ml":
        z = sampling.sample(model.prior, [k, 1], seed)  # [k, 1, d]: shared by the batch
        log_lik = model.likelihood(z).log_prob(x)  # [k, B]
        return tf.reduce_mean(tf.reduce_logsumexp(log_lik, axis=0)) - math.log(k)
    raise ValueError(f"unknown objective {objective!r}; choose from {OBJECTIVES}")


class Adam:
    """Adam (Kingma & Ba 2015) on a fixed list of variables; its update runs inside XLA.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    theta <- theta + lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)   (ascent: we maximise)
    """

    def __init__(self, variables, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-7):
        self.variables = list(variables)
        self.learning_rate, self.beta1, self.beta2, self.epsilon = (
            learning_rate,
            beta1,
            beta2,
            epsilon,
        )
        self.m = [tf.Variable(tf.zeros_like(v)) for v in self.variables]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in self.variables]
        self.t = tf.Variable(0.0, dtype=self.variables[0].dtype)

    def ascend(self, grads):
        t = self.t.assign_add(1.0)
        step = self.learning_rate * tf.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        for var, g, m, v in zip(self.variables, grads, self.m, self.v, strict=True):
            if g is None:
                continue
            m.assign(self.beta1 * m + (1.0 - self.beta1) * g)
            v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(g))
            var.assign_add(step * m / (tf.sqrt(v) + self.epsilon))


def _make_step(model, objective, k, variables, optimizer, log_floor, weight_decay=0.0, n_train=1):
    """The compiled training step: one Adam ascent step on the batch objective, less
    ``weight_decay`` sum ||W||^2 / n_train over the decoder's weight matrices (a Gaussian prior
    on them, spread over the training points; biases and sigma are not decayed)."""
    decayed = [v for v in variables if v.shape.rank == 2 and _is_decoder_weight(model, v)]
    decayed = decayed if weight_decay else []

    @tf.function(jit_compile=True)
    def step(x, seed, beta):
        with tf.GradientTape() as tape:
            value = objective_value(model, x, objective, k, seed, beta)
            ascended = value
            if decayed:
                penalty = tf.add_n([tf.reduce_sum(tf.square(w)) for w in decayed])
                ascended = value - (weight_decay / n_train) * penalty
        optimizer.ascend(tape.gradient(ascended, variables))
        if log_floor is not None:  # project the learned log sigma back above its floor
            model.log_scale.assign(tf.maximum(model.log_scale, log_floor))
        return value

    return step


def _is_decoder_weight(model, variable):
    return any(variable is w for w in model.decoder.trainable_variables)


def _make_eval(model, objective, k):
    @tf.function(jit_compile=True)
    def evaluate(x, seed):
        return objective_value(model, x, objective, k, seed)

    return evaluate


# ----------------------------------------------------------------------------- training loop


@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns: the fitted model (best validation weights) and its history."""

    model: InfiniteMixture
    history: list  # one dict per epoch: epoch, phase, train, valid (objective, nats per point)
    initial_valid_elbo: float
    final_valid_elbo: float
    epochs: int  # epochs run, over all phases
    best_epoch: int
    seconds: float
    config: dict


def train(
    x: ArrayLike,
    *,
    latent_dim: int,
    likelihood: str = "gaussian",
    objective: str = ELBO,
    num_importance: int = 1,
    decoder_hidden=(128, 128),
    encoder_hidden=(128,),
    activation="tanh",
    scale="learned",
    scale_floor=0.01,
    init_scale=None,
    epochs=300,
    batch_size=64,
    learning_rate=1e-3,
    warmup_epochs=0,
    refine_encoder_epochs=0,
    validation_fraction=0.1,
    patience=30,
    eval_samples=16,
    weight_decay=0.0,
    dynamic_binarization=False,
    seed=0,
    progress=True,
    dtype=tf.float32,
) -> TrainResult:
    """Fit an InfiniteMixture and an AmortizedPosterior to x [N, D]; returns a ``TrainResult``.

    objective: "elbo" (VAE; k = ``num_importance`` samples averaged), "iwae" (importance-weighted
    bound with k = ``num_importance`` > 1), or "ml" (MC log p(x) with k = ``num_importance``
    prior samples, fixed decoder variance ``scale``; then an encoder fitted by ELBO with the
    decoder frozen, for ``refine_encoder_epochs`` or else ``epochs`` epochs).
    Architecture and scale: see ``build_model``. ``validation_fraction`` of x (a fixed random
    subset) is held out; each phase stops after ``patience`` epochs without a better validation
    objective and keeps its best weights. ``warmup_epochs`` > 0 ("elbo" only): the KL weight beta
    rises linearly from 0 to 1 over those epochs (a cure for posterior collapse); early stopping
    starts after them. ``refine_encoder_epochs`` > 0 adds a last phase that trains the encoder
    alone (ELBO, decoder frozen), shrinking the amortization part of the gap
    KL(q || p(z | x)) that joint training leaves: a better proposal for posterior-IS.
    ``weight_decay`` > 0 subtracts weight_decay * sum ||W||^2 / n_train over the decoder's weight
    matrices from the objective (MAP under a Gaussian prior on them): it keeps a strong decoder,
    such as an autoregressive one on 1,293 images, from overfitting.
    ``dynamic_binarization`` (Bernoulli likelihoods): x holds grey levels g in {0..255}, and every
    training batch is a fresh draw x ~ Bernoulli(g / 255) (Burda et al. 2016's MNIST protocol: the
    model sees a new binarization each epoch, which regularises it); the validation split is one
    fixed draw.
    ``seed`` fixes initialisation, data split, data order and noise: same seed, same weights.
    ``progress=False`` silences the progress bar.
    """
    config = {k: v for k, v in locals().items() if k not in ("x", "progress", "dtype")}
    _check_settings(objective, num_importance, warmup_epochs, likelihood, scale)
    x = np.asarray(x, tf.as_dtype(dtype).as_numpy_dtype)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_valid = max(1, int(round(validation_fraction * len(x))))
    x_valid, x_train = x[order[:n_valid]], x[order[n_valid:]]
    prepare = None
    if dynamic_binarization:
        if "bernoulli" not in likelihood:
            raise ValueError("dynamic_binarization needs a Bernoulli likelihood")
        x_valid = datasets.binarize(x_valid, np.random.default_rng([seed, 28]))
        x_train = x_train / 255.0  # probabilities; each batch is binarized afresh in _fit
        binarizer = np.random.default_rng([seed, 29])

        def prepare(batch):
            return (binarizer.uniform(size=batch.shape) < batch).astype(batch.dtype)

    batch_size = min(batch_size, len(x_train))
    model = build_model(
        x.shape[1],
        latent_dim,
        likelihood,
        decoder_hidden=decoder_hidden,
        encoder_hidden=encoder_hidden,
        activation=activation,
        scale=scale,
        scale_floor=scale_floor,
        init_scale=init_scale,
        x_init=x_train,
        seed=seed,
        dtype=dtype,
    )
    elbo_eval = _make_eval(model, ELBO, eval_samples)
    valid_seed = tf.constant([seed, 1], tf.int64)
    initial_valid_elbo = float(elbo_eval(x_valid, valid_seed))
    history, start, best_epoch, epoch0 = [], time.perf_counter(), 0, 0
    for phase, obj, k, variables, phase_epochs, warmup in _phases(model, config):
        best_epoch, ran = _fit(
            model,
            x_train,
            x_valid,
            obj,
            k,
            variables,
            epochs=phase_epochs,
            warmup_epochs=warmup,
            batch_size=batch_size,
            learning_rate=learning_rate,
            patience=patience,
            eval_samples=eval_samples,
            rng=rng,
            seed=seed,
            phase=phase,
            epoch0=epoch0,
            history=history,
            progress=progress,
            log_floor=_log_floor(model, scale_floor),
            prepare=prepare,
            weight_decay=weight_decay,
        )
        epoch0 += ran
    config.update(
        decoder_hidden=list(decoder_hidden),
        encoder_hidden=list(encoder_hidden),
        batch_size=batch_size,
        n_train=len(x_train),
        n_valid=len(x_valid),
    )
    return TrainResult(
        model=model,
        history=history,
        initial_valid_elbo=initial_valid_elbo,
        final_valid_elbo=float(elbo_eval(x_valid, valid_seed)),
        epochs=epoch0,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - start,
        config=config,
    )


def _check_settings(objective, num_importance, warmup_epochs, likelihood, scale):
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {OBJECTIVES}")
    if objective == "iwae" and num_importance < 2:
        raise ValueError("the IWAE bound needs num_importance >= 2 (k = 1 is the ELBO)")
    if warmup_epochs and objective != ELBO:
        raise ValueError('KL warm-up (warmup_epochs > 0) applies to the "elbo" objective only')
    if objective == "ml" and likelihood == "gaussian" and scale == "learned":
        raise ValueError('the "ml" route fixes the decoder variance: pass scale=<sigma> (a float)')


def _phases(model, config):
    """The training phases: (name, objective, k, variables, max epochs, warm-up epochs)."""
    decoder_vars = list(model.decoder.trainable_variables)
    if model.log_scale is not None:
        decoder_vars.append(model.log_scale)
    encoder_vars = list(model.amortized_posterior.trainable_variables)
    refine = config["refine_encoder_epochs"]
    if config["objective"] == "ml":  # decoder alone by prior-sample ML, then the encoder
        return [
            ("ml", "ml", config["num_importance"], decoder_vars, config["epochs"], 0),
            ("encoder", ELBO, 1, encoder_vars, refine or config["epochs"], 0),
        ]
    phases = [
        (
            config["objective"],
            config["objective"],
            config["num_importance"],
            decoder_vars + encoder_vars,
            config["epochs"],
            config["warmup_epochs"],
        )
    ]
    if refine:
        phases.append(("encoder", ELBO, 1, encoder_vars, refine, 0))
    return phases


def _log_floor(model, scale_floor):
    if model.log_scale is None:
        return None
    return tf.constant(math.log(scale_floor), model.dtype)


def _fit(
    model,
    x_train,
    x_valid,
    objective,
    k,
    variables,
    *,
    epochs,
    warmup_epochs,
    batch_size,
    learning_rate,
    patience,
    eval_samples,
    rng,
    seed,
    phase,
    epoch0,
    history,
    progress,
    log_floor,
    prepare=None,
    weight_decay=0.0,
):
    """One phase of training with early stopping; returns (best epoch, epochs run).

    Ends holding the weights of the best validation epoch after warm-up (or the last weights,
    if the phase never left warm-up)."""
    step = _make_step(
        model,
        objective,
        k,
        variables,
        Adam(variables, learning_rate),
        log_floor,
        weight_decay,
        len(x_train),
    )
    evaluate = _make_eval(model, objective, max(k, eval_samples) if objective != "iwae" else k)
    valid_seed = tf.constant([seed, 2 + epoch0], tf.int64)
    base_seed = tf.constant([seed, 1000 + epoch0], tf.int64)
    steps_per_epoch = len(x_train) // batch_size
    best, best_epoch, best_weights, ran = -np.inf, epoch0, None, 0
    with ProgressBar(epochs, phase, enabled=progress, show_count=True) as bar:
        for epoch in range(epochs):
            perm = rng.permutation(len(x_train))
            beta = tf.constant(
                min(1.0, (epoch + 1) / warmup_epochs) if warmup_epochs else 1.0, model.dtype
            )
            total = 0.0
            for b in range(steps_per_epoch):
                i = epoch * steps_per_epoch + b
                batch = x_train[perm[b * batch_size : (b + 1) * batch_size]]
                batch = batch if prepare is None else prepare(batch)
                total += float(
                    step(batch, tf.random.experimental.stateless_fold_in(base_seed, i), beta)
                )
            valid = float(evaluate(x_valid, valid_seed))
            ran = epoch + 1
            history.append(
                dict(epoch=epoch0 + ran, phase=phase, train=total / steps_per_epoch, valid=valid)
            )
            if epoch + 1 < warmup_epochs:  # the bound is not the target yet: no early stopping
                bar.advance(1, f"warm-up beta {float(beta):.2f}, valid {valid:.3f}")
                continue
            if valid > best:
                best, best_epoch, best_weights = valid, epoch0 + ran, [v.numpy() for v in variables]
            bar.advance(1, f"valid {valid:.3f} (best {best:.3f} @ epoch {best_epoch})")
            if epoch0 + ran - best_epoch >= patience:
                break
    if best_weights is None:  # still warming up when the epochs ran out
        return epoch0 + ran, ran
    for var, value in zip(variables, best_weights, strict=True):
        var.assign(value)
    return best_epoch, ran
