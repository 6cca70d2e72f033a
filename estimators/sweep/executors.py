"""Executors: who runs the calls of a function. The sweep hands one a function and its calls.

    executor.map(function, [(name, args), ...], on_result)   # on_result(name, value, place)
    executor.describe()                                      # None in-process; else the cluster

``InProcess`` runs them here, in order. ``estimators.distributed.DaskExecutor`` has the same two
methods and runs them on a Dask cluster; neither knows what a cell is.
"""


class InProcess:
    def describe(self):
        return None

    def map(self, function, calls, on_result, priority=0):
        """``on_result(name, function(*args), {})`` for each call, in order (``priority`` only
        orders tasks on a cluster)."""
        for name, args in calls:
            on_result(name, function(*args), {})
