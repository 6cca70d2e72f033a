"""The report's "Run and environment" facts, read from the run record (``estimators.record``)."""

import json

import pandas as pd

from estimators import methods as registry
from estimators.environment import device_line
from estimators.record import RunRecord

COMPILE_MODE_NOTE = (
    "On CPU each (model, method) runs in XLA or graph mode: by a fixed rule ('chosen by' says "
    "which part of it; AIS, BDMC and SMC always use XLA), or, with --timed-compile, in the mode "
    "whose warm call was faster at the probe M (measured once per machine and remembered); a "
    "resumed folder keeps its cells' mode. The two modes draw different random streams from one "
    "seed: pin one with --xla or --no-xla to compare runs number by number across machines."
)


def run_facts(record: RunRecord | None, timing_note: str | None = None) -> list[str]:
    """Key facts of the run as 'label: value' lines."""
    if record is None:
        return ["run record: none (this table carries no run metadata)"]
    config, env, run = record.config, record.environment, record.run
    facts = [
        ("preset", config.preset or "—"),
        ("models", ", ".join(config.models)),
        ("methods", ", ".join(config.methods)),
        ("M", ", ".join(str(m) for m in config.num_samples)),
        (
            "repeats × points",
            f"{config.repeats} × {', '.join(str(v) for v in config.num_points.values())}",
        ),
        ("seed", config.seed),
        ("device", device_line(env).removeprefix("device: ").split(";")[0]),
        ("compilation", compilation(record)),
        ("git commit", env.get("git_commit") or "—"),
        ("created", env.get("created") or "—"),
    ]
    if record.cluster:
        facts.append(("cluster", _cluster(record.cluster)))
    if timing_note:
        facts.append(("timing", timing_note))
    kept = f", {run.kept_cells} kept from earlier runs into this folder" if run.kept_cells else ""
    facts.append(
        (
            "sweep wall time",
            f"{run.wall_seconds:.1f} s ({run.computed_cells} cells computed, "
            f"{run.loaded_cells} resumed from disk{kept})",
        )
    )
    packages = env.get("packages") or {}
    if packages:
        facts.append(("packages", ", ".join(f"{k} {v}" for k, v in packages.items())))
    return [f"{label}: {value}" for label, value in facts]


def environment_json(record: RunRecord | None) -> str:
    return json.dumps(record.environment if record else {}, indent=2)


def compilation(record: RunRecord) -> str:
    """How the cells were compiled: one mode, or the mode chosen per model x method."""
    mode = record.config.jit_compile
    if mode is True:
        return "XLA (jit_compile=True)"
    if mode is False:
        return "TensorFlow graph (no XLA)"
    chosen = {}
    for cell in record.cells:
        label = registry.label(cell.method)
        chosen.setdefault("XLA" if cell.jit_compile else "graph mode", set()).add(label)
    parts = [f"{name} for {', '.join(sorted(cells))}" for name, cells in sorted(chosen.items())]
    return ("chosen per model and method: " + "; ".join(parts)) if parts else str(mode)


def _cluster(cluster: dict) -> str:
    hosts = cluster.get("hosts", {})
    per_host = ", ".join(f"{host}: {info['workers']}" for host, info in list(hosts.items())[:4])
    return (
        f"{cluster['workers']} Dask workers, {cluster['threads']} threads, on {len(hosts)} "
        f"host(s) ({per_host}{', ...' if len(hosts) > 4 else ''}); scheduler "
        f"{cluster['scheduler']}"
    )


def compile_mode_table(modes: pd.DataFrame) -> pd.DataFrame:
    """``Summary.compile_modes`` for people: method labels, the mode, the probe's milliseconds."""

    def milliseconds(seconds):
        return (1e3 * seconds).map(lambda v: "" if pd.isna(v) else f"{v:.3g}")

    return pd.DataFrame(
        {
            "model": modes["model"],
            "method": modes["method"].map(registry.label),
            "mode": modes["jit_compile"].map({True: "XLA", False: "graph"}),
            "chosen by": modes["source"],
            "probe M": modes["probe_samples"].map(lambda v: "" if pd.isna(v) else f"{int(v)}"),
            "XLA ms": milliseconds(modes["xla_seconds"]),
            "graph ms": milliseconds(modes["graph_seconds"]),
        }
    )
