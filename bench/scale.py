"""The suite at MNIST size: evaluation rates on a 784-d decoder against the machine's GEMM peak,
AIS against naive MC, and AIS's memory against T and K.

The model is the shipped ``digits28-bernoulli-d32`` (decoder 32 -> 200 -> 200 -> 784, tanh,
Burda et al. 2016's sizes), on 8 of its test points. Every rate is evaluations of log p(x | z)
per second, best of 3 warm calls, in one process:

- ``track_peak_over_naive_flops``: the GEMM peak measured in the same benchmark on a
  [S N, 500] @ [500, 500] XLA matmul (S N = 8192) over naive MC's FLOP rate (evaluations/s x the
  decoder's 2 sum(in x out) multiply-adds per evaluation): 1 would be naive MC at the machine's
  dense-algebra peak; its inverse is the fraction of peak. Elementwise work (tanh, the Bernoulli
  log-likelihood, the logsumexp) is not counted, so 1 is out of reach.
- ``track_naive_over_ais_rate``: naive MC's evaluation rate over AIS's (each AIS evaluation
  with its gradient, about 3 forward passes' work); the target is at most 2 (AIS at least half
  naive MC's rate).

asv reads every number as lower-is-better; these are written that way round.
- ``peakmem_ais``: the process's peak memory for AIS at T in {100, 1000} and K in {16, 64}: the
  chains stream through the temperatures in a compiled loop and through K in chunks, so it
  should be flat in both.
"""

from .common import AIS, NAIVE_MC, best_seconds, evaluation_rate

MODEL = "digits28-bernoulli-d32"
NUM_POINTS = 8
NAIVE_SAMPLES = 2**13
AIS_SPEC, AIS_CHAINS = f"{AIS}:steps=100", 16
PEAK_SHAPE = (8192, 500, 500)  # [S N, 500] @ [500, 500]

_cache = {}


def _model_and_data():
    if MODEL not in _cache:
        from estimators import load_data, load_model

        _cache[MODEL] = (load_model(MODEL), load_data(MODEL, "test")[:NUM_POINTS])
    return _cache[MODEL]


def gemm_peak_flops():
    """FLOP/s of one XLA-compiled float32 [S N, 500] @ [500, 500] matmul (best of 3)."""
    import tensorflow as tf

    rows, inner, cols = PEAK_SHAPE
    a = tf.random.stateless_normal([rows, inner], [0, 1])
    b = tf.random.stateless_normal([inner, cols], [0, 2])
    matmul = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)), jit_compile=True)
    return 2.0 * rows * inner * cols / best_seconds(lambda: matmul(a, b).numpy())


def decoder_flops(model):
    """Multiply-add FLOPs of one decoder pass: 2 sum over layers of fan-in x fan-out."""
    return 2.0 * sum(int(w.shape[0]) * int(w.shape[1]) for w in model.decoder.weights)


class TrackScale:
    """Rates on the 784-d decoder: naive MC against the GEMM peak, AIS against naive MC."""

    timeout = 900
    unit = "ratio"

    def track_peak_over_naive_flops(self):
        model, x = _model_and_data()
        rate = evaluation_rate(model, x, NAIVE_MC, NAIVE_SAMPLES)
        return gemm_peak_flops() / (rate * decoder_flops(model))

    def track_naive_over_ais_rate(self):
        model, x = _model_and_data()
        naive = evaluation_rate(model, x, NAIVE_MC, NAIVE_SAMPLES)
        return naive / evaluation_rate(model, x, AIS_SPEC, AIS_CHAINS)


class MemoryAIS:
    """Peak memory of one AIS call on the 784-d decoder against T and K (should be flat)."""

    params = ([100, 1000], [16, 64])
    param_names = ("steps", "chains")
    timeout = 900

    def peakmem_ais(self, steps, chains):
        from estimators import estimate

        model, x = _model_and_data()
        estimate(model, x, f"{AIS}:steps={steps}", chains, seed=0).numpy()
