"""The ``estimators`` command line: a thin face over sweep -> summary -> report (docs/architecture.md).

    estimators run [--preset default] [--quick] [--models a,b] [--methods m1,m2]
                   [--num-samples 1,4,16] [--repeats R] [--seed S] [--out reports/NAME] [--quiet]
                   [--verbose] [--workers N | --scheduler tcp://HOST:PORT]
    estimators report RESULTS_DIR
    estimators compare OLD_DIR NEW_DIR [--metric rmse] [--threshold 1.5] [--alpha 0.01]
                       [--format table|markdown|html|csv|json] [--fail-on-regression]
    estimators train NAME [--out DIR] [--epochs N] [--seed S] [--no-evaluate] [--quiet] [--verbose]
    estimators evaluate MODEL --data FILE [--points N] [--budget SECONDS] [--tolerance NATS]
                        [--out DIR] [--workers N | --scheduler tcp://HOST:PORT]
    estimators list

TensorFlow is imported only inside ``run`` (and ``train``), so ``report``, ``compare``, ``list``
and ``--help`` start without it; its native start-up logging is kept quiet unless ``--verbose``,
and one line names the device. Tables are rich on a terminal and plain text (full names, any
width) when stdout is not one (CI logs, pipes). Exit codes: bad names or arguments, one line on
stderr and 2; unreadable or mismatched results, one line and 1; a failure inside the library,
its traceback and 1.
"""

import importlib.util
import time
from contextlib import ExitStack
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from estimators import methods as registry
from estimators import presets
from estimators.distributed import ClusterError
from estimators.environment import device_line, environment_info, quiet_tensorflow
from estimators.manifests import available_models, manifest
from estimators.results import ResultsError, load_results, run_record
from estimators.tables import format_value, plain_table

app = typer.Typer(
    help="Bias, variance and speed of Monte Carlo estimators of log p(x).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

USAGE_ERROR, RESULTS_ERROR = 2, 1
COMPARE_FORMATS = ("table", "markdown", "html", "csv", "json")


def _fail(message, code):
    errors.print(f"error: {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _names(value):
    """'a, b,a' -> ['a', 'b']: the names in order, each once."""
    return list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip())) if value else None


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
        numbers = [int(v) for v in _names(value)] if value else None
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if numbers and min(numbers) < 1:
        raise typer.BadParameter(f"expected positive integers, got {value!r}")
    return numbers


def _print_table(title, df):
    """A rich table on a terminal; plain text with every name in full otherwise (CI logs, pipes)."""
    if console.is_terminal:
        table = Table(*map(str, df.columns), title=title)
        for row in df.itertuples(index=False):
            table.add_row(*map(format_value, row))
        console.print(table)
    else:
        typer.echo(f"{title}\n{plain_table(df)}\n")


@app.command()
def run(
    preset: str = typer.Option("default", help="preset name (see `estimators list`)"),
    quick: bool = typer.Option(False, help="shrink the preset to a smoke run of seconds"),
    models: str | None = typer.Option(None, help="comma-separated subset of the preset's models"),
    methods: str | None = typer.Option(
        None, help="comma-separated methods (default: the preset's)"
    ),
    num_samples: str | None = typer.Option(None, help="comma-separated M values, e.g. 1,4,16"),
    repeats: int | None = typer.Option(
        None, min=2, help="repeats per cell (default: the preset's)"
    ),
    seed: int = typer.Option(0, help="the sweep's seed; every cell's stream is split from it"),
    out: Path | None = typer.Option(None, help="output folder [default: reports/PRESET]"),
    quiet: bool = typer.Option(False, help="no progress bar"),
    xla: bool | None = typer.Option(
        None,
        "--xla/--no-xla",
        help="XLA or graph mode everywhere [default: XLA on GPU; on CPU a fixed rule per "
        "model and method]",
    ),
    timed_compile: bool = typer.Option(
        False,
        "--timed-compile",
        help="on CPU, time both compile modes per model and method and take the faster "
        "(the numbers of a seed then depend on the machine)",
    ),
    verbose: bool = typer.Option(False, help="show TensorFlow's native start-up logging"),
    workers: int | None = typer.Option(
        None,
        help="run the cells on a local Dask cluster of N worker processes "
        "[default: in this process]",
    ),
    scheduler: str | None = typer.Option(
        None, help="run the cells on an existing Dask cluster, e.g. tcp://HOST:8786"
    ),
):
    """Sweep a preset's models x methods x M, then write the report. Rerun to resume; a rerun
    with fewer models, methods or M keeps the folder's other finished cells in its report."""
    method_list, sample_list = _method_specs(methods), _integers(num_samples)
    if preset not in presets.PRESETS:
        _fail(
            f"unknown preset {preset!r}; choose from {', '.join(sorted(presets.PRESETS))}",
            USAGE_ERROR,
        )
    for method in method_list or []:
        try:
            registry.parse(method)
        except ValueError as err:
            _fail(str(err), USAGE_ERROR)
    _check_cluster_options(workers, scheduler)
    out = out or Path("reports") / (f"{preset}-quick" if quick else preset)
    started = time.perf_counter()
    quiet_tensorflow(verbose)
    try:
        chosen = presets.select(
            presets.get_preset(preset, quick=quick),
            models=_names(models),
            methods=method_list,
            num_samples=sample_list,
            repeats=repeats,
        )
    except presets.UnknownNameError as err:  # bad user input; any other error is the library's
        _fail(str(err), USAGE_ERROR)
    from estimators.report import write_report
    from estimators.sweep import resolve_jit_compile, sweep

    if timed_compile and xla is not None:
        _fail("give --xla/--no-xla (one mode) or --timed-compile, not both", USAGE_ERROR)
    cluster = ExitStack()  # closed (a local cluster shut down) however the run ends
    try:
        client = _start_cluster(cluster, workers, scheduler)
        # "auto"/"timed": the devices that compute decide (the workers' on a cluster)
        jit_compile = ("timed" if timed_compile else "auto") if xla is None else xla
        if client is None:
            shown = resolve_jit_compile(jit_compile)
            console.print(device_line(environment_info(xla=shown)), highlight=False)
        df = sweep(
            chosen.models,
            chosen.methods,
            chosen.num_samples,
            chosen.repeats,
            chosen.data,
            seed,
            out=out,
            progress=not quiet,
            jit_compile=jit_compile,
            min_chunk=chosen.min_chunk,
            metadata={"preset": preset, "quick": quick},
            latents=chosen.latents,
            client=client,
        )
    except ResultsError as err:
        _fail(str(err), RESULTS_ERROR)
    except OSError as err:  # e.g. an --out that cannot be created or written
        _fail(f"cannot write results: {err}", RESULTS_ERROR)
    except KeyboardInterrupt:
        _fail(
            f"interrupted; finished cells are saved in {out}/cells: rerun the same command to "
            "resume",
            130,
        )
    except ClusterError as err:
        _fail(f"{err}; finished cells are saved in {out}/cells", RESULTS_ERROR)
    finally:
        cluster.close()
    summary = _write_report(df, out, write_report)
    _print_findings(summary)
    console.print(f"report: {out / 'report.html'}  ({time.perf_counter() - started:.1f} s in all)")


def _check_cluster_options(workers, scheduler):
    """--workers N (N >= 1) or --scheduler ADDRESS, not both: else a one-line usage error."""
    if workers is not None and workers < 1:
        _fail(f"--workers must be at least 1; got {workers}", USAGE_ERROR)
    if workers is not None and scheduler is not None:
        _fail(
            "give --workers (a local cluster) or --scheduler (an existing one), not both",
            USAGE_ERROR,
        )


def _start_cluster(stack, workers, scheduler):
    """The Dask client of --workers N (a local cluster) or --scheduler ADDRESS, entered into
    ``stack``; None without either (the sweep runs in this process). Prints the dashboard."""
    from estimators.distributed import cluster_client, describe_cluster

    try:
        client = stack.enter_context(cluster_client(workers, scheduler))
    except (ClusterError, ValueError) as err:
        _fail(str(err), USAGE_ERROR)
    if client is not None:
        info = describe_cluster(client)
        dashboard = info["dashboard"] or "none"
        if workers is not None and importlib.util.find_spec("bokeh") is None:
            dashboard += " (it needs bokeh: pip install bokeh)"
        console.print(
            f"Dask cluster {info['scheduler']}: {info['workers']} workers, "
            f"{info['threads']} threads on {len(info['hosts'])} host(s); dashboard: "
            f"{dashboard}",
            highlight=False,
            soft_wrap=True,
        )
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
    threshold: float = typer.Option(
        1.5, help="a regression: new/old above this (geometric mean over M per model x method) ..."
    ),
    alpha: float = typer.Option(
        0.01,
        help="... and significant: the chance that two runs of the "
        "same code flag anything is at most alpha",
    ),
    atol: float = typer.Option(1e-6, help="ignore cells where both runs are below this"),
    output_format: str = typer.Option(
        "table",
        "--format",
        help="table (rich on a terminal, plain text otherwise) | markdown | html | csv | json",
    ),
    fail_on_regression: bool = typer.Option(False, help="exit 1 when the metric regresses"),
):
    """Side-by-side bias, variance, RMSE and time of two runs, with new/old ratios; flags the
    (model, method) pairs whose metric got worse beyond the threshold and beyond noise."""
    from estimators.comparison import METRICS, render
    from estimators.comparison import compare as compare_runs
    from estimators.summary import timing_mismatch

    if metric not in METRICS:
        _fail(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}", USAGE_ERROR)
    if output_format not in COMPARE_FORMATS:
        _fail(
            f"unknown format {output_format!r}; choose from {', '.join(COMPARE_FORMATS)}",
            USAGE_ERROR,
        )
    if not threshold >= 1 or not 0 < alpha < 1:
        _fail(
            f"--threshold must be >= 1 and --alpha in (0, 1); got {threshold} and {alpha}",
            USAGE_ERROR,
        )
    old, new = _load(old_dir), _load(new_dir)
    mismatch = timing_mismatch(run_record(old), run_record(new))
    if mismatch:  # on stderr: stdout stays the table (or the markdown, csv, json asked for)
        errors.print(f"warning: {mismatch}", highlight=False, soft_wrap=True)
    try:
        result = compare_runs(old, new, metric, threshold=threshold, alpha=alpha, atol=atol)
    except ResultsError as err:
        _fail(str(err), RESULTS_ERROR)
    title = f"{old_dir} -> {new_dir}"
    if output_format == "table" and console.is_terminal:
        from estimators.comparison import cell_table, conclusion, pair_table

        _print_table(title, cell_table(result))
        _print_table(f"{METRICS[metric]} per model x method", pair_table(result))
        for line in conclusion(result):
            console.print(line.replace("REGRESSION", "[red]REGRESSION[/red]"), highlight=False)
    else:
        typer.echo(render(result, "plain" if output_format == "table" else output_format, title))
    if fail_on_regression and not result.regressions.empty:
        raise typer.Exit(1)


@app.command("list")
def list_():
    """Presets, methods and the shipped trained models."""
    import pandas as pd

    _print_table(
        "presets (estimators run --preset NAME)",
        pd.DataFrame(
            [(name, presets.describe(name)) for name in sorted(presets.PRESETS)],
            columns=["preset", "description"],
        ),
    )
    # Methods as plain lines: their descriptions and options do not fit a table's columns.
    console.print(
        "\nmethods (--methods a,b; with options as a spec: ais:steps=1000,schedule=linear)",
        style="italic",
        highlight=False,
    )
    for row in registry.table():
        console.print(
            f"  [bold]{row['method']}[/bold]: {row['description']}", highlight=False, soft_wrap=True
        )
        bound = "no bound" if row["bound"] == registry.NO_BOUND else f"a {row['bound']}"
        console.print(
            f"      returns {row['returns']}, {bound}; num_samples counts "
            f"{row['num_samples']}; cost per point {row['cost']}; needs "
            f"{row['needs']}",
            highlight=False,
            soft_wrap=True,
        )
        if row["options"] != "-":
            console.print(f"      options: {row['options']}", highlight=False, soft_wrap=True)
    console.print()
    rows = []
    for name in available_models():  # plain JSON manifests: no TensorFlow
        info = manifest(name)
        results = info.get("results", {})
        rows.append(
            (
                name,
                str(info.get("data", "?")),
                results.get("test_log_p", float("nan")),
                results.get("test_elbo", float("nan")),
            )
        )
    _print_table(
        "trained models (estimators.load_model(NAME); the digits preset)",
        pd.DataFrame(rows, columns=["model", "data", "test log p(x)", "test ELBO"]),
    )


# --------------------------------------------------------------------------- evaluate


@app.command()
def evaluate(
    model: str = typer.Argument(
        ...,
        help="a zoo name (estimators list), a saved Keras decoder (.keras, .h5 or a SavedModel "
        "folder) or a Python object path package.module:attribute (a model, or a function "
        "returning one)",
    ),
    data: Path = typer.Option(..., help="the data: .npy, .npz, .csv or .parquet, one row a point"),
    points: int | None = typer.Option(None, help="use the first N rows [default: all]"),
    budget: float = typer.Option(600.0, help="seconds for certifying an estimator"),
    tolerance: float = typer.Option(0.1, help="nats: the mean sandwich width to reach"),
    seed: int = typer.Option(0, help="every stage's seed is folded from it"),
    out: Path | None = typer.Option(None, help="output folder [default: reports/evaluate-MODEL]"),
    likelihood: str = typer.Option("gaussian", help="Keras decoder: gaussian | bernoulli"),
    scale: str | None = typer.Option(
        None, help="Keras Gaussian decoder: the noise sigma, or 'heteroscedastic'"
    ),
    encoder: Path | None = typer.Option(None, help="Keras decoder: a saved Keras encoder"),
    encoder_output: str = typer.Option(
        "auto",
        help="the encoder's outputs: loc_scale | loc_log_scale | concat_loc_log_scale | "
        "concat_loc_softplus_scale | auto (pair: loc_scale; one tensor: softplus)",
    ),
    quiet: bool = typer.Option(False, help="no progress lines"),
    verbose: bool = typer.Option(False, help="show TensorFlow's native start-up logging"),
    xla: bool = typer.Option(
        True, "--xla/--no-xla", help="XLA, or graph mode (no XLA compilation: small runs)"
    ),
    exact: bool = typer.Option(
        True,
        "--exact/--no-exact",
        help="score against the exact log p(x) where the model has one (closed form; "
        "quadrature for latent_dim <= 2, slow for many points)",
    ),
    workers: int | None = typer.Option(
        None, help="run the data batches on a local Dask cluster of N worker processes"
    ),
    scheduler: str | None = typer.Option(
        None, help="run the data batches on an existing Dask cluster, e.g. tcp://HOST:8786"
    ),
):
    """Certify an estimator on data simulated from MODEL (the AIS/BDMC sandwich), run the
    cheapest certified one on --data and write a per-point table and a report. Rerun to resume."""
    _check_cluster_options(workers, scheduler)
    if not budget > 0 or not tolerance > 0:
        _fail(
            f"--budget and --tolerance must be positive; got {budget} and {tolerance}", USAGE_ERROR
        )
    started = time.perf_counter()
    quiet_tensorflow(verbose)
    from estimators.user_inputs import InputError, default_out, load_user_model, read_data

    try:
        x = read_data(data, points)
        user_model = load_user_model(
            model,
            likelihood=likelihood,
            scale=scale,
            encoder=encoder,
            encoder_output=encoder_output,
        )
        user_model.check_data(x)  # the data fit the model: D, binary values where needed
    except (InputError, ValueError) as err:
        _fail(str(err).strip().splitlines()[0], USAGE_ERROR)
    from estimators.evaluate import evaluate as run_evaluation

    out = out or default_out(model)
    log = (lambda line: None) if quiet else (lambda line: console.print(line, highlight=False))
    cluster = ExitStack()
    try:
        client = _start_cluster(cluster, workers, scheduler)
        if client is None:
            console.print(device_line(environment_info(xla=xla)), highlight=False)
        result = run_evaluation(
            user_model,
            x,
            out=out,
            budget=budget,
            tolerance=tolerance,
            seed=seed,
            jit_compile=xla,
            exact=exact,
            client=client,
            model_name=model,
            data_name=str(data),
            log=log,
            notify=lambda line: errors.print(f"warning: {line}", highlight=False, soft_wrap=True),
        )
    except ResultsError as err:
        _fail(str(err), RESULTS_ERROR)
    except OSError as err:
        _fail(f"cannot write to {out}: {err}", RESULTS_ERROR)
    except KeyboardInterrupt:
        _fail(f"interrupted; finished stages are saved in {out}/stages: rerun to resume", 130)
    except ClusterError as err:
        _fail(f"{err}; finished stages are saved in {out}/stages", RESULTS_ERROR)
    finally:
        cluster.close()
    from estimators.report.evaluation import headline

    console.print(headline(result.summary), highlight=False, soft_wrap=True)
    console.print(f"report: {out / 'report.html'}  ({time.perf_counter() - started:.1f} s in all)")


# --------------------------------------------------------------------------- train


@app.command()
def train(
    name: str = typer.Argument(..., help="zoo model to (re)train, e.g. digits-gaussian-d8"),
    out: Path | None = typer.Option(
        None,
        help="folder for NAME.npz + NAME.json "
        "(default: the package's zoo, replacing the shipped files)",
    ),
    epochs: int | None = typer.Option(None, help="maximum epochs (default: the recipe's)"),
    seed: int | None = typer.Option(None, help="training seed (default: the recipe's)"),
    evaluate: bool = typer.Option(
        True, help="score the trained model (test ELBO, reference log p)"
    ),
    quiet: bool = typer.Option(False, help="no progress bar"),
    verbose: bool = typer.Option(False, help="show TensorFlow's native start-up logging"),
):
    """Fit a zoo model's decoder and encoder from its recipe and save them for reuse."""
    quiet_tensorflow(verbose)
    from estimators.zoo.recipes import RECIPES, train_named

    if name not in RECIPES:
        _fail(f"unknown model {name!r}; trainable: {', '.join(sorted(RECIPES))}", USAGE_ERROR)
    if epochs is not None and epochs <= 0:
        _fail(f"--epochs must be positive; got {epochs}", USAGE_ERROR)
    console.print(device_line(environment_info()), highlight=False)
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
    """The verdicts and slopes of a ``Summary`` (computed there, once), for the terminal."""
    from estimators.summary import display_names

    for model, text in summary.verdicts.items():
        console.print(f"[bold]{model}[/bold]: {text}", highlight=False)
    slopes = display_names(summary.slopes)[
        ["model", "method", "variance_slope", "bias_slope", "note"]
    ]
    console.print("\nlog-log slopes against M (upper half of the M range; IS expects -1):")
    console.print(
        slopes.to_string(index=False, float_format="{:.2f}".format), highlight=False, soft_wrap=True
    )


def main():
    app()


if __name__ == "__main__":
    main()
