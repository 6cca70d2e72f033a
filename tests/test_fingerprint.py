"""model_fingerprint: one fingerprint from public state; it refuses what it cannot see."""

import inspect

import numpy as np
import pytest
import tensorflow as tf

import estimators.models
from estimators import MLP, AmortizedPosterior, InfiniteMixture, LinearGaussian, estimate
from estimators.fingerprint import FingerprintError, model_fingerprint
from estimators.models.base import LatentVariableModel

from conftest import linear_infinite_mixture, make_gmm, make_linear_gaussian, make_nonlinear


def with_encoder(model, seed=0):
    model.amortized_posterior = AmortizedPosterior(MLP([model.data_dim, 8, 4], seed=seed))
    return model


MODELS = {
    "linear_gaussian": make_linear_gaussian,
    "gmm": make_gmm,
    "infinite_mixture": make_nonlinear,
    "with_encoder": lambda: with_encoder(make_nonlinear()),
}


@pytest.mark.parametrize("name", MODELS)
def test_a_model_rebuilt_from_its_declared_arguments_has_its_fingerprint(name):
    model = MODELS[name]()
    twin = type(model)(**model.constructor_arguments())
    twin.amortized_posterior = model.amortized_posterior
    assert model_fingerprint(twin) == model_fingerprint(model)
    assert len(model_fingerprint(model)) == 64


def test_what_changes_the_fingerprint_and_what_does_not():
    model = with_encoder(make_nonlinear())
    before = model_fingerprint(model)
    x = model.sample(4, seed=0)
    for method in ("naive_mc", "prior_is", "posterior_is"):  # caches land on the model
        estimate(model, x, method, 8, seed=0)
    assert model_fingerprint(model) == before
    bias = model.decoder.biases[0]
    bias.assign_add(tf.ones_like(bias))  # a weight
    assert model_fingerprint(model) != before
    bias.assign_sub(tf.ones_like(bias))
    assert model_fingerprint(model) == before
    model.decoder.activation = "relu"  # a declared parameter of a component
    assert model_fingerprint(model) != before
    model.decoder.activation = "tanh"
    model.amortized_posterior = None  # the attached encoder
    assert model_fingerprint(model) != before
    assert model_fingerprint(make_nonlinear(scale=0.31)) != model_fingerprint(make_nonlinear())
    assert model_fingerprint(make_nonlinear(dtype=tf.float64)) != model_fingerprint(
        make_nonlinear()
    )


def test_what_cannot_be_seen_is_refused():
    with pytest.raises(FingerprintError, match=r"model\.decoder \(function <lambda>\)"):
        model_fingerprint(InfiniteMixture(lambda z: z, 2, data_dim=2))
    with pytest.raises(FingerprintError, match="LinearDecoder.*no tf.Variable"):
        model_fingerprint(linear_infinite_mixture(make_linear_gaussian()))  # constants only

    class Undeclared(LinearGaussian):
        def constructor_arguments(self):
            return LatentVariableModel.constructor_arguments(self)

    with pytest.raises(FingerprintError, match="does not declare constructor_arguments"):
        model_fingerprint(Undeclared(np.ones((2, 1)), np.zeros(2), 1.0))


def test_every_model_class_says_what_it_is():
    classes = [getattr(estimators.models, name) for name in estimators.models.__all__]
    for cls in classes + [MLP]:
        assert inspect.getdoc(cls) and inspect.getdoc(cls) != inspect.getdoc(tf.Module), cls
