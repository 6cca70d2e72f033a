"""The registry of methods: specs, canonical names, and that it is the only list of methods."""

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from estimators import methods
from estimators.cli import app

ROOT = Path(__file__).resolve().parent.parent


def test_canonical_form_fills_defaults_and_sorts_options():
    a = methods.canonical("ais:steps=1000,schedule=sigmoid")
    b = methods.canonical("ais:schedule=sigmoid,steps=1000")
    c = methods.canonical("ais", steps=1000)
    assert a == b == c
    options = a.split(":", 1)[1].split(",")
    assert options == sorted(options)
    assert {o.split("=")[0] for o in options} == {o.name for o in methods.REGISTRY["ais"].options}
    assert methods.canonical("naive_mc") == "naive_mc"
    assert methods.parse(methods.parse("ais", steps=7)).kwargs["steps"] == 7  # a spec parses back


def test_keyword_options_override_the_spec_and_values_are_typed():
    spec = methods.parse("ais:steps=10", steps="20", step_size="0.5", leapfrog=5.0)
    assert spec.kwargs["steps"] == 20 and spec.kwargs["step_size"] == 0.5
    assert spec.kwargs["leapfrog"] == 5 and isinstance(spec.kwargs["leapfrog"], int)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nope", "unknown method 'nope'; choose from naive_mc"),
        ("ais:bogus=1", "valid options: steps, schedule"),
        ("ais:steps", "bad option 'steps'"),
        ("ais:steps=1,steps=2", "given twice"),
        ("ais:steps=-3", "steps must be >= 1"),
        ("ais:schedule=cubic", "schedule must be one of linear, sigmoid, geometric"),
        ("naive_mc:steps=3", "valid options: none"),
        ("", "a method is a name"),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        methods.parse(spec)


def test_every_method_declares_its_contract():
    bounds = {methods.STOCHASTIC_LOWER, methods.STOCHASTIC_UPPER, methods.LOWER, methods.NO_BOUND}
    for method in methods.REGISTRY.values():
        assert method.bound in bounds and method.description and method.module
        assert method.module.startswith("estimators.algorithms.")
        assert (ROOT / (method.module.replace(".", "/") + ".py")).exists(), method.module
        assert methods.parse(method.name).evaluations(16) >= 16


def test_annealing_cost_counts_chains_steps_and_leapfrog():
    spec = methods.parse("ais:steps=100,leapfrog=10,adapt=none")
    assert spec.evaluations(4) == 4 * 100 * 11
    piloted = methods.parse("ais:steps=1000,leapfrog=10,pilot_chains=8,pilot_steps=100")
    assert piloted.evaluations(4) == 4 * 1000 * 11 + 8 * 100 * 11


def test_the_registry_is_the_only_list_of_methods():
    """estimate, the CLI, the presets and the benchmarks read the registry, and no other module
    spells out a list of two or more method names."""
    import estimators
    from bench import common
    from estimators import presets

    names = methods.names()
    assert list(estimators.METHODS) == names
    assert set(common.METHODS) <= set(names)
    assert list(presets.Preset(models={}, data={}).methods) == methods.preset_default_names()
    listing = CliRunner().invoke(app, ["list"]).output
    for name in names:
        assert f"{name}:" in listing
    quoted = "|".join(re.escape(f'"{n}"') for n in names)
    pattern = re.compile(rf"({quoted})\s*,\s*({quoted})")
    for path in [*ROOT.joinpath("estimators").rglob("*.py"), *ROOT.joinpath("bench").glob("*.py")]:
        if path.name == "methods.py":
            continue
        assert not pattern.search(path.read_text()), f"{path} keeps its own list of methods"
