"""What a user hands ``estimators evaluate``: a model by name and a data file.

    read_data(path, points=None)   -> float64 array [N, D]       (npy, npz, csv, parquet)
    load_user_model(name, ...)     -> a LatentVariableModel

A model is named by

- a zoo name (``estimators list``): the trained model with its encoder;
- a saved Keras decoder (a ``.keras`` or ``.h5`` file, or a SavedModel folder): an
  ``InfiniteMixture`` with that decoder, its latent dimension read from the decoder's input,
  ``likelihood`` and ``scale`` as given, and optionally a Keras encoder file with its
  ``encoder_output`` convention (see ``estimators.models.networks``);
- a Python object path ``package.module:attribute`` (``attribute`` may be dotted): a model, or a
  function of no arguments returning one. Modules are imported from the current folder first,
  then from the installed packages.

Every problem is an ``InputError`` (a ValueError) with one line naming it; the CLI exits 2.
"""

import importlib
import inspect
import re
import sys
from pathlib import Path

import numpy as np

DATA_SUFFIXES = (".npy", ".npz", ".csv", ".parquet")
KERAS_SUFFIXES = (".keras", ".h5")
LIKELIHOODS = ("gaussian", "bernoulli")
HETEROSCEDASTIC = "heteroscedastic"  # --scale: the decoder returns loc and scale


class InputError(ValueError):
    """A data file or a model name that cannot be used, said in one line."""


# ------------------------------------------------------------------------------------ data


def read_data(path, points=None) -> np.ndarray:
    """The rows of a data file as float64 [N, D] (the first ``points`` rows if given).

    .npy: a 2-D array; .npz: its only array, or the one named ``x``; .csv: numbers separated by
    commas, a header line of names allowed; .parquet: every column numeric. NaN or infinite
    values, a 1-D or empty array, and non-numeric columns are refused, naming where."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise InputError(
            f"data file {path} has suffix {path.suffix or '(none)'!r}; use one of "
            f"{', '.join(DATA_SUFFIXES)}"
        )
    try:
        array = _READERS[suffix](path)
    except InputError:
        raise
    except Exception as err:  # numpy, pandas and pyarrow each raise their own kinds
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot read {path} as {suffix[1:]}: {text}") from None
    return check_rows(array, str(path), points)


def check_rows(array, where="x", points=None):
    """``array`` as float64 [N, D], cut to its first ``points`` rows; InputError otherwise."""
    if array.dtype.kind not in "biuf":
        raise InputError(f"{where} holds {array.dtype} values; it needs numbers")
    array = np.asarray(array, np.float64)
    if array.ndim == 1:
        raise InputError(
            f"{where} is 1-D (shape {list(array.shape)}); it needs one row per data point, "
            "shape [N, D] (reshape a single point to [1, D])"
        )
    if array.ndim != 2:
        raise InputError(f"{where} has shape {list(array.shape)}; it needs [N, D] (flatten images)")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{where} is empty (shape {list(array.shape)})")
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise InputError(
            f"{where} has NaN or infinite values in {len(rows)} row(s), first at row {rows[0]}"
        )
    if points is not None:
        if isinstance(points, bool) or int(points) != points or points < 1:
            raise InputError(f"points must be a positive integer; got {points!r}")
        array = array[: int(points)]
    return array


def _read_npy(path):
    return np.load(path, allow_pickle=False)


def _read_npz(path):
    with np.load(path, allow_pickle=False) as arrays:
        names = list(arrays.keys())
        if len(names) == 1:
            return arrays[names[0]]
        if "x" in names:
            return arrays["x"]
        raise InputError(
            f"{path} holds {len(names)} arrays ({', '.join(names[:5])}); name the data 'x'"
        )


def _read_csv(path):
    import pandas as pd

    frame = pd.read_csv(path, header=None, skipinitialspace=True)
    if len(frame) and not _numeric_row(frame.iloc[0]):  # a header line of column names
        frame = pd.read_csv(path, skipinitialspace=True)
    return _numeric_frame(frame, path)


def _read_parquet(path):
    import pandas as pd

    return _numeric_frame(pd.read_parquet(path), path)


def _numeric_row(row):
    try:
        np.asarray(row, np.float64)
    except (TypeError, ValueError):
        return False
    return True


def _numeric_frame(frame, path):
    text = [str(c) for c in frame.columns if frame[c].dtype.kind not in "biuf"]
    if text:
        raise InputError(
            f"{path} has non-numeric column(s) {', '.join(text[:5])}; every column must be a number"
        )
    return frame.to_numpy(np.float64)


_READERS = {".npy": _read_npy, ".npz": _read_npz, ".csv": _read_csv, ".parquet": _read_parquet}


# ----------------------------------------------------------------------------------- models


def default_out(name):
    """reports/evaluate-NAME, NAME made a folder name (``pkg.mod:attr`` -> ``pkg.mod-attr``)."""
    stem = Path(str(name)).stem if Path(str(name)).exists() else str(name)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "model"
    return Path("reports") / f"evaluate-{safe}"


def load_user_model(
    name,
    *,
    likelihood="gaussian",
    scale=None,
    encoder=None,
    encoder_output="auto",
):
    """The model ``name`` names (see the module docstring). ``likelihood``, ``scale`` (a float,
    or "heteroscedastic"), ``encoder`` (a Keras file) and ``encoder_output`` apply to a Keras
    decoder file only."""
    from estimators.manifests import available_models

    name = str(name).strip()
    if name in available_models():
        from estimators.zoo import load_model

        return load_model(name)
    path = Path(name)
    if path.exists():
        if path.suffix.lower() in KERAS_SUFFIXES or path.is_dir():
            return keras_model(path, likelihood, scale, encoder, encoder_output)
        raise InputError(
            f"model file {path} is not a Keras model ({', '.join(KERAS_SUFFIXES)} or a "
            "SavedModel folder)"
        )
    if ":" in name:
        return object_model(name)
    raise InputError(
        f"unknown model {name!r}: not a zoo model ({', '.join(available_models())}), an existing "
        "Keras file, or a Python object path package.module:attribute"
    )


def object_model(path):
    """The model at ``package.module:attribute``: a model, or a function returning one."""
    from estimators.models import LatentVariableModel

    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise InputError(f"a Python object path is package.module:attribute; got {path!r}")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise InputError(
            f"cannot import {module_name!r} for model {path!r}: {err} (modules are found in the "
            "current folder and the installed packages)"
        ) from None
    except Exception as err:  # the user's module raised while importing
        raise InputError(f"importing {module_name!r} raised {type(err).__name__}: {err}") from None
    value = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise InputError(f"module {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    if not isinstance(value, LatentVariableModel) and callable(value):
        if inspect.isclass(value):
            raise InputError(f"{path} is a class; name an instance, or a function returning one")
        try:
            value = value()
        except Exception as err:  # the user's function
            raise InputError(f"{path}() raised {type(err).__name__}: {err}") from None
    if not isinstance(value, LatentVariableModel):
        raise InputError(
            f"{path} is a {type(value).__name__}, not a model: name an estimators model "
            "(e.g. InfiniteMixture, CallableModel) or a function of no arguments returning one"
        )
    return value


def keras_model(path, likelihood="gaussian", scale=None, encoder=None, encoder_output="auto"):
    """An InfiniteMixture around a saved Keras decoder (and optional encoder)."""
    from estimators.models import InfiniteMixture

    if likelihood not in LIKELIHOODS:
        raise InputError(f"unknown likelihood {likelihood!r}; choose from {', '.join(LIKELIHOODS)}")
    decoder = _load_keras(path, "decoder")
    latent_dim = _input_width(decoder, path)
    kwargs = {}
    if likelihood == "gaussian":
        if scale is None:
            raise InputError(
                "a Gaussian decoder needs --scale SIGMA (the noise standard deviation), or "
                f"--scale {HETEROSCEDASTIC} when it returns loc and raw scale ([B, 2D])"
            )
        if str(scale) == HETEROSCEDASTIC:
            kwargs["scale"] = None
        else:
            try:
                kwargs["scale"] = float(scale)
            except ValueError:
                raise InputError(
                    f"--scale must be a number or {HETEROSCEDASTIC}; got {scale!r}"
                ) from None
    try:
        model = InfiniteMixture(decoder, latent_dim, likelihood, **kwargs)
        if encoder is not None:
            model.attach_encoder(_load_keras(Path(encoder), "encoder"), encoder_output)
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None
    return model


def _load_keras(path, what):
    import tf_keras

    if not Path(path).exists():
        raise InputError(f"{what} file {path} does not exist")
    try:
        return tf_keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many kinds
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot load the {what} {path} with tf_keras: {text}") from None


def _input_width(network, path):
    shape = getattr(network, "input_shape", None)
    if isinstance(shape, list):
        raise InputError(f"{path} takes {len(shape)} inputs; a decoder takes one, z [B, d]")
    if shape is None or len(shape) != 2 or shape[-1] is None:
        raise InputError(
            f"{path} has input shape {shape}; a decoder takes z of shape [B, d] (start the "
            "model with Input((d,)))"
        )
    return int(shape[-1])
