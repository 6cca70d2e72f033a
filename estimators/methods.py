"""The one registry of methods: every estimator of log p(x) the suite knows, declared once.

No TensorFlow here: ``estimators list``, reports and comparisons read this table instantly.
``estimate``, the sweep, presets, the CLI, the asv benchmarks and the report all read it; nothing
else keeps a list of method names. Adding a method is one ``Method`` entry below and one
implementation module (``Method.module``) that defines

    run(spec, model, x, num_samples, seed, context) -> (estimate [N], diagnostics {name: [N]})

(``context``: ``estimators.estimator.Context`` with the proposal, chunk size, compile mode and
exact posterior samples).

**Method specs.** A method with options is named by a spec string, ``ais`` or
``ais:steps=1000,schedule=sigmoid``. ``parse`` checks the name and every option (a ``ValueError``
lists the valid ones) and gives a canonical form, defaults filled and options sorted, which is
what the tidy table's ``method`` column stores: two spellings of one configuration are one method.

**Bound directions.** An estimator p^ that is unbiased for p(x) gives E[log p^] <= log p(x)
(Jensen): a *stochastic lower bound*. One unbiased for 1/p(x) gives a *stochastic upper bound*.
The ELBO is below log p(x) for every draw's expectation (a lower bound whose gap is a KL
divergence). A bias-corrected estimator (the jackknife) is no bound at all.
"""

import functools
import importlib.util
from dataclasses import dataclass, field

STOCHASTIC_LOWER = "stochastic lower bound (unbiased for p(x))"
STOCHASTIC_UPPER = "stochastic upper bound (unbiased for 1/p(x))"
LOWER = "lower bound (E <= log p(x) - KL)"
NO_BOUND = "no bound"

# What a method needs of a model (checked by ``check_applicable``).
NEEDS_POSTERIOR = "posterior"  # a q(z|x): the exact posterior, an amortized one, or proposal=
NEEDS_EXACT_SAMPLES = "exact_posterior"  # z ~ p(z|x) exactly: model.posterior or posterior_samples=
NEEDS_CONTINUOUS = "continuous_latent"  # gradients in z (HMC): not a GMM's component index
NEEDS_GAUSSIAN_PRIOR = "gaussian_prior"  # p(z) = N(m, L L^T): a unit-cube transform exists
NEEDS_PACKAGE = "package:"  # "package:NAME": an optional package (a peer library) is installed
EXTRA_OF_PACKAGE = {"dynesty": "peers"}  # the pyproject extra that installs a package


@dataclass(frozen=True)
class Option:
    """One option of a method: a name, a default and what values are valid."""

    name: str
    default: object
    help: str
    choices: tuple = ()
    low: float = None  # smallest valid value (inclusive) for numbers
    high: float = None  # largest valid value (inclusive)
    open_low: bool = False  # low itself is not valid
    open_high: bool = False  # high itself is not valid

    @property
    def kind(self):
        return type(self.default)

    def parse(self, value, method):
        """``value`` (a string from a spec, or a Python value) as this option's type, checked."""
        where = f"{method} option {self.name}"
        kind = self.kind
        try:
            if kind is bool:
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0"):
                        raise ValueError
                    value = value.lower() in ("true", "1")
                value = bool(value)
            elif kind is int:
                as_float = float(value)
                if not as_float.is_integer():
                    raise ValueError
                value = int(as_float)
            elif kind is float:
                value = float(value)
            else:
                value = str(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be {kind.__name__}; got {value!r}") from None
        if self.choices and value not in self.choices:
            raise ValueError(
                f"{where} must be one of {', '.join(map(str, self.choices))}; got {value!r}"
            )
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            bound = f"> {self.low}" if self.open_low else f">= {self.low}"
            raise ValueError(f"{where} must be {bound}; got {value!r}")
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            bound = f"< {self.high}" if self.open_high else f"<= {self.high}"
            raise ValueError(f"{where} must be {bound}; got {value!r}")
        return value


@dataclass(frozen=True)
class Method:
    """A registry entry: what a method computes, what it needs, its options and its cost."""

    name: str
    description: str
    module: str  # the implementation: a module with ``run`` (see the module docstring)
    bound: str
    returns: str = "log p^(x)"
    needs: tuple = ()
    options: tuple = ()
    samples: str = "samples"  # what num_samples counts: samples, chains or particles
    in_presets: bool = False  # run by presets that do not name their methods
    # Samples (or chains) per chunk of the streaming loop when estimate() is not told: a chunk is
    # computed whole even when M is smaller, so costly per-sample work wants small chunks.
    default_chunk: int = 256
    # The sweep's compilation mode on CPU (on GPU always XLA). None: the faster of XLA and graph
    # mode, measured per model (``estimators.compile_mode``): for importance sampling the winner
    # changes with the model. True for AIS/BDMC/SMC, which ran ~10x faster under XLA everywhere
    # (many small ops in nested loops).
    cpu_jit_compile: bool | None = None
    cost: str = "M"  # likelihood evaluations per point, as a formula
    min_samples: int = 1  # the smallest num_samples the method accepts
    # evaluations(num_samples, options) -> evaluations of log p(x|z) (or its gradient) per point
    evaluations: object = field(default=lambda num_samples, options: num_samples, repr=False)
    # What the outer layers ask of a method, so that none of them tests a method's name:
    sandwich_side: str | None = None  # "lower" (ais) / "upper" (bdmc): the BDMC sandwich's sides
    fixed_proposal: bool = False  # q(z) ignores x, fitted once per data set (the sweep builds it)
    # The textbook importance sampler a report compares models by: "prior" (z ~ p(z)) or
    # "posterior" (z ~ the exact or amortized q(z|x)); None for every other method.
    baseline_role: str | None = None
    # ``estimators evaluate`` may pick it: a stochastic lower bound run at growing num_samples on
    # data simulated from the model and judged against the sandwich there (the sandwich's lower
    # side is always a candidate, at each T of the sandwich).
    evaluate_candidate: bool = False
    # A peer: the method runs another library (named here) as that library documents it, so the
    # suite measures the library, flaws included; the suite's own generic tests of bounds and
    # unbiasedness leave peers out (tests/test_peers.py measures them).
    peer: str | None = None
    # Overrides for the sweep's untimed warm-up call, which exists to compile: options the
    # compiled function does not depend on (AIS's T: one compilation serves every T), so the
    # warm-up compiles without running the whole method; "num_samples" replaces its one chunk.
    warm_up: dict = field(default_factory=dict)

    @property
    def packages(self):
        """The optional packages the method needs (its ``package:NAME`` needs)."""
        return tuple(n[len(NEEDS_PACKAGE) :] for n in self.needs if n.startswith(NEEDS_PACKAGE))

    @property
    def is_bound(self):
        """Whether its estimates bound log p(x) (stochastically or always) from one side."""
        return self.bound != NO_BOUND

    @property
    def returns_elbo(self):
        return self.returns == "ELBO"

    def option(self, name):
        for option in self.options:
            if option.name == name:
                return option
        valid = ", ".join(o.name for o in self.options) or "none"
        raise ValueError(f"unknown option {name!r} for method {self.name}; valid options: {valid}")


@dataclass(frozen=True)
class MethodSpec:
    """A method with every option set: what ``estimate`` runs and the table stores."""

    method: Method
    options: tuple  # ((name, value), ...) sorted by name: hashable

    @property
    def name(self):
        return self.method.name

    @property
    def kwargs(self):
        return dict(self.options)

    @property
    def canonical(self):
        """``name`` or ``name:opt=value,...`` with every option, sorted: one spelling per config."""
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_format(v)}" for k, v in self.options)

    def evaluations(self, num_samples):
        return int(self.method.evaluations(int(num_samples), self.kwargs))

    def __str__(self):
        return self.canonical


def _format(value):
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse(spec, **overrides):
    """A ``MethodSpec`` from ``"name"`` or ``"name:opt=v,..."`` (or a MethodSpec), plus keyword
    options; ``ValueError`` naming an unknown method or option, or a bad value."""
    if isinstance(spec, str) and not overrides:
        return _parse_string(spec)  # cached: estimate() in a loop does not re-parse
    return _parse(spec, **overrides)


@functools.lru_cache(maxsize=1024)
def _parse_string(spec):
    return _parse(spec)


def _parse(spec, **overrides):
    if isinstance(spec, MethodSpec):
        spec, given = spec.name, dict(spec.options)
    else:
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"a method is a name such as {names()[0]!r}; got {spec!r}")
        name, _, rest = spec.strip().partition(":")
        spec, given = name.strip(), {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"bad option {part!r} in method spec; write name:option=value,...")
            if key.strip() in given:
                raise ValueError(f"option {key.strip()!r} given twice in method spec")
            given[key.strip()] = value.strip()
    if spec not in REGISTRY:
        raise ValueError(f"unknown method {spec!r}; choose from {', '.join(names())}")
    method = REGISTRY[spec]
    given.update(overrides)
    values = {o.name: o.default for o in method.options}
    for key, value in given.items():
        values[key] = method.option(key).parse(value, method.name)
    return MethodSpec(method, tuple(sorted(values.items())))


def canonical(spec, **overrides):
    """The canonical spelling of a method spec (see ``parse``)."""
    return parse(spec, **overrides).canonical


def label(spec):
    """A short display name: the method with only its non-default options (``ais:steps=1000``)."""
    spec = parse(spec)
    defaults = {o.name: o.default for o in spec.method.options}
    changed = [f"{k}={_format(v)}" for k, v in spec.options if v != defaults[k]]
    return spec.name + (":" + ",".join(changed) if changed else "")


def method_with(**fields):
    """The name of the one registered method whose ``Method`` fields have these values, e.g.
    ``method_with(sandwich_side="lower")``: code outside the registry asks for a role, never
    spells out a name. LookupError unless exactly one method matches."""
    found = [
        m.name for m in REGISTRY.values() if all(getattr(m, k) == v for k, v in fields.items())
    ]
    if len(found) != 1:
        raise LookupError(f"{len(found)} registered methods have {fields}; expected one")
    return found[0]


def names():
    """Every registered method name, in registry order."""
    return list(REGISTRY)


def preset_default_names():
    """The methods a preset runs when it names none (the textbook importance samplers)."""
    return [m.name for m in REGISTRY.values() if m.in_presets]


def check_applicable(spec, model, *, proposal=None, posterior_samples=None):
    """Raise ``ValueError`` saying why ``spec`` cannot run on ``model`` (None when it can).

    Duck-typed on the model interface (``latent_dim``, ``has_exact_posterior``,
    ``amortized_posterior``): no TensorFlow needed.
    """
    spec = parse(spec)
    method, kind = spec.method, type(model).__name__
    missing = missing_packages(spec)
    if missing:
        extra = EXTRA_OF_PACKAGE.get(missing[0])
        how = f'pip install -e ".[{extra}]"' if extra else f"pip install {missing[0]}"
        raise ValueError(
            f"{method.name} needs the package {', '.join(missing)}, which is not installed: {how}"
        )
    if NEEDS_CONTINUOUS in method.needs and getattr(model, "latent_dim", 0) == 0:
        raise ValueError(
            f"{method.name} needs a continuous latent (it moves z by HMC); "
            f"{kind}'s latent is a discrete component index"
        )
    if NEEDS_GAUSSIAN_PRIOR in method.needs and not getattr(model, "has_gaussian_prior", True):
        raise ValueError(
            f"{method.name} maps the unit cube onto p(z), which it can do for a Gaussian prior "
            f"only; {kind}'s prior is not Gaussian"
        )
    has_posterior = (
        getattr(model, "has_exact_posterior", False)
        or getattr(model, "amortized_posterior", None) is not None
    )
    if NEEDS_POSTERIOR in method.needs and proposal is None and not has_posterior:
        raise ValueError(
            f"{method.name} needs a posterior proposal q(z|x): {kind} has no exact or "
            "amortized posterior; pass proposal= (a callable x -> distribution)"
        )
    start = spec.kwargs.get("start")
    if start == "posterior" and proposal is None and not has_posterior:
        raise ValueError(
            f"{spec.canonical}: start=posterior needs an exact or amortized "
            f"posterior, and {kind} has neither; use start=prior or pass proposal="
        )
    if (
        NEEDS_EXACT_SAMPLES in method.needs
        and posterior_samples is None
        and not getattr(model, "has_exact_posterior", False)
    ):
        raise ValueError(
            f"{method.name} needs exact posterior samples z ~ p(z|x): {kind} has no "
            "exact posterior, so pass posterior_samples=z (for data simulated with "
            "model.sample(n, seed, return_latents=True))"
        )


def missing_packages(spec):
    """The optional packages ``spec``'s method needs that are not installed (a list of names)."""
    return [p for p in parse(spec).method.packages if importlib.util.find_spec(p) is None]


def check_num_samples(spec, num_samples):
    """ValueError naming the minimum when ``num_samples`` is below what ``spec`` accepts."""
    method = parse(spec).method
    if num_samples < method.min_samples:
        raise ValueError(
            f"{method.name} needs num_samples >= {method.min_samples}"
            f"{_MIN_REASONS.get(method.name, '')}; got {num_samples}"
        )


def table():
    """One dict per method (name, bound, returns, needs, options, cost): for listings."""
    return [
        {
            "method": m.name,
            "description": m.description,
            "returns": m.returns,
            "bound": m.bound,
            "needs": ", ".join(m.needs) or "-",
            "num_samples": m.samples,
            "cost": m.cost,
            "options": ", ".join(f"{o.name}={_format(o.default)}" for o in m.options) or "-",
        }
        for m in REGISTRY.values()
    ]


# --------------------------------------------------------------------------- the registry

# Chains per chunk for AIS/BDMC: K rounded up to a multiple of this runs (the overhang masked).
ANNEALING_CHUNK = 8
# AIS and BDMC compile one function for every T (and the pilot's): warm up at a short path.
ANNEALING_WARM_UP = {"steps": 2}
PSIS_MIN_SAMPLES = 21  # the smallest M whose Pareto tail ceil(min(M/5, 3 sqrt(M))) has 5 weights
_MIN_REASONS = {
    "psis": " (its Pareto fit needs a tail of at least 5 weights, and the tail is "
    "ceil(min(M/5, 3 sqrt(M))))",
    "jackknife_iwae": " (its leave-one-out estimates need two samples)",
}


def _annealing_evaluations(num_chains, options):
    """K T (L + 1) for the measured chains, plus the pilot run that tunes the step sizes."""
    per_chain = options["steps"] * (options["leapfrog"] + 1)
    pilot = 0
    if options["adapt"] == "pilot":
        pilot = (
            options["pilot_chains"]
            * min(options["steps"], options["pilot_steps"])
            * (options["leapfrog"] + 1)
        )
    return num_chains * per_chain + pilot


_ANNEALING_OPTIONS = (
    Option("steps", 100, "T: number of annealing temperatures (intermediate distributions)", low=1),
    Option(
        "schedule",
        "sigmoid",
        "the beta_t path from 0 to 1",
        choices=("linear", "sigmoid", "geometric"),
    ),
    Option("leapfrog", 10, "L: leapfrog steps per HMC move", low=1),
    Option("step_size", 0.1, "initial HMC step size (before adaptation)", low=0.0, open_low=True),
    Option(
        "adapt",
        "pilot",
        "pilot: tune step sizes toward acceptance 0.65 in a short pilot run, "
        "then freeze them per temperature and point (unbiased); online: adapt each chain from "
        "its own acceptances during the run (x1.02 / x0.98, as eval_gen; slightly biased); "
        "none: keep step_size",
        choices=("pilot", "online", "none"),
    ),
    Option("pilot_chains", 8, "chains per point in the pilot run", low=1),
    Option(
        "pilot_steps",
        100,
        "temperatures of the pilot run (step sizes are interpolated in "
        "beta onto the measured run's temperatures)",
        low=2,
    ),
)


def _tfp_ais_evaluations(num_chains, options):
    """K T (L + 1): each of the T steps one HMC move (L gradients) and the weight's evaluation."""
    return num_chains * options["steps"] * (options["leapfrog"] + 1)


def _smc_evaluations(num_particles, options):
    """At most (K + pilot) (S + (S - 1) m L) at the stage cap S = max_stages: the number of stages
    is random. The count of a run, with its own S per point, is the ``evaluations`` diagnostic of
    ``estimate(..., return_diagnostics=True)``, which the sweep stores."""
    stages = options["max_stages"]
    pilot = options["pilot_particles"] if options["adapt"] == "pilot" else 0
    return (num_particles + pilot) * (
        stages + (stages - 1) * options["moves"] * options["leapfrog"]
    )


REGISTRY = {
    m.name: m
    for m in (
        Method(
            "naive_mc",
            "importance sampling from the prior: q = p(z), log w = log p(x|z)",
            "estimators.algorithms.naive_mc",
            STOCHASTIC_LOWER,
            in_presets=True,
            baseline_role="prior",
        ),
        Method(
            "prior_is",
            "importance sampling from a fixed q(z) that ignores x (default: a Gaussian "
            "moment-matched to the aggregate posterior)",
            "estimators.algorithms.prior_is",
            STOCHASTIC_LOWER,
            in_presets=True,
            fixed_proposal=True,
        ),
        Method(
            "posterior_is",
            "importance sampling from p(z|x) where exact, else the amortized "
            "q(z|x) (the IWAE bound)",
            "estimators.algorithms.posterior_is",
            STOCHASTIC_LOWER,
            needs=(NEEDS_POSTERIOR,),
            in_presets=True,
            baseline_role="posterior",
            evaluate_candidate=True,
        ),
        Method(
            "elbo",
            "mean log weight under the posterior_is proposal",
            "estimators.algorithms.elbo",
            LOWER,
            returns="ELBO",
            needs=(NEEDS_POSTERIOR,),
            in_presets=True,
        ),
        Method(
            "psis",
            "Pareto-smoothed importance sampling (Vehtari et al. 2024) of the posterior_is "
            "weights: the largest ceil(min(M/5, 3 sqrt(M))) are replaced by quantiles of a "
            "generalized Pareto fit to them, truncated at the largest raw weight; biased (downward "
            "as a rule) but with far less variance when the weights are heavy-tailed",
            "estimators.algorithms.psis",
            NO_BOUND,
            needs=(NEEDS_POSTERIOR,),
            min_samples=PSIS_MIN_SAMPLES,
        ),
        Method(
            "defensive_is",
            "defensive importance sampling (Hesterberg 1995): proposal "
            "alpha p(z) + (1 - alpha) q(z|x) with posterior_is's q; unbiased, and every weight is "
            "at most p(x|z) / alpha",
            "estimators.algorithms.defensive_is",
            STOCHASTIC_LOWER,
            needs=(NEEDS_POSTERIOR,),
            options=(
                Option(
                    "alpha",
                    0.1,
                    "weight of the prior in the proposal mixture",
                    low=0.0,
                    high=1.0,
                    open_high=True,
                ),
            ),
        ),
        Method(
            "jackknife_iwae",
            "Nowozin's (2018) jackknife bias correction of the IWAE "
            "(posterior_is) estimate from the same weights: M L_M - (M - 1) mean_i L_{M-1}^(-i); "
            "bias O(1/M^2) instead of O(1/M), no longer a bound",
            "estimators.algorithms.jackknife_iwae",
            NO_BOUND,
            needs=(NEEDS_POSTERIOR,),
            min_samples=2,
        ),
        Method(
            "ais",
            "annealed importance sampling (Neal 2001) with HMC moves, forward from the start "
            "distribution to p(x, z)",
            "estimators.algorithms.ais",
            STOCHASTIC_LOWER,
            sandwich_side="lower",
            evaluate_candidate=True,
            needs=(NEEDS_CONTINUOUS,),
            samples="chains",
            cost="K T (L + 1) + pilot",
            evaluations=_annealing_evaluations,
            default_chunk=ANNEALING_CHUNK,
            cpu_jit_compile=True,
            warm_up=ANNEALING_WARM_UP,
            options=_ANNEALING_OPTIONS
            + (
                Option(
                    "start",
                    "auto",
                    "start distribution: prior p(z), posterior q(z|x) (exact "
                    "or amortized), or auto (posterior where one exists)",
                    choices=("auto", "prior", "posterior"),
                ),
            ),
        ),
        Method(
            "bdmc",
            "reverse AIS from exact posterior samples (Grosse et al. 2015): with ais it "
            "sandwiches log p(x)",
            "estimators.algorithms.bdmc",
            STOCHASTIC_UPPER,
            sandwich_side="upper",
            needs=(NEEDS_CONTINUOUS, NEEDS_EXACT_SAMPLES),
            samples="chains",
            cost="K T (L + 1) + pilot",
            evaluations=_annealing_evaluations,
            default_chunk=ANNEALING_CHUNK,
            cpu_jit_compile=True,
            warm_up=ANNEALING_WARM_UP,
            options=_ANNEALING_OPTIONS
            + (
                Option(
                    "start",
                    "auto",
                    "the distribution the reverse path ends at (as ais's "
                    "start): prior, posterior or auto",
                    choices=("auto", "prior", "posterior"),
                ),
            ),
        ),
        Method(
            "smc",
            "sequential Monte Carlo with adaptive tempering: each stage's temperature "
            "step keeps the particles' ESS at target_ess K, then systematic resampling and HMC "
            "moves",
            "estimators.algorithms.smc",
            STOCHASTIC_LOWER,
            needs=(NEEDS_CONTINUOUS,),
            samples="particles",
            cpu_jit_compile=True,
            evaluate_candidate=True,
            cost="(K + pilot) (S + (S - 1) m L), S stages (random, <= max_stages)",
            evaluations=_smc_evaluations,
            options=(
                Option(
                    "start",
                    "auto",
                    "start distribution: prior p(z), posterior q(z|x) "
                    "(exact or amortized), or auto (posterior where one exists)",
                    choices=("auto", "prior", "posterior"),
                ),
                Option(
                    "target_ess",
                    0.5,
                    "each stage's temperature step brings the ESS of the "
                    "particles' weights down to target_ess K",
                    low=0.0,
                    high=1.0,
                    open_low=True,
                    open_high=True,
                ),
                Option("leapfrog", 10, "L: leapfrog steps per HMC move", low=1),
                Option("moves", 2, "m: HMC moves per stage after resampling", low=1),
                Option(
                    "step_size",
                    0.5,
                    "first stage's HMC step size relative to the particles' "
                    "spread (smallest per-coordinate standard deviation); later stages scale it "
                    "by exp(acceptance - 0.65) of the stage before",
                    low=0.0,
                    open_low=True,
                ),
                Option(
                    "max_stages",
                    500,
                    "stage cap: a point that has not reached beta = 1 by "
                    "then is an error, never a truncated estimate",
                    low=1,
                ),
                Option(
                    "adapt",
                    "pilot",
                    "pilot: choose the temperatures and step sizes in an "
                    "adaptive pilot run, then walk them frozen with the K particles (unbiased); "
                    "population: the K particles adapt their own schedule (BlackJAX, TFP; "
                    "consistent but biased)",
                    choices=("pilot", "population"),
                ),
                Option("pilot_particles", 16, "particles per point of the pilot run", low=1),
            ),
        ),
        Method(
            "tfp_ais",
            "peer: TFP's tfp.mcmc.sample_annealed_importance_chain with its HMC kernel, from "
            "the prior, as its documentation shows (fixed step size, linear path); its accept "
            "test reuses the previous temperature's target (TFP issue #1429): measured, not fixed",
            "estimators.algorithms.tfp_ais",
            NO_BOUND,
            needs=(NEEDS_CONTINUOUS,),
            samples="chains",
            cpu_jit_compile=True,
            cost="K T (L + 1)",
            evaluations=_tfp_ais_evaluations,
            peer="tensorflow_probability",
            options=(
                Option("steps", 100, "T: annealing steps (TFP's num_steps)", low=1),
                Option("leapfrog", 10, "L: leapfrog steps per HMC move", low=1),
                Option("step_size", 0.1, "the HMC step size (fixed)", low=0.0, open_low=True),
            ),
        ),
        Method(
            "dynesty",
            "peer: dynesty's static nested sampling (Speagle 2020) with K live points and the "
            "prior as a unit-cube transform; log Z and its logzerr as se; likelihoods batched "
            "through one compiled TensorFlow call per queue",
            "estimators.algorithms.dynesty",
            NO_BOUND,
            needs=(NEEDS_CONTINUOUS, NEEDS_GAUSSIAN_PRIOR, NEEDS_PACKAGE + "dynesty"),
            samples="live points",
            cost="random: the run's likelihood calls (dynesty's ncall), at least K",
            min_samples=2,
            peer="dynesty",
            # Its run is Python; the compiled part is the batched likelihood, whose shape is the
            # queue's, not K's: two live points compile it at a fraction of a run.
            warm_up={"num_samples": 2},
            options=(
                Option(
                    "sample",
                    "auto",
                    "dynesty's sampling method (auto: unif below d = 10, rwalk to 20, rslice above)",
                    choices=("auto", "unif", "rwalk", "slice", "rslice"),
                ),
                Option(
                    "bound",
                    "multi",
                    "dynesty's bounding distribution",
                    choices=("none", "single", "multi", "balls", "cubes"),
                ),
                Option(
                    "dlogz",
                    0.01,
                    "stop when the live points could add at most this much to log Z",
                    low=0.0,
                    open_low=True,
                ),
                Option(
                    "queue",
                    16,
                    "points proposed at once (dynesty's queue_size): their likelihoods are one "
                    "batched TensorFlow call",
                    low=1,
                ),
            ),
        ),
    )
}
