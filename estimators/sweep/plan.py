"""The plan: (models, data, methods, M, repeats, seed) -> frozen, fully decided cells.

A ``Cell`` is one (model, method, M) of the sweep with every setting that decides its numbers:
seed, repeats, compile mode, chunk size and repeats per call. Cells are built once, after the
compile mode of each (model, method) is decided, and never change: a cell's ``settings`` are its
fingerprint's inputs, so the file it is saved in says exactly how its numbers were made.

Repeats are rows. Every row of x gets its own samples inside ``estimate``, so R repeats of a cell
run as R/b calls on x tiled b times (b = ``repeats_per_call``, the largest divisor of R for which
rows x chunk fits ``ROW_CHUNK_BUDGET``: every call has the same shape, one compilation).

Chunks. A chunk is computed whole even where M is smaller, so a cell uses chunk =
min(max(M, min_chunk), max_chunk): cells with M >= max_chunk share one compiled function.
"""

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import tensorflow as tf

from estimators import methods as registry
from estimators.fingerprint import FingerprintError, model_fingerprint
from estimators.models.base import LatentVariableModel
from estimators.record import Skipped

ROW_CHUNK_BUDGET = 2**20  # rows x chunk size of one call: bounds the memory of a chunk
# Bump when the meaning of stored numbers changes (2: method specs, diagnostics; 3: se column).
RESULTS_VERSION = 3
PROGRESS_OVERHEAD = 64  # a cell's fixed cost for the progress bar, in samples per row
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, eq=False)
class ModelInput:
    """A model with its data, as every cell of it needs them (and as a worker receives them).

    x [N, D] and latents [N, d] (exact posterior draws, for bdmc; or None) are NumPy arrays of
    the model's dtype. ``fingerprint`` is a SHA-256 of the model's parameters, the data and the
    latents, or None for a model that cannot be fingerprinted (then nothing saved is reused);
    ``key`` names it in a process's cache of arrived models (``cell.resident``)."""

    name: str
    model: LatentVariableModel
    x: np.ndarray
    latents: np.ndarray | None
    fingerprint: str | None
    key: str
    arrived: bool = False  # True once unpickled in another process (a Dask worker)
    _tensors: dict = field(default_factory=dict, repr=False)  # tiled data and proposals

    @property
    def num_points(self):
        return int(self.x.shape[0])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_tensors"] = {}  # tensors are rebuilt where the model arrives
        state["arrived"] = True
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)


def model_input(name, model, x, latents=None, *, resumable=False):
    """The checked ``ModelInput`` of one model; ValueError naming a bad shape or value."""
    x = model.check_data(x)
    array = x.numpy()
    z = None
    if latents is not None:
        z = tf.convert_to_tensor(np.asarray(latents), model.dtype).numpy()
        if list(z.shape) != [array.shape[0], model.latent_dim]:
            raise ValueError(
                f"latents of {name} must have shape [N, d] = "
                f"{[array.shape[0], model.latent_dim]}; got {list(z.shape)}"
            )
    data = np.ascontiguousarray(array).tobytes()
    data += b"" if z is None else b"latents" + np.ascontiguousarray(z).tobytes()
    try:
        fingerprint = sha256(model_fingerprint(model).encode() + data)
        key = fingerprint
    except FingerprintError as err:
        if resumable:
            raise FingerprintError(
                f"model {name!r} cannot be saved for resuming: {err}; or run the sweep without out="
            ) from None
        fingerprint, key = None, f"unfingerprinted-{name}-{id(model)}"
    return ModelInput(name, model, array, z, fingerprint, key)


@dataclass(frozen=True)
class Cell:
    """One (model, method, M) with every setting that decides its numbers."""

    model: str
    method: str  # canonical spec
    num_samples: int
    repeats: int
    seed: int
    jit_compile: bool
    chunk_size: int
    repeats_per_call: int
    model_fingerprint: str | None
    results_version: int = RESULTS_VERSION

    @property
    def spec(self):
        return registry.parse(self.method)

    @property
    def cell_id(self):
        return f"{self.model}/{self.method}/{self.num_samples}"

    @property
    def settings(self):
        """Everything that determines this cell's numbers (its fingerprint's inputs)."""
        return asdict(self)

    @property
    def fingerprint(self):
        return sha256(json.dumps(self.settings, sort_keys=True).encode())

    @property
    def filename(self):
        """A file name from the cell's names: a method with options gets a hash of its spec."""
        spec = self.spec
        method = spec.name + ("-" + sha256(self.method.encode())[:10] if spec.options else "")
        return f"{self.model}__{method}__M{self.num_samples}.parquet"

    def work(self, num_points):
        """The cell's expected cost for the progress bar: samples per row plus an overhead."""
        return (self.num_samples + PROGRESS_OVERHEAD) * num_points * self.repeats


def layout(num_samples, repeats, num_points, min_chunk, max_chunk):
    """(chunk size, repeats per call) of a cell."""
    chunk = min(max(num_samples, min_chunk), max_chunk)
    max_copies = max(1, ROW_CHUNK_BUDGET // (chunk * num_points))
    # The largest divisor of R that fits: every call has the same shape (one compilation).
    per_call = max(b for b in range(1, repeats + 1) if repeats % b == 0 and b <= max_copies)
    return chunk, per_call


@dataclass(frozen=True)
class Plan:
    inputs: dict  # {model name: ModelInput}
    cells: list  # [Cell], in order: model, method, M
    skipped: list  # [Skipped]
    methods: list  # canonical specs, in the order given
    num_samples: list  # every M of the run, sorted


def applicable_pairs(inputs, specs, budgets):
    """[(model, spec, [M])] that run, and [Skipped] with the registry's reason for those that
    do not (a method that does not apply; M below a method's minimum)."""
    pairs, skipped = [], []
    for name, given in inputs.items():
        for spec in specs:
            try:
                registry.check_applicable(spec, given.model, posterior_samples=given.latents)
            except ValueError as err:
                skipped.append(Skipped(name, spec.canonical, str(err)))
                continue
            minimum = spec.method.min_samples
            too_small = [M for M in budgets[spec.canonical] if M < minimum]
            if too_small:
                skipped.append(
                    Skipped(
                        name,
                        spec.canonical,
                        f"{spec.name} needs num_samples >= {minimum}; skipped M = "
                        f"{', '.join(map(str, too_small))}",
                    )
                )
            pairs.append((name, spec, [M for M in budgets[spec.canonical] if M >= minimum]))
    return pairs, skipped


def plan(
    inputs: dict,
    specs: Sequence,
    budgets: dict,
    repeats: int,
    seed: int,
    mode: Callable,
    min_chunk: int = 1,
    max_chunk: int = 256,
) -> Plan:
    """Every cell of the run. ``mode(model name, spec, Ms) -> bool`` decides the compile mode of
    each (model, method) before its cells exist."""
    pairs, skipped = applicable_pairs(inputs, specs, budgets)
    cells = []
    for name, spec, values in pairs:
        jit_compile = bool(mode(name, spec, values)) if values else True
        for M in values:
            chunk, per_call = layout(M, repeats, inputs[name].num_points, min_chunk, max_chunk)
            cells.append(
                Cell(
                    name,
                    spec.canonical,
                    M,
                    repeats,
                    int(seed),
                    jit_compile,
                    chunk,
                    per_call,
                    inputs[name].fingerprint,
                )
            )
    if not cells:
        raise ValueError(
            "no method applies to any model: "
            + "; ".join(f"{s.model}/{s.method}: {s.reason}" for s in skipped)
        )
    num_samples = sorted({M for values in budgets.values() for M in values})
    return Plan(inputs, cells, skipped, [spec.canonical for spec in specs], num_samples)


def check_arguments(models, methods, num_samples, repeats, data):
    """Validated (method specs, {canonical method: sorted M list}, repeats); ValueError naming
    the problem."""
    if not models:
        raise ValueError("models is empty: pass {name: model}")
    for name in models:
        if not _NAME.match(str(name)):
            raise ValueError(f"model name {name!r} may use only letters, digits, '_', '.' and '-'")
        if name not in data:
            raise ValueError(f"data has no entry for model {name!r}")
    methods = list(methods)
    if not methods:
        raise ValueError("methods is empty")
    specs = [registry.parse(m) for m in methods]
    canonical = [spec.canonical for spec in specs]
    if len(set(canonical)) != len(canonical):
        raise ValueError(f"methods has duplicates (after filling in default options): {canonical}")
    budgets = {}
    for spec in specs:
        values = num_samples
        if isinstance(num_samples, dict):
            given_key = {registry.canonical(k): k for k in num_samples}.get(spec.canonical)
            if given_key is None:
                raise ValueError(f"num_samples has no budget for method {spec.canonical}")
            values = num_samples[given_key]
        values = sorted({int(m) for m in values})
        if not values or values[0] < 1:
            raise ValueError(f"num_samples must be positive integers; got {values}")
        budgets[spec.canonical] = values
    if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 2:
        raise ValueError(f"repeats must be an integer >= 2 (variance needs two); got {repeats!r}")
    return specs, budgets, int(repeats)
