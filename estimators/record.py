"""The run record: what a sweep was asked to do, where it ran and how each cell was computed.

    record = RunRecord(config=RunConfig(...), environment={...}, cells=[CellRecord(...)], ...)
    df.attrs = record.to_json()          # saved with the results (``results.write_table``)
    record = run_record(df)              # read back as one typed object

Every field is required when a record is built, so a sweep that forgets one fails when it
writes, not as a "?" in a report months later. ``from_json`` checks the same on read and names
the first missing field. Standard library only: reports read it without TensorFlow.
"""

from dataclasses import MISSING, asdict, dataclass, field, fields

# A run's jit_compile when the compile mode was chosen per (model, method): its cells record the
# chosen mode (a bool), and may differ from pair to pair.
PER_MODEL_AND_METHOD = "per model and method"


class RecordError(ValueError):
    """Run metadata that lacks a field or has one of the wrong kind."""


@dataclass(frozen=True)
class CellRecord:
    """How one (model, method, M) cell was computed: compiled, chunked, and where it was timed."""

    model: str
    method: str
    num_samples: int
    compile_seconds: float  # the untimed warm-up call; 0 when the cell reused a compiled function
    chunk_size: int
    repeats_per_call: int
    jit_compile: bool  # XLA (True) or graph mode (False)
    host: str | None = None
    worker: str | None = None  # the Dask worker's address, on a cluster
    host_concurrency: int | None = None  # cells its host ran at once, on a cluster

    @property
    def cell_id(self):
        return f"{self.model}/{self.method}/{self.num_samples}"


@dataclass(frozen=True)
class Skipped:
    """A (model, method) the sweep did not run, and why (the registry's words)."""

    model: str
    method: str
    reason: str


@dataclass(frozen=True)
class RunStats:
    wall_seconds: float
    computed_cells: int
    loaded_cells: int  # finished cells read back from the output folder (a resumed run)
    kept_cells: int = 0  # cells of earlier runs into the same folder, outside this run's selection


@dataclass(frozen=True)
class RunConfig:
    """What was asked: the selection, the seed and every setting that decides the numbers."""

    models: list
    methods: list  # canonical method specs
    num_samples: list
    repeats: int
    seed: int
    jit_compile: object  # True, False or PER_MODEL_AND_METHOD
    min_chunk: int
    max_chunk: int
    num_points: dict  # {model: N}
    cell_fingerprints: dict  # {cell id: sha256 of the cell's settings}
    results_version: int
    preset: str | None = None
    quick: bool = False
    extra: dict = field(default_factory=dict)  # any other JSON the caller attached


@dataclass(frozen=True)
class RunRecord:
    config: RunConfig
    environment: dict  # ``environment.environment_info``: packages, device, git commit, threads
    cells: list  # [CellRecord]
    run: RunStats
    skipped: list  # [Skipped]
    cluster: dict | None  # None in-process; else workers, threads, hosts, worker environments
    compile_modes: list  # per (model, method): the mode and how it was chosen

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "RunRecord":
        """The record from ``to_json``'s dict; RecordError naming the first missing field."""
        data = _require(data, cls, "run record")
        return cls(
            config=RunConfig(**_require(data["config"], RunConfig, "config")),
            environment=dict(data["environment"]),
            cells=[CellRecord(**_require(c, CellRecord, "cell record")) for c in data["cells"]],
            run=RunStats(**_require(data["run"], RunStats, "run")),
            skipped=[Skipped(**_require(s, Skipped, "skipped")) for s in data["skipped"]],
            cluster=data["cluster"],
            compile_modes=list(data["compile_modes"]),
        )

    def timing_hosts(self):
        """{host: most cells it ran at once} over the cells that record a host."""
        hosts = {}
        for c in self.cells:
            if c.host is not None:
                hosts[c.host] = max(hosts.get(c.host, 1), c.host_concurrency or 1)
        return hosts


def _require(data, kind, what):
    """``data`` restricted to ``kind``'s fields, after checking that the required ones are there."""
    if not isinstance(data, dict):
        raise RecordError(f"{what} must be a JSON object; got {type(data).__name__}")
    names = {f.name for f in fields(kind)}
    required = [f.name for f in fields(kind) if f.default is f.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise RecordError(f"{what} lacks field(s) {', '.join(missing)}")
    return {k: v for k, v in data.items() if k in names}
