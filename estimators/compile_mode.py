"""XLA or TensorFlow graph mode on CPU, per (model, method): by a fixed rule, or timed on request.

XLA and graph mode turn the same Philox bits into different normals, so the mode decides the
numbers a seed gives. A benchmark suite's seed should give the same numbers on every machine,
so by default the mode comes from a rule (``rule``), not from a clock. The rule was read off
warm calls as the sweep makes them on the default and digits presets' models (graph-mode over
XLA seconds at M = 4096; docs/performance.md):

- AIS, BDMC and SMC: XLA (``Method.cpu_jit_compile``): their many small leapfrog ops ran ~10x
  faster under XLA everywhere.
- Importance sampling of log p^(x) on a Gaussian mixture or a small infinite mixture
  (D <= ``SMALL_DATA_DIM``): graph mode (0.48-0.87 of XLA's time).
- Everything else, the ELBO included: XLA (graph mode took 1.1-2.65x XLA's time).

On GPU the sweep always uses XLA. ``jit_compile="timed"`` (``estimators run --timed-compile``)
restores the older choice: time a warm call in each mode (``measure``) and take the faster,
remembered per (model parameters and data, method, shapes, machine) in ``compile_modes.json`` in
the cache folder ($ESTIMATORS_CACHE, else ~/.cache/estimators). A resumed results folder keeps
the mode of the cells it already holds, whichever way it was chosen.
"""

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from estimators.files import atomic_write
from estimators.models.gaussian_mixture import GaussianMixture
from estimators.models.infinite_mixture import InfiniteMixture
from estimators.reference import reference_cache_dir

SMALL_DATA_DIM = 16  # infinite mixtures up to this D run importance sampling in graph mode
PROBE_SAMPLES = 1024  # timed choice: 4 chunks of 256, past the per-call overhead
TIMED_CALLS = 3  # per mode, interleaved, after one untimed (compiling) call each
CHOICES_FILE = "compile_modes.json"


def rule(spec, model):
    """(jit_compile, why): the default compile mode of ``spec`` on ``model`` on CPU."""
    method = spec.method
    if method.cpu_jit_compile is not None:
        return bool(method.cpu_jit_compile), "registry"
    small = isinstance(model, GaussianMixture) or (
        isinstance(model, InfiniteMixture) and model.data_dim <= SMALL_DATA_DIM
    )
    if small and not method.returns_elbo:
        return False, "rule: importance sampling on a small mixture"
    return True, "rule"


def measure(call, timed_calls=TIMED_CALLS):
    """Time ``call(jit_compile)`` in both modes; returns {xla_seconds, graph_seconds,
    jit_compile (the faster), compile_seconds (both first calls)}. ``call`` must finish its work
    (materialise the result) before returning."""
    start = time.perf_counter()
    for mode in (True, False):
        call(mode)  # compiles
    compile_seconds = time.perf_counter() - start
    seconds = {True: [], False: []}
    for _ in range(timed_calls):
        for mode in (True, False):  # interleaved: drifting machine load hits both alike
            start = time.perf_counter()
            call(mode)
            seconds[mode].append(time.perf_counter() - start)
    xla, graph = float(np.median(seconds[True])), float(np.median(seconds[False]))
    return {
        "xla_seconds": xla,
        "graph_seconds": graph,
        "jit_compile": bool(xla <= graph),
        "compile_seconds": compile_seconds,
    }


def timed(key, call, remember=True, path=None):
    """The timed choice for ``key`` (a JSON-able list naming model, method, shapes): the one
    remembered in ``path`` for this machine, else ``measure(call)``, then remembered."""
    path = choices_path() if path is None else Path(path)
    key = json.dumps([*key, machine()])
    remembered = load_choices(path).get(key)
    if remembered is not None:
        return {**remembered, "source": "remembered"}
    record = measure(call)
    if remember:
        remember_choice(path, key, record)
    return {**record, "source": "measured"}


def machine():
    """What the remembered choices are valid for: the CPU, its core count, TensorFlow."""
    return f"{platform.machine()}|{platform.processor()}|{os.cpu_count()}|tf{tf.__version__}"


def choices_path(directory=None):
    return reference_cache_dir(directory) / CHOICES_FILE


def load_choices(path):
    """{key: record} from ``path``; {} when it is missing or unreadable (then measured again)."""
    try:
        choices = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return choices if isinstance(choices, dict) else {}


def remember_choice(path, key, record):
    """Add ``record`` under ``key`` to the JSON file at ``path`` (written atomically)."""
    choices = load_choices(path)
    choices[key] = record
    text = json.dumps(choices, indent=1, sort_keys=True).encode()
    atomic_write(path, lambda f: f.write(text))
