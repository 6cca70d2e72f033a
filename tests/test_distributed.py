"""Sweeps on a Dask cluster: the same table as in-process, a killed worker, an interrupted run
resumed in-process, compiled functions kept across cells, failures and bad input.

One LocalCluster of two spawned workers serves the whole module (each worker imports TensorFlow
once: 10-20 s on two cores)."""

import os
import signal
import socket
import time
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import estimators.distributed as distributed
import estimators.sweep as sweep_module
from estimators import InfiniteMixture, LinearGaussian, presets
from estimators.cli import app
from estimators.record import CellRecord, RunConfig, RunRecord, RunStats
from estimators.results import load_results, run_record
from estimators.summary import timing_mismatch, timing_note
from estimators.sweep import CELLS_DIR, sweep
from estimators.sweep.cell import worker_trace_counts
from estimators.sweep.store import Store

runner = CliRunner()
# Columns that must agree exactly between runs; estimates and diagnostics to float32 round-off
# (workers run TensorFlow with fewer threads, which may reorder a reduction); seconds differ.
EXACT = ["model", "method", "num_samples", "repeat", "point", "truth", "truth_se", "evaluations"]
ROUNDED = ["estimate", "ess", "khat", "accept", "stages"]


@pytest.fixture(scope="module")
def cluster():
    cluster = distributed.local_cluster(2)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def client(cluster):
    from distributed import Client

    with Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def quick():
    return presets.get_preset("default", quick=True)


def run(preset, **options):
    return sweep(
        preset.models,
        preset.methods,
        preset.num_samples,
        preset.repeats,
        preset.data,
        min_chunk=preset.min_chunk,
        progress=False,
        **options,
    )


@pytest.fixture(scope="module")
def in_process(quick, tmp_path_factory):
    out = tmp_path_factory.mktemp("in_process")
    return run(quick, out=out), out


def assert_same_numbers(df, reference):
    """Identical cells, rows and truths; estimates equal to float32 round-off (a few ulps of
    |log p| ~ 10-100 nats: rtol 1e-5 is ~80 ulps)."""
    assert len(df) == len(reference)
    assert not df.duplicated(["model", "method", "num_samples", "repeat", "point"]).any()
    pd.testing.assert_frame_equal(df[EXACT], reference[EXACT])
    for column in ROUNDED:
        np.testing.assert_allclose(
            df[column], reference[column], rtol=1e-5, atol=1e-6, err_msg=column
        )


def cell_files(out):
    return sorted((out / CELLS_DIR).glob("*.parquet"))


def test_cli_workers_gives_the_in_process_table(cluster, in_process, tmp_path, monkeypatch):
    """`run --workers 2` (here on the module's cluster, built by the same local_cluster)."""
    reference, reference_out = in_process
    asked = []

    def module_cluster(workers):
        asked.append(workers)
        return cluster

    monkeypatch.setattr(distributed, "local_cluster", module_cluster)
    monkeypatch.setattr(cluster, "close", lambda: None)  # the CLI closes its cluster at the end
    out = tmp_path / "dask"
    result = runner.invoke(app, ["run", "--quick", "--quiet", "--workers", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert asked == [2] and "dashboard" in result.output
    df = load_results(out)
    assert_same_numbers(df, reference)
    assert len(cell_files(out)) == len(df.attrs["cells"]) == 3 * 4 * 3

    # Timing integrity: the cluster, and per cell the host that timed it and what it shared.
    cluster_info = df.attrs["cluster"]
    assert cluster_info["workers"] == 2 and cluster_info["threads"] == 2
    assert list(cluster_info["hosts"].values()) == [{"workers": 2, "threads": 2}]
    assert [e["device"] for e in cluster_info["worker_environments"]] == ["CPU"]
    assert cluster_info["worker_environments"][0]["env"]["TF_NUM_INTRAOP_THREADS"] == str(
        distributed.worker_threads(2)
    )
    records = df.attrs["cells"]
    assert {r["host"] for r in records} == {socket.gethostname()}
    assert {r["host_concurrency"] for r in records} == {2}
    assert set(r["worker"] for r in records) <= set(client_workers(cluster))
    assert "not comparable with a sequential run" in (out / "report.md").read_text()
    assert reference.attrs["cluster"] is None and timing_note(run_record(reference)) is None
    compared = runner.invoke(app, ["compare", str(reference_out), str(out)])
    assert compared.exit_code == 0, compared.output
    assert "warning: seconds are not comparable" in compared.output


def client_workers(cluster):
    return list(cluster.scheduler_info["workers"])


def test_killed_worker_is_replaced_and_its_cell_recomputed(
    client, quick, in_process, tmp_path, monkeypatch
):
    reference, _ = in_process
    real_save, killed = Store.save_cell, {}

    def save_then_kill(store, cell, frame, record):
        real_save(store, cell, frame, record)
        if not killed:  # after the first cell: kill a worker that is running another one
            busy = next(w for w, keys in client.processing().items() if keys)
            killed["running"] = client.processing()[busy]
            killed["pid"] = client.run(os.getpid, workers=[busy])[busy]
            killed["worker"] = busy
            os.kill(killed["pid"], signal.SIGKILL)

    monkeypatch.setattr(Store, "save_cell", save_then_kill)
    df = run(quick, out=tmp_path, client=client)
    assert killed and killed["running"]
    assert_same_numbers(df, reference)  # every cell once, the same numbers
    assert len(cell_files(tmp_path)) == 36
    # The cell the dead worker was running was computed again by another worker.
    by_key = {
        f"compute_cell-{r['model']}/{r['method']}/{r['num_samples']}": r["worker"]
        for r in df.attrs["cells"]
    }
    rerun = [
        by_key[key.rsplit("-", 1)[0]]
        for key in killed["running"]
        if key.startswith("compute_cell-")
    ]
    assert rerun and all(worker != killed["worker"] for worker in rerun)
    client.wait_for_workers(2, timeout=120)  # the nanny started a replacement
    assert killed["pid"] not in client.run(os.getpid).values()


def test_interrupted_distributed_run_resumes_in_process(
    client, quick, in_process, tmp_path, monkeypatch
):
    reference, _ = in_process
    real_save, saved = Store.save_cell, []

    def save_then_interrupt(store, cell, frame, record):
        real_save(store, cell, frame, record)
        saved.append(cell.cell_id)
        if len(saved) == 30:
            raise KeyboardInterrupt

    monkeypatch.setattr(Store, "save_cell", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(quick, out=tmp_path, client=client)
    assert len(cell_files(tmp_path)) == 30
    assert not (tmp_path / "results.parquet").exists()
    monkeypatch.undo()

    resumed = run(quick, out=tmp_path)  # no client: in this process
    assert resumed.attrs["run"]["loaded_cells"] == 30
    assert resumed.attrs["run"]["computed_cells"] == 36 - 30
    assert_same_numbers(resumed, reference)
    assert sum(r.get("worker") is not None for r in resumed.attrs["cells"]) == 30


def test_a_worker_compiles_once_for_every_m(client):
    """Six M values of one (model, method) share one compiled shape (all below k-hat's
    minimum M, 21, so no k-hat capacity option tells them apart): each worker traces it once
    and warms it up once, however many of the cells it runs."""
    rng = np.random.default_rng(42)
    model = LinearGaussian(rng.normal(size=(3, 2)), rng.normal(size=3), 0.7)  # no other test's
    x = model.sample(8, seed=1).numpy()
    df = sweep(
        {"reuse": model},
        ["naive_mc"],
        [1, 2, 4, 8, 12, 16],
        2,
        {"reuse": x},
        min_chunk=16,
        client=client,
        progress=False,
    )
    traces = [
        count
        for functions in client.run(worker_trace_counts).values()
        for count in functions.get("reuse", {}).values()
    ]
    cells_per_worker = Counter(r["worker"] for r in df.attrs["cells"])
    assert max(cells_per_worker.values()) >= 3  # 6 cells on 2 workers
    assert traces and all(count == 1 for count in traces)
    warmed = [r for r in df.attrs["cells"] if r["compile_seconds"] > 0]
    assert len(warmed) == len(cells_per_worker)


def test_value_error_in_a_task_fails_the_run_once(client, tmp_path):
    attempts = tmp_path / "attempts"

    def decoder(z):  # a closure: cloudpickle sends it to the workers by value
        with open(attempts, "a") as f:
            f.write("called\n")
        raise ValueError("this decoder refuses every z")

    # A plain function as decoder cannot be fingerprinted: such a model runs only without out=
    # (on the workers it is keyed by a hash of its pickle and data instead).
    model = InfiniteMixture(decoder, latent_dim=2, data_dim=3, scale=0.5)
    x = np.random.default_rng(0).normal(size=(4, 3))
    with pytest.raises(ValueError, match="refuses every z"):
        sweep({"bad": model}, ["naive_mc"], [4], 2, {"bad": x}, client=client, progress=False)
    assert attempts.read_text().count("called") == 1  # not retried


def test_unpicklable_model_is_a_value_error(client):
    import threading

    model = LinearGaussian([[1.0]], [0.0], 1.0)
    model.lock = threading.Lock()
    with pytest.raises(ValueError, match="cannot be sent to the workers"):
        sweep(
            {"lg": model},
            ["naive_mc"],
            [1],
            2,
            {"lg": np.zeros((2, 1))},
            client=client,
            progress=False,
        )


def test_unreachable_scheduler_is_one_line_within_the_timeout(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT", 2)
    started = time.perf_counter()
    result = runner.invoke(
        app, ["run", "--quick", "--scheduler", f"tcp://127.0.0.1:{port}", "--out", str(tmp_path)]
    )
    assert time.perf_counter() - started < 10
    assert result.exit_code == 2, result.output
    assert "cannot reach the Dask scheduler" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--workers", "-3"], "--workers must be at least 1"),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "not both"),
    ],
)
def test_bad_cluster_options_are_rejected(args, message, tmp_path):
    result = runner.invoke(app, ["run", "--quick", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_local_cluster_rejects_bad_worker_counts():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive integer"):
            distributed.local_cluster(bad)


def run_of(*places):
    """A RunRecord whose cells were timed at ``places`` ({host, host_concurrency} or {})."""
    config = RunConfig([], [], [], 2, 0, True, 1, 256, {}, {}, 3)
    cells = [CellRecord("m", "naive_mc", i, 0.0, 1, 1, True, **p) for i, p in enumerate(places)]
    return RunRecord(config, {}, cells, RunStats(1.0, len(cells), 0), [], None, [])


def test_timing_notes_from_cell_records():
    sequential = run_of({"host": "a"}, {})  # a record may lack the place fields
    shared = run_of({"host": "a", "host_concurrency": 4}, {"host": "a", "host_concurrency": 4})
    spread = run_of({"host": "a", "host_concurrency": 1}, {"host": "b", "host_concurrency": 1})
    assert timing_note(sequential) is None and timing_mismatch(sequential, sequential) is None
    assert "2 of 2 cells" in timing_note(shared) and "up to 4 cells" in timing_note(shared)
    assert "2 hosts" in timing_note(spread)
    assert "one cell at a time" in timing_mismatch(sequential, shared)
    assert "on 2 hosts" in timing_mismatch(sequential, spread)
    assert timing_mismatch(shared, shared) is None


def test_workers_use_the_compile_mode_chosen_per_model_and_method(client):
    """On CPU workers, "auto" is what the calling process chose per (model, method): XLA for AIS
    (the registry), the rule's mode for naive MC; the cells' records say which ran."""
    from estimators import methods as registry

    model = LinearGaussian([[1.0, 0.5], [0.2, -0.3]], [0.0, 0.1], 0.8)
    x = model.sample(4, seed=3).numpy()
    specs = ["naive_mc", "ais:steps=3"]
    df = sweep({"modes": model}, specs, [2], 2, {"modes": x}, client=client, progress=False)
    assert df.attrs["config"]["jit_compile"] == sweep_module.PER_METHOD
    chosen = {r["method"]: r for r in df.attrs["compile_modes"]}
    ais = registry.parse("ais:steps=3").canonical
    assert chosen[ais]["source"] == "registry" and chosen[ais]["jit_compile"] is True
    assert chosen["naive_mc"]["source"].startswith("rule")
    modes = {r["method"]: r["jit_compile"] for r in df.attrs["cells"]}
    assert modes == {method: r["jit_compile"] for method, r in chosen.items()}
