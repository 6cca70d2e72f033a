"""The ``estimators`` command line: a thin face over sweep -> summary -> report (DESIGN §6).

    estimators run [--preset default] [--quick] [--models a,b] [--methods m1,m2]
                   [--num-samples 1,4,16] [--repeats R] [--seed S] [--out reports/NAME] [--quiet]
                   [--workers N | --scheduler tcp://HOST:PORT]
    estimators report RESULTS_DIR
    estimators compare OLD_DIR NEW_DIR [--metric rmse] [--threshold 1.5] [--fail-on-regression]
    estimators train NAME [--out DIR] [--epochs N] [--seed S] [--no-evaluate] [--quiet]
    estimators list

TensorFlow is imported only inside ``run`` (and ``train``), so ``report``, ``compare``, ``list``
and ``--help`` start without it. Bad names or arguments: one line on stderr and exit code 2;
unreadable or mismatched results: exit code 1.
"""
import importlib.util
import json
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from estimators import methods as registry
from estimators import presets
from estimators.distributed import ClusterError
from estimators.results import ResultsError, load_results

app = typer.Typer(help="Bias, variance and speed of Monte Carlo estimators of log p(x).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
errors = Console(stderr=True)

USAGE_ERROR, RESULTS_ERROR = 2, 1


def _fail(message, code):
    errors.print(f"error: {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _names(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _method_specs(value):
    """Split --methods on commas, keeping a spec's options together: in
    "naive_mc,ais:steps=10,schedule=linear" the piece "schedule=linear" belongs to the ais spec."""
    specs = []
    for piece in _names(value) or []:
        if "=" in piece and ":" not in piece and specs:
            specs[-1] += "," + piece
        else:
            specs.append(piece)
    return specs or None


def _integers(value):
    try:
        return [int(v) for v in _names(value)] if value else None
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {value!r}") from None


@app.command()
def run(
    preset: str = typer.Option("default", help="preset name (see `estimators list`)"),
    quick: bool = typer.Option(False, help="shrink the preset to a smoke run of seconds"),
    models: Optional[str] = typer.Option(None, help="comma-separated subset of the preset's models"),
    methods: Optional[str] = typer.Option(None, help="comma-separated methods (default: the preset's)"),
    num_samples: Optional[str] = typer.Option(None, help="comma-separated M values, e.g. 1,4,16"),
    repeats: Optional[int] = typer.Option(None, min=2, help="repeats per cell (default: the preset's)"),
    seed: int = typer.Option(0, help="the sweep's seed; every cell's stream is split from it"),
    out: Optional[Path] = typer.Option(None, help="output folder [default: reports/PRESET]"),
    quiet: bool = typer.Option(False, help="no progress bar"),
    xla: Optional[bool] = typer.Option(None, "--xla/--no-xla",
                                       help="XLA or graph mode [default: XLA on GPU, graph on CPU]"),
    workers: Optional[int] = typer.Option(None, help="run the cells on a local Dask cluster of N "
                                                     "worker processes [default: in this process]"),
    scheduler: Optional[str] = typer.Option(None, help="run the cells on an existing Dask cluster, "
                                                       "e.g. tcp://HOST:8786"),
):
    """Sweep a preset's models x methods x M, then write the report. Rerun to resume."""
    method_list, sample_list = _method_specs(methods), _integers(num_samples)
    if preset not in presets.PRESETS:
        _fail(f"unknown preset {preset!r}; choose from {', '.join(sorted(presets.PRESETS))}",
              USAGE_ERROR)
    for method in method_list or []:
        try:
            registry.parse(method)
        except ValueError as err:
            _fail(str(err), USAGE_ERROR)
    out = out or Path("reports") / (f"{preset}-quick" if quick else preset)
    started = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    cluster = ExitStack()  # closed (a local cluster shut down) however the run ends
    client = _start_cluster(cluster, workers, scheduler)
    try:
        from estimators.report import write_report
        from estimators.sweep import sweep
        chosen = presets.select(presets.get_preset(preset, quick=quick), models=_names(models),
                                methods=method_list, num_samples=sample_list, repeats=repeats)
        df = sweep(chosen.models, chosen.methods, chosen.num_samples, chosen.repeats,
                   chosen.data, seed, out=out, progress=not quiet,
                   jit_compile="auto" if xla is None else xla, min_chunk=chosen.min_chunk,
                   metadata={"preset": preset, "quick": quick}, latents=chosen.latents,
                   client=client)
    except presets.UnknownNameError as err:
        _fail(str(err), USAGE_ERROR)
    except ResultsError as err:
        _fail(str(err), RESULTS_ERROR)
    except ValueError as err:
        _fail(str(err), USAGE_ERROR)
    except OSError as err:  # e.g. an --out that cannot be created or written
        _fail(f"cannot write results: {err}", RESULTS_ERROR)
    except KeyboardInterrupt:
        _fail(f"interrupted; finished cells are saved in {out}/cells: rerun the same command to "
              "resume", 130)
    except ClusterError as err:
        _fail(f"{err}; finished cells are saved in {out}/cells", RESULTS_ERROR)
    finally:
        cluster.close()
    summary = _write_report(df, out, write_report)
    _print_findings(summary)
    console.print(f"report: {out / 'report.html'}  ({time.perf_counter() - started:.1f} s in all)")


def _start_cluster(stack, workers, scheduler):
    """The Dask client of --workers N (a local cluster) or --scheduler ADDRESS, entered into
    ``stack``; None without either (the sweep runs in this process). Prints the dashboard."""
    from estimators.distributed import cluster_client, describe_cluster
    if workers is not None and workers < 1:
        _fail(f"--workers must be at least 1; got {workers}", USAGE_ERROR)
    if workers is not None and scheduler is not None:
        _fail("give --workers (a local cluster) or --scheduler (an existing one), not both",
              USAGE_ERROR)
    try:
        client = stack.enter_context(cluster_client(workers, scheduler))
    except (ClusterError, ValueError) as err:
        _fail(str(err), USAGE_ERROR)
    if client is not None:
        info = describe_cluster(client)
        dashboard = info["dashboard"] or "none"
        if workers is not None and importlib.util.find_spec("bokeh") is None:
            dashboard += " (it needs bokeh: pip install bokeh)"
        console.print(f"Dask cluster {info['scheduler']}: {info['workers']} workers, "
                      f"{info['threads']} threads on {len(info['hosts'])} host(s); dashboard: "
                      f"{dashboard}", highlight=False, soft_wrap=True)
    return client


@app.command()
def report(results_dir: Path = typer.Argument(..., help="a folder holding results.parquet")):
    """Re-render summary.csv, the figures and report.md/html from saved results."""
    from estimators.report import write_report
    summary = _write_report(_load(results_dir), results_dir, write_report)
    _print_findings(summary)
    console.print(f"report: {results_dir / 'report.html'}")


@app.command()
def compare(
    old_dir: Path = typer.Argument(..., help="baseline results folder"),
    new_dir: Path = typer.Argument(..., help="results folder to check"),
    metric: str = typer.Option("rmse", help="abs_bias | variance | rmse | seconds"),
    threshold: float = typer.Option(1.5, help="a regression: new/old above this (geometric mean "
                                              "over M per model x method)"),
    atol: float = typer.Option(1e-6, help="ignore cells where both runs are below this"),
    fail_on_regression: bool = typer.Option(False, help="exit 1 when the metric regresses"),
):
    """Side-by-side bias, variance and time of two runs, with new/old ratios."""
    from estimators.summary import METRICS, compare as compare_summaries, summarize, timing_mismatch
    if metric not in METRICS:
        _fail(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}", USAGE_ERROR)
    old_df, new_df = _load(old_dir), _load(new_dir)
    mismatch = timing_mismatch(old_df.attrs, new_df.attrs)
    if mismatch:
        errors.print(f"warning: {mismatch}", highlight=False, soft_wrap=True)
    old, new = summarize(old_df), summarize(new_df)
    try:
        table, regressions = compare_summaries(old, new, metric, threshold, atol)
    except ValueError as err:
        _fail(str(err), USAGE_ERROR)
    shown = Table("model", "method", "M", "|bias| old", "new", "ratio", "variance old", "new",
                  "ratio", "seconds old", "new", "ratio", title=f"{old_dir} → {new_dir}")
    for row in table.itertuples():
        shown.add_row(row.model, row.method, str(row.num_samples),
                      *(f"{getattr(row, f'{c}_{s}'):.3g}" for c in ("abs_bias", "variance", "seconds")
                        for s in ("old", "new", "ratio")))
    console.print(shown)
    if regressions.empty:
        console.print(f"no regression in {metric} (threshold {threshold}x)")
        return
    for row in regressions.itertuples():
        console.print(f"[red]REGRESSION[/red] {row.model}/{row.method}: {metric} x{row.ratio:.3g} "
                      f"(threshold {threshold}x)")
    if fail_on_regression:
        raise typer.Exit(1)


@app.command("list")
def list_():
    """Presets, methods and (for a preset) its models."""
    table = Table("preset", "description", title="presets (estimators run --preset NAME)")
    for name in sorted(presets.PRESETS):
        table.add_row(name, presets.describe(name))
    console.print(table)
    # Methods as plain lines: their descriptions and options do not fit a table's columns.
    console.print("\nmethods (--methods a,b; with options as a spec: ais:steps=1000,schedule=linear)",
                  style="italic", highlight=False)
    for row in registry.table():
        console.print(f"  [bold]{row['method']}[/bold]: {row['description']}", highlight=False,
                      soft_wrap=True)
        console.print(f"      returns {row['returns']}, a {row['bound']}; num_samples counts "
                      f"{row['num_samples']}; cost per point {row['cost']}; needs "
                      f"{row['needs']}", highlight=False, soft_wrap=True)
        if row["options"] != "-":
            console.print(f"      options: {row['options']}", highlight=False, soft_wrap=True)
    console.print()
    # The shipped models' manifests are plain JSON: listing them needs no TensorFlow.
    table = Table("model", "data", "test log p(x)", "test ELBO",
                  title="trained models (estimators.load_model(NAME); the digits preset)")
    for path in sorted((Path(__file__).parent / "zoo").glob("*.json")):
        info = json.loads(path.read_text())
        results = info.get("results", {})
        table.add_row(info.get("name", path.stem), str(info.get("data", "?")),
                      f"{results.get('test_log_p', float('nan')):.3f}",
                      f"{results.get('test_elbo', float('nan')):.3f}")
    console.print(table)


# --------------------------------------------------------------------------- train

@app.command()
def train(
    name: str = typer.Argument(..., help="zoo model to (re)train, e.g. digits-gaussian-d8"),
    out: Optional[Path] = typer.Option(None, help="folder for NAME.npz + NAME.json "
                                       "(default: the package's zoo, replacing the shipped files)"),
    epochs: Optional[int] = typer.Option(None, help="maximum epochs (default: the recipe's)"),
    seed: Optional[int] = typer.Option(None, help="training seed (default: the recipe's)"),
    evaluate: bool = typer.Option(True, help="score the trained model (test ELBO, reference log p)"),
    quiet: bool = typer.Option(False, help="no progress bar"),
):
    """Fit a zoo model's decoder and encoder from its recipe and save them for reuse."""
    from estimators.train import RECIPES, train_named
    if name not in RECIPES:
        _fail(f"unknown model {name!r}; trainable: {', '.join(sorted(RECIPES))}", USAGE_ERROR)
    if epochs is not None and epochs <= 0:
        _fail(f"--epochs must be positive; got {epochs}", USAGE_ERROR)
    started = time.perf_counter()
    result = train_named(name, out, epochs=epochs, seed=seed, progress=not quiet, evaluate=evaluate)
    console.print(f"trained {name} in {time.perf_counter() - started:.0f} s")
    for key, value in (result.get("results") or {}).items():
        console.print(f"  {key}: {value}", highlight=False)


# --------------------------------------------------------------------------- helpers

def _load(folder):
    try:
        return load_results(folder)
    except ResultsError as err:
        _fail(str(err), RESULTS_ERROR)


def _write_report(df, folder, write_report):
    from estimators.summary import summarize
    summary = summarize(df)
    write_report(df, folder, summary=summary)
    return summary


def _print_findings(summary):
    """The verdicts and slopes, for the terminal."""
    from estimators.summary import fit_slopes, verdicts
    for model, text in verdicts(summary).items():
        console.print(f"[bold]{model}[/bold]: {text}", highlight=False)
    slopes = fit_slopes(summary)[["model", "method", "variance_slope", "bias_slope", "note"]]
    console.print("\nlog-log slopes against M (upper half of the M range; IS expects -1):")
    console.print(slopes.to_string(index=False, float_format="{:.2f}".format), highlight=False,
                  soft_wrap=True)


def main():
    app()


if __name__ == "__main__":
    main()
