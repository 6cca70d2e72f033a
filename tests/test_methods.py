"""The registry of methods: specs, canonical names, and that it is the only list of methods."""

import ast
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
    """estimate, the CLI, the presets and the benchmarks read their methods from the registry."""
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


def docstrings(tree):
    """The docstring constants of a module, its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                found.add(first.value)
    return found


def method_name_literals(path):
    """(line, literal, method) for each string constant in ``path`` that is a registered method's
    name or starts a spec (``name:``), docstrings left out; comments are not in the tree. The
    pieces of an f-string are constants too: ``f"ais:steps={T}"`` holds ``"ais:steps="``."""
    tree = ast.parse(path.read_text(), str(path))
    skip = docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node not in skip:
            for name in methods.names():
                if node.value == name or node.value.startswith(name + ":"):
                    found.append((node.lineno, node.value, name))
    return sorted(found)


def method_name_offenders():
    """``file:line: 'literal'`` for every method name spelled out in estimators/ or bench/ source
    outside the registry (estimators/methods.py) and the method's own implementation module."""
    registry_file = ROOT / "estimators" / "methods.py"
    paths = sorted(
        [*ROOT.joinpath("estimators").rglob("*.py"), *ROOT.joinpath("bench").rglob("*.py")]
    )
    offenders = []
    for path in paths:
        if path == registry_file:
            continue
        for line, literal, name in method_name_literals(path):
            own = ROOT / (methods.REGISTRY[name].module.replace(".", "/") + ".py")
            if path != own:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {literal!r}")
    return offenders


METHOD_NAME_OFFENDERS = method_name_offenders()


def test_the_literal_guard_catches_names_and_specs(tmp_path):
    source = tmp_path / "planted.py"
    source.write_text(
        '''"""Module docstring: naive_mc"""

x = "naive_mc"  # a name
y = f"ais:steps={x}"  # a spec in an f-string
z = ["elbo", "not_a_method", "aisle"]


def f():
    """ais"""
    return {"smc:target_ess=0.9": 1}
'''
    )
    assert [(line, literal) for line, literal, _ in method_name_literals(source)] == [
        (3, "naive_mc"),
        (4, "ais:steps="),
        (5, "elbo"),
        (10, "smc:target_ess=0.9"),
    ]


@pytest.mark.xfail(
    bool(METHOD_NAME_OFFENDERS),
    reason="method names spelled out outside the registry: " + "; ".join(METHOD_NAME_OFFENDERS),
    strict=True,
)
def test_no_method_name_is_spelled_out_outside_the_registry():
    """No source file in estimators/ or bench/ names a method in a string, except the registry
    and the method's own implementation: every other module asks the registry (its names, or a
    field such as ``baseline_role`` or ``sandwich_side``). Docstrings and comments may name
    methods; the zoo's JSON files are data, not source."""
    assert not METHOD_NAME_OFFENDERS, "method names outside the registry:\n" + "\n".join(
        METHOD_NAME_OFFENDERS
    )
