"""Where and with what numbers were made: one record for sweeps and trained models alike.

    environment_info(xla=None) -> dict    (versions, CPU/GPU, git commit, relevant env vars)
    device_line(info) -> "device: CPU (Intel Xeon ..., 2 cores); TensorFlow graph mode (no XLA)"
    quiet_tensorflow(verbose=False)      # imports TensorFlow without its C++ start-up chatter

TensorFlow is imported inside the functions that need it, so importing this module is free.
"""

import contextlib
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGES = (
    "estimators",
    "tensorflow",
    "tensorflow-probability",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "matplotlib",
    "seaborn",
)
RECORDED_ENV_VARS = (
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_XLA_FLAGS",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
# TensorFlow's native (C++) log threshold: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR. On a
# machine without a GPU, TensorFlow logs "failed call to cuInit" as an ERROR at start-up.
QUIET_NATIVE_LOG_LEVEL = "3"


def quiet_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow (and let it look for GPUs) without its native start-up logging, and keep
    that logging quiet for the rest of the process; ``verbose`` shows all of it instead.

    On a machine without a GPU TensorFlow prints "Could not find cuda drivers" and "failed call
    to cuInit" at start-up, read by newcomers as failures. Some of these lines are written before
    TF_CPP_MIN_LOG_LEVEL is read, so the process's stderr (file descriptor 2) is set aside while
    TensorFlow starts, and shown after all if the import fails. Takes effect only before
    TensorFlow is first imported; a TF_CPP_MIN_LOG_LEVEL the user set is kept.
    """
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_NATIVE_LOG_LEVEL)
    if "tensorflow" in sys.modules:
        return
    with _stderr_set_aside() as replay:
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # where the CUDA probing logs
        except BaseException:
            replay()
            raise


@contextlib.contextmanager
def _stderr_set_aside():
    """Redirect file descriptor 2 to a temporary file; yields ``replay()``, which writes what was
    captured to the real stderr once the redirection ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    wanted = []
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield lambda: wanted.append(True)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if wanted:
                captured.seek(0)
                os.write(2, captured.read())


def environment_info(xla: bool | None = None) -> dict:
    """Versions, hardware, git commit and the environment variables that change the numbers.

    ``xla``: the compilation mode the numbers were made with (recorded when given).
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    info = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpus": [
            tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus
        ],
        "device": "GPU" if gpus else "CPU",
        "packages": {name: _version(name) for name in PACKAGES},
        "git_commit": _git_commit(),
        "env": {k: os.environ[k] for k in RECORDED_ENV_VARS if k in os.environ},
        "argv": sys.argv,
    }
    if xla is not None:
        info["xla"] = xla if isinstance(xla, (bool, str)) else bool(xla)  # str: per model, method
    return info


def device_line(info: dict) -> str:
    """One line naming the device (and compilation mode, when recorded) of ``environment_info``."""
    if info.get("gpus"):
        hardware = f"GPU ({', '.join(info['gpus'])})"
    else:
        hardware = f"CPU ({info.get('cpu', '?')}, {info.get('cpu_count', '?')} cores)"
    mode = {True: "; XLA", False: "; TensorFlow graph mode (no XLA)"}.get(
        info.get("xla"), "; XLA or graph mode per model and method"
    )
    return f"device: {hardware}{mode}"


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit():
    """``git describe --always --dirty`` of the source tree, or None outside a checkout."""
    try:
        return (
            subprocess.run(
                ["git", "describe", "--always", "--dirty", "--abbrev=12"],
                cwd=Path(__file__).resolve().parent,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None
