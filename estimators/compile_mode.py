"""XLA or TensorFlow graph mode on CPU, per (model, method): measured once, then remembered.

Neither mode wins everywhere on CPU. Measured on the default and digits presets' models (warm
calls as the sweep makes them, medians of 5), graph mode took 0.48x (GMM, naive MC) to 2.65x
(linear-Gaussian, ELBO) the time of XLA at M = 4096, and the winner changed with the model and the
method, not only with M. AIS, BDMC and SMC are the exception: their many small leapfrog ops ran
~10x faster under XLA everywhere, so the registry fixes them to XLA (``Method.cpu_jit_compile``).

For the others the sweep times a warm call in each mode (``measure``) at M = ``PROBE_SAMPLES``
(or the pair's largest M if smaller) with the cell's own chunk and rows, and takes the faster.
XLA and graph mode turn the same random bits into different normals, so the choice decides the
numbers of a seed. To keep a seed's numbers fixed on a machine the choice is remembered: per
(model fingerprint and data, method, shapes, machine) in ``compile_modes.json`` in the reference
cache folder ($ESTIMATORS_CACHE, else ~/.cache/estimators), and a resumed results folder keeps
the mode of the cells it already holds. ``--xla`` / ``--no-xla`` pin one mode everywhere.
"""

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from estimators.reference import reference_cache_dir

PROBE_SAMPLES = 1024  # 4 chunks of 256: past the per-call overhead, cheap next to a sweep
TIMED_CALLS = 3  # per mode, interleaved, after one untimed (compiling) call each
CHOICES_FILE = "compile_modes.json"


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
    path = Path(path)
    choices = load_choices(path)
    choices[key] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(choices, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
