"""The model zoo's manifests: one JSON file per shipped model, read without TensorFlow.

    available_models()            -> names of the models in the zoo folder (sorted)
    manifest("digits-bernoulli-d8") -> dict: data, architecture, training, results, reproduce, ...

Each zoo model is ``<name>.json`` (this manifest) beside ``<name>.npz`` (its weights, loaded by
``estimators.zoo``). Both ``estimators list`` and ``estimators.zoo`` read manifests here.
"""

import json
from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent / "zoo"


def available_models(directory: str | Path | None = None) -> list[str]:
    """Names of the models in ``directory`` (default: the shipped zoo): a manifest and weights."""
    folder = Path(directory or ZOO_DIR)
    return sorted(p.stem for p in folder.glob("*.json") if p.with_suffix(".npz").exists())


def manifest(name: str, directory: str | Path | None = None) -> dict:
    """The JSON manifest of model ``name``; ValueError naming the available ones if it is absent."""
    path = Path(directory or ZOO_DIR) / f"{name}.json"
    if not path.exists():
        raise ValueError(
            f"no model named {name!r} in {path.parent}; available: "
            f"{', '.join(available_models(directory)) or 'none'}"
        )
    return json.loads(path.read_text())


PUBLISHED_FILE = Path(__file__).resolve().parent / "targets" / "published.json"


def published(name: str) -> list[dict]:
    """The published numbers a standard target (``estimators.targets``) is compared with:
    [{quantity, value, kind, source}], [] for any other model. Read as data: no TensorFlow."""
    return json.loads(PUBLISHED_FILE.read_text()).get(name, [])
