"""What a cell pays for being a Dask task: a sweep of tiny cells in-process and on a warm cluster.

The sweep: the gmm model, naive_mc at M = 1..64 (64 cells sharing one compiled function,
min_chunk = 64), 2 repeats of 32 points: each cell computes in about a millisecond, so the time
is the per-cell overhead of the path. In-process that is the Python around ``estimate``; on a
one-worker ``LocalCluster`` (started in ``setup``, warmed by one sweep: TensorFlow imported,
function compiled, model cached on the worker) it adds the task's dispatch (the model's pickle
travels in it), the result's transfer and the sweep's fixed cost (describing the cluster, one
probe task per worker, the truth task). (seconds on dask_1_worker - seconds in_process) / 64 is
the per-cell overhead of the distributed path (amortising the fixed cost over 64 cells).
"""

from .common import NAIVE_MC, build_model, data

NUM_SAMPLES = list(range(1, 65))


class TimeSweepOverhead:
    """Seconds per sweep of 64 tiny cells: in this process, or on a warm one-worker cluster."""

    params = (["in_process", "dask_1_worker"],)
    param_names = ("where",)
    number = 1
    repeat = (2, 5, 20.0)
    rounds = 1
    warmup_time = 0.0
    timeout = 600  # setup starts a cluster whose worker imports TensorFlow

    def setup(self, where):
        self.cluster = self.client = None
        if where == "dask_1_worker":
            from distributed import Client

            from estimators.distributed import local_cluster

            self.cluster = local_cluster(1)
            self.client = Client(self.cluster)
        self.model, self.x = build_model("gmm"), data("gmm")
        self.time_sweep(where)  # warm-up: compiles, and on the cluster imports TensorFlow

    def teardown(self, where):
        if self.client is not None:
            self.client.close()
            self.cluster.close()

    def time_sweep(self, where):
        from estimators.sweep import sweep

        sweep(
            {"gmm": self.model},
            [NAIVE_MC],
            NUM_SAMPLES,
            2,
            {"gmm": self.x},
            min_chunk=64,
            progress=False,
            client=self.client,
        )
