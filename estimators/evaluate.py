"""``evaluate``: your model and data in, a certified estimator and a publishable log p(x) out.

    evaluate(model, x, out="reports/mine") -> Evaluation

1. **Certify on the model's own data.** Simulate P points with their latents,
   ``model.sample(P, seed, return_latents=True)``: each z is an exact posterior draw of its x.
   Run the bidirectional Monte Carlo sandwich there (the registry's ``sandwich_side`` lower and
   upper methods, the upper one from those exact draws) at T = 10, 30, 100, ... until its mean
   width is below ``tolerance`` (0.1 nats) or ``budget`` seconds are spent: on these points
   log p(x) lies between the two bounds, so the width bounds the error of both.
2. **Pick the cheapest certified configuration.** Every ``evaluate_candidate`` method of the
   registry that applies (the sandwich's lower side at each T; posterior importance sampling
   where the model has an encoder or an exact posterior; SMC) runs at growing num_samples on the
   same points. A candidate's certified error on a point is its distance to the far end of the
   final sandwich, |estimate - midpoint| + width / 2; the choice is the fastest (seconds per
   point) whose mean certified error is within the tolerance, else the one with the smallest
   error, reported as not certified. Where the sandwich does not apply but log p(x) is exact
   (a Gaussian mixture), the exact values judge instead.
3. **Run it on the data**, in batches of equal shape (one compilation; on a Dask cluster with
   ``client``): per point the estimate and its own ``se``, k-hat and ESS; and, where posterior
   importance sampling applies, the ELBO and the IWAE bound at about the same time per point.
4. **Exact check** where the model has an exact log p(x) (closed form, or quadrature for
   latent_dim <= 2): the error of every point and the coverage of estimate +- 1.96 se.
5. **Write** ``points.parquet`` / ``points.csv`` (one row per point), ``summary.json``,
   ``report.md`` and ``report.html`` (``estimators.report.evaluation``).

What is certified is the accuracy on data simulated from the model. Data off the model's
distribution can make any estimator less accurate than on simulations, and nothing here bounds
that (Grosse et al. 2015); the report says so.

Resuming: with ``out``, each finished stage (a rung of the sandwich, a candidate, a batch of the
data, the exact values) is stored in ``out/stages/`` as parquet, atomically, under a key of
everything that decides it (the model's fingerprint, the data, the settings), and reused by a
rerun. A folder belongs to one model: another model's evaluation is refused (``ResultsError``).
A model that cannot be fingerprinted (``estimators.fingerprint``) is said once, in one line, and
runs without resuming.
"""

import hashlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from estimators import methods as registry
from estimators.estimator import compile_options, default_chunk_size, estimate
from estimators.files import atomic_write
from estimators.fingerprint import FingerprintError, model_fingerprint
from estimators.models.base import model_cache
from estimators.reference import reference_log_marginal
from estimators.report.evaluation import build_document
from estimators.report.html import render_html
from estimators.report.markdown import render_markdown
from estimators.results import ResultsError, read_table, write_table

TOLERANCE = 0.1  # nats: the mean sandwich width, and the mean certified error, to reach
STEPS = (10, 30, 100, 300, 1000, 3000, 10000)  # the sandwich's T, in order
CHAINS = 16  # K of the sandwich
CERTIFY_POINTS = 16  # P simulated points
BUDGET = 600.0  # seconds of certification
BATCH_ROWS = 128  # data rows per call (and per task on a cluster)
LADDERS = {  # num_samples tried per candidate, by what num_samples counts
    "samples": (16, 64, 256, 1024, 4096, 16384),
    "particles": (16, 64, 256, 1024),
    "chains": (CHAINS,),
}
MAX_EQUAL_TIME_SAMPLES = 2**20
UNCERTIFIED_STEPS = 1000  # T of the lower side when nothing can be certified
FALLBACK_SAMPLES = 4096
KHAT_LIMIT = 0.7
Z95 = 1.959963984540054
ROUND_OFF_EPS = 64  # machine epsilons (times |log p|) of round-off allowed beside exact values
STAGE_VERSION = 1
FILES = ("points.parquet", "points.csv", "summary.json", "report.md", "report.html")

_RESIDENT = {}  # model key -> the first copy of that model to arrive in this process (workers)


@dataclass(frozen=True)
class Settings:
    """What decides an evaluation besides the model and the data."""

    tolerance: float = TOLERANCE
    budget: float | None = BUDGET
    certify_points: int = CERTIFY_POINTS
    chains: int = CHAINS
    steps: tuple = STEPS
    seed: int = 0
    batch_rows: int = BATCH_ROWS
    jit_compile: bool = True  # XLA; False: graph mode (no XLA compilation: small quick runs)
    exact: bool = True  # score against the exact log p(x) where one exists (quadrature: slow)

    def check(self):
        if not self.tolerance > 0:
            raise ValueError(f"tolerance must be positive; got {self.tolerance!r}")
        if self.budget is not None and not self.budget > 0:
            raise ValueError(f"budget must be a positive number of seconds; got {self.budget!r}")
        for name in ("certify_points", "chains", "batch_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 2:
                raise ValueError(f"{name} must be an integer >= 2; got {value!r}")
        steps = list(self.steps)
        if not steps or steps != sorted(set(steps)) or steps[0] < 2:
            raise ValueError(f"steps must be increasing integers >= 2; got {self.steps!r}")
        return self


@dataclass
class Evaluation:
    """What ``evaluate`` found: the per-point table, the numbers of the summary, the sandwich
    ladder and the candidates (one row each), the report as a Document, and the files written."""

    points: pd.DataFrame
    summary: dict
    sandwich: pd.DataFrame
    candidates: pd.DataFrame
    document: object
    files: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """One configuration: a canonical method spec and its num_samples (K for AIS/SMC)."""

    method: str
    num_samples: int

    @property
    def label(self):
        spec = registry.parse(self.method)
        return f"{registry.label(self.method)}, {spec.method.samples} = {self.num_samples}"


# ------------------------------------------------------------------------------ the driver


def evaluate(
    model,
    x,
    *,
    out=None,
    settings: Settings | None = None,
    client=None,
    model_name: str = "model",
    data_name: str = "data",
    log=None,
    notify=None,
    **overrides,
) -> Evaluation:
    """Certify an estimator on data simulated from ``model``, run it on ``x`` [N, D] and report
    (module docstring). ``settings`` or keyword overrides of its fields (``tolerance``,
    ``budget`` in seconds or None, ``certify_points``, ``chains``, ``steps``, ``seed``,
    ``batch_rows``). ``out``: a folder for the stages (resuming) and the outputs. ``client``: a
    Dask client for the data batches. ``log(line)`` hears progress; ``notify(line)`` the one-line
    warnings (default: ``warnings.warn``). ValueError for bad data or settings; ResultsError for
    a folder that holds another model's evaluation."""
    settings = replace(settings or Settings(), **overrides).check()
    log = log or (lambda line: None)
    notify = notify or (lambda line: warnings.warn(line, stacklevel=3))
    x = model.check_data(x).numpy()
    fingerprint = None
    try:
        fingerprint = model_fingerprint(model)
    except FingerprintError as err:
        if out is not None:
            notify(f"{err}; evaluate runs without resuming (nothing in {out} is reused)")
    store = StageStore(out, fingerprint)
    store.claim(model_name)
    started = time.perf_counter()
    certification = certify(model, settings, store, log)
    plan = data_plan(model, certification)
    executor = _executor(client)
    # On a cluster, each worker keeps the first copy of the model it receives (and its compiled
    # functions) for the next batches; in this process the model is at hand.
    resident = None if client is None else fingerprint or f"unfingerprinted-{id(model)}"
    points, data_seconds = run_on_data(model, x, plan, settings, store, executor, resident, log)
    exact = exact_values(model, x, store, "exact-data", log) if settings.exact else None
    if exact is not None:
        points["exact"] = exact
        points["error"] = points["estimate"] - points["exact"]
        allowance = round_off(model.dtype, points["exact"])
        points["covered"] = (points["error"].abs() <= Z95 * points["se"] + allowance).where(
            points["se"].notna()
        )
    summary = summarize(
        model,
        x,
        settings,
        certification,
        plan,
        points,
        model_name=model_name,
        data_name=data_name,
        fingerprint=fingerprint,
        seconds={
            "certification": certification.seconds,
            "data": data_seconds,
            "total": time.perf_counter() - started,
        },
    )
    document = build_document(summary, points, certification.sandwich, certification.candidates)
    evaluation = Evaluation(
        points, summary, certification.sandwich, certification.candidates, document
    )
    if out is not None:
        evaluation.files = write_outputs(evaluation, Path(out))
    return evaluation


def _executor(client):
    if client is None:
        from estimators.sweep.executors import InProcess

        return InProcess()
    from estimators.distributed import DaskExecutor

    return DaskExecutor(client)


# -------------------------------------------------------------------------------- stages


class StageStore:
    """``out/stages/<stage>-<key>.parquet``: each a finished stage, its key (a SHA-256 of all that
    decides it) in its metadata. Without a folder or a fingerprint it keeps and finds nothing."""

    def __init__(self, out, fingerprint):
        self.out = None if out is None else Path(out)
        self.fingerprint = fingerprint
        self.resumable = self.out is not None and fingerprint is not None

    def key(self, stage, *parts):
        text = json.dumps([STAGE_VERSION, self.fingerprint, stage, *parts], default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, stage, key):
        return self.out / "stages" / f"{stage}-{key[:16]}.parquet"

    def load(self, stage, key):
        if not self.resumable or not self.path(stage, key).exists():
            return None
        frame = read_table(self.path(stage, key))
        if frame.attrs.get("key") != key:
            raise ResultsError(
                f"{self.path(stage, key)} holds another stage; delete it to recompute"
            )
        return frame

    def save(self, stage, key, frame, **metadata):
        if self.resumable:
            write_table(frame, self.path(stage, key), {"key": key, **metadata})

    def claim(self, model_name):
        """Refuse a folder that holds another model's evaluation; mark it as this model's."""
        if self.out is None:
            return
        path = self.out / "evaluation.json"
        if path.exists():
            try:
                stored = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                raise ResultsError(
                    f"{path} is unreadable ({err}); delete it or use another folder"
                ) from None
            theirs = stored.get("model_fingerprint")
            if theirs and self.fingerprint and theirs != self.fingerprint:
                raise ResultsError(
                    f"{self.out} holds the evaluation of another model ({stored.get('model')}, "
                    "or another version of it); use another --out or delete the folder"
                )
        record = {"model": model_name, "model_fingerprint": self.fingerprint}
        text = json.dumps(record, indent=2) + "\n"
        atomic_write(path, lambda f: f.write(text.encode()))


def stage_seed(seed, *labels):
    """An int seed (0 <= seed < 2^62) for one call, folded from a seed and the call's labels."""
    text = "/".join(map(str, (int(seed), *labels)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 2


# ------------------------------------------------------------------------ one timed call


def timed_estimate(model, x, config, seed, posterior_samples=None, jit_compile=True):
    """One ``estimate`` of ``config`` on x with diagnostics, compilation excluded (an untimed
    warm-up call the first time this process meets the compiled shape). Returns a frame with
    estimate, se, khat, ess, evaluations per row and the call's seconds per row."""
    spec = registry.parse(config.method)
    chunk = default_chunk_size(spec, config.num_samples)
    options = compile_options(spec.canonical, config.num_samples, chunk)
    x = tf.constant(x, model.dtype)
    given = None if posterior_samples is None else tf.constant(posterior_samples, model.dtype)
    shape = (
        spec.canonical,  # under XLA a new T (steps) compiles anew, though traced once
        chunk,
        tuple(x.shape),
        tuple(sorted(options.items())),
        given is not None,
        bool(jit_compile),
    )
    warmed = model_cache(model, "evaluate_warmed")
    if shape not in warmed:
        warm_samples = max(min(config.num_samples, chunk), spec.method.min_samples)
        _call(model, x, spec, warm_samples, seed, given, chunk, options, jit_compile)  # a chunk
        warmed[shape] = True
    start = time.perf_counter()
    log_p, diagnostics = _call(
        model, x, spec, config.num_samples, seed, given, chunk, options, jit_compile
    )
    seconds = time.perf_counter() - start
    n = len(log_p)
    nan = np.full(n, np.nan)
    frame = pd.DataFrame(
        {
            "estimate": log_p,
            **{k: diagnostics.get(k, nan) for k in ("se", "khat", "ess")},
            "evaluations": diagnostics.get(
                "evaluations", np.full(n, float(spec.evaluations(config.num_samples)))
            ),
            "seconds": seconds / n,
        }
    )
    return frame


def _call(model, x, spec, num_samples, seed, given, chunk, options, jit_compile):
    log_p, diagnostics = estimate(
        model,
        x,
        spec,
        num_samples,
        seed=seed,
        chunk_size=chunk,
        jit_compile=bool(jit_compile),
        return_diagnostics=True,
        posterior_samples=given,
        **options,
    )
    return (
        np.asarray(log_p, np.float64),
        {k: np.asarray(v, np.float64) for k, v in diagnostics.items() if np.ndim(v) == 1},
    )


# ---------------------------------------------------------------------------- certification


@dataclass
class Certification:
    """Stage 1-2 results: the simulated points' reference, the ladder, the candidates, the choice."""

    choice: Config
    certified: bool
    reference: str | None  # "sandwich", "exact" or None (nothing to judge by)
    sandwich: pd.DataFrame  # one row per rung: steps, chains, lower, upper, width, seconds, ...
    candidates: pd.DataFrame  # one row per configuration tried
    reason: str  # why the choice, in words
    stop: str  # why the sandwich stopped
    seconds: float  # certification time (stored stages count with the time they took)
    points: int  # simulated points
    simulated: bool  # whether the model could simulate data
    exact_on_simulations: dict | None = None  # sandwich vs exact on the simulated points
    width: float = math.nan  # the final sandwich's mean width
    candidate_points: dict = field(default_factory=dict, repr=False)  # config -> estimates


def certify(model, settings, store, log):
    """Stages 1-2 (module docstring): the sandwich ladder, the candidates and the choice."""
    lower_name = registry.method_with(sandwich_side="lower")
    upper_name = registry.method_with(sandwich_side="upper")
    points = int(settings.certify_points)
    try:
        x_sim, z_sim = model.sample(points, stage_seed(settings.seed, "simulate"), True)
        x_sim, z_sim = x_sim.numpy(), z_sim.numpy()
    except NotImplementedError as err:
        log(f"cannot simulate from the model ({err}): nothing is certified")
        return _uncertified(model, settings, f"the model cannot simulate data ({err})", points)
    sim_key = hashlib.sha256(x_sim.tobytes() + z_sim.tobytes()).hexdigest()
    exact_sim = (
        exact_values(model, x_sim, store, "exact-simulated", log) if settings.exact else None
    )
    spent = 0.0
    rungs, per_point = [], {}
    stop = "the ladder of T ended"
    sandwich_applies = _applies(lower_name, model) and _applies(upper_name, model, z_sim)
    if not sandwich_applies:
        stop = "the sandwich does not apply to this model: " + _why_not(lower_name, model, z_sim)
    for steps in settings.steps if sandwich_applies else ():
        if settings.budget is not None and rungs:
            last = rungs[-1]
            # the last T's warm time scaled to this T, plus its overhead (a compilation)
            warm = last["seconds_per_point"] * points
            predicted = warm * steps / last["steps"] + max(last["seconds"] - warm, 0.0)
            if spent + predicted > settings.budget:
                stop = (
                    f"the budget of {settings.budget:g} s would be spent before T = {steps} "
                    f"finished (predicted {predicted:.0f} s more)"
                )
                break
        lower = Config(registry.canonical(lower_name, steps=steps), settings.chains)
        upper = Config(registry.canonical(upper_name, steps=steps), settings.chains)
        key = store.key("sandwich", sim_key, lower, upper, settings.seed, settings.jit_compile)
        frame = store.load("sandwich", key)
        if frame is None:
            start = time.perf_counter()
            jit = settings.jit_compile
            low_seed, up_seed = (stage_seed(settings.seed, c.method) for c in (lower, upper))
            low = timed_estimate(model, x_sim, lower, low_seed, z_sim, jit)
            up = timed_estimate(model, x_sim, upper, up_seed, z_sim, jit)
            wall = time.perf_counter() - start  # compilation included: it spends the budget
            frame = pd.DataFrame(
                {
                    "point": np.arange(points),
                    "lower": low["estimate"],
                    "upper": up["estimate"],
                    "lower_se": low["se"],
                    "upper_se": up["se"],
                    "lower_seconds": low["seconds"],
                    "upper_seconds": up["seconds"],
                    "lower_evaluations": low["evaluations"],
                }
            )
            store.save("sandwich", key, frame, wall_seconds=wall)
            frame.attrs["wall_seconds"] = wall
        wall = float(frame.attrs.get("wall_seconds", 0.0))
        spent += wall
        # Both bounds are stochastic: where they cross (upper < lower), the crossing counts.
        signed = frame["upper"] - frame["lower"]
        width = signed.abs()
        rungs.append(
            {
                "steps": steps,
                "chains": settings.chains,
                "lower": float(frame["lower"].mean()),
                "upper": float(frame["upper"].mean()),
                "width": float(width.mean()),
                "width_se": float(width.std(ddof=1) / math.sqrt(points)),
                "signed_width": float(signed.mean()),
                "crossed": int((signed < 0).sum()),
                "seconds": wall,
                "seconds_per_point": float(
                    (frame["lower_seconds"] + frame["upper_seconds"]).mean()
                ),
                **_inside(frame, exact_sim),
            }
        )
        per_point[steps] = frame
        log(
            f"sandwich T = {steps}, K = {settings.chains}: mean width {width.mean():.3g} nats "
            f"({wall:.1f} s)"
        )
        if width.mean() <= settings.tolerance:
            stop = f"the mean width fell below the tolerance {settings.tolerance:g} nats"
            break
    sandwich = pd.DataFrame(rungs)
    if rungs:
        final = per_point[rungs[-1]["steps"]]
        low_end, high_end = final["lower"].to_numpy(), final["upper"].to_numpy()
        reference = "sandwich"
    elif exact_sim is not None:
        low_end = high_end = exact_sim
        reference = "exact"
    else:
        return _uncertified(model, settings, stop, points, x_sim, z_sim)
    rows, estimates = [], {}
    for steps, frame in per_point.items():  # the lower side at each T is a candidate too
        config = Config(registry.canonical(lower_name, steps=steps), settings.chains)
        rows.append(
            _candidate_row(
                config,
                frame["lower"].to_numpy(),
                frame["lower_seconds"].mean(),
                frame["lower_evaluations"].mean(),
                low_end,
                high_end,
                settings.tolerance,
            )
        )
        estimates[config] = frame["lower"].to_numpy()
    cheapest = min((r["seconds_per_point"] for r in rows if r["meets"]), default=math.inf)
    for method in registry.REGISTRY.values():
        if (
            not method.evaluate_candidate
            or method.sandwich_side
            or not _applies(method.name, model)
        ):
            continue
        for num_samples in LADDERS[method.samples]:
            if num_samples < method.min_samples:
                continue
            config = Config(registry.canonical(method.name), num_samples)
            key = store.key("candidate", sim_key, config, settings.seed, settings.jit_compile)
            frame = store.load("candidate", key)
            if frame is None:
                try:
                    seed = stage_seed(settings.seed, config.method, num_samples)
                    frame = timed_estimate(model, x_sim, config, seed, None, settings.jit_compile)
                except ValueError as err:  # e.g. SMC that does not reach beta = 1
                    log(f"{config.label}: {str(err).splitlines()[0]}")
                    break
                store.save("candidate", key, frame)
            row = _candidate_row(
                config,
                frame["estimate"].to_numpy(),
                frame["seconds"].mean(),
                frame["evaluations"].mean(),
                low_end,
                high_end,
                settings.tolerance,
            )
            rows.append(row)
            estimates[config] = frame["estimate"].to_numpy()
            log(
                f"{config.label}: certified error {row['bound']:.3g} nats, "
                f"{row['seconds_per_point'] * 1e3:.3g} ms per point"
            )
            if row["meets"]:
                cheapest = min(cheapest, row["seconds_per_point"])
                break
            if row["seconds_per_point"] >= cheapest:
                break  # already slower than a certified configuration
    candidates = pd.DataFrame(rows)
    candidates["seconds"] = candidates["seconds_per_point"] * points
    spent += float(
        sum(
            r["seconds_per_point"] * points
            for r in rows
            if registry.parse(r["method"]).method.sandwich_side is None
        )
    )
    meets = candidates[candidates["meets"]]
    if len(meets):
        pick = meets.loc[meets["seconds_per_point"].idxmin()]
        certified = True
        reason = (
            f"the fastest configuration whose mean certified error on {points} simulated points "
            f"({pick['bound']:.3g} nats) is within the tolerance {settings.tolerance:g} nats"
        )
    else:
        pick = candidates.loc[candidates["bound"].idxmin()]
        certified = False
        reason = (
            f"no configuration reached the tolerance {settings.tolerance:g} nats; this one has "
            f"the smallest certified error ({pick['bound']:.3g} nats)"
        )
    candidates["chosen"] = (candidates["method"] == pick["method"]) & (
        candidates["num_samples"] == pick["num_samples"]
    )
    choice = Config(str(pick["method"]), int(pick["num_samples"]))
    log(f"chosen: {choice.label} ({'certified' if certified else 'not certified'})")
    return Certification(
        choice=choice,
        certified=certified,
        reference=reference,
        sandwich=sandwich,
        candidates=candidates,
        reason=reason,
        stop=stop,
        seconds=spent,
        points=points,
        simulated=True,
        exact_on_simulations=_exact_check(exact_sim, per_point, rungs),
        width=float(rungs[-1]["width"]) if rungs else 0.0,
        candidate_points=estimates,
    )


def _candidate_row(config, values, seconds, evaluations, low_end, high_end, tolerance):
    """A candidate judged against the reference interval [low_end, high_end] per point."""
    middle, half = (low_end + high_end) / 2, np.abs(high_end - low_end) / 2
    bound = float(np.mean(np.abs(values - middle) + half))
    return {
        "method": config.method,
        "label": registry.label(config.method),
        "num_samples": config.num_samples,
        "seconds_per_point": float(seconds),
        "evaluations_per_point": float(evaluations),
        "bound": bound,
        "mean_to_middle": float(np.mean(values - middle)),
        "meets": bound <= tolerance,
    }


def _inside(frame, exact):
    """How many simulated points' exact log p(x) lie inside the sandwich (within 3 se)."""
    if exact is None:
        return {}
    low = frame["lower"] - 3 * frame["lower_se"].fillna(0)
    high = frame["upper"] + 3 * frame["upper_se"].fillna(0)
    return {"exact_inside": int(((low <= exact) & (exact <= high)).sum())}


def _exact_check(exact, per_point, rungs):
    if exact is None or not rungs:
        return None
    final = per_point[rungs[-1]["steps"]]
    return {
        "points": len(exact),
        "inside": int(rungs[-1].get("exact_inside", 0)),
        "lower_error": float((final["lower"] - exact).mean()),
        "upper_error": float((final["upper"] - exact).mean()),
    }


def _applies(name, model, posterior_samples=None):
    try:
        registry.check_applicable(name, model, posterior_samples=posterior_samples)
    except ValueError:
        return False
    return True


def _why_not(name, model, posterior_samples=None):
    try:
        registry.check_applicable(name, model, posterior_samples=posterior_samples)
    except ValueError as err:
        return str(err)
    return ""


def _uncertified(model, settings, why, points, x_sim=None, z_sim=None):
    """A default configuration when nothing can judge one: the lower side of the sandwich at
    T = UNCERTIFIED_STEPS, else posterior IS, else the prior baseline, at FALLBACK_SAMPLES."""
    lower_name = registry.method_with(sandwich_side="lower")
    if _applies(lower_name, model):
        choice = Config(registry.canonical(lower_name, steps=UNCERTIFIED_STEPS), settings.chains)
    elif _applies(registry.method_with(baseline_role="posterior"), model):
        choice = Config(registry.method_with(baseline_role="posterior"), FALLBACK_SAMPLES)
    else:
        choice = Config(registry.method_with(baseline_role="prior"), FALLBACK_SAMPLES)
    return Certification(
        choice=choice,
        certified=False,
        reference=None,
        sandwich=pd.DataFrame(),
        candidates=pd.DataFrame(),
        reason=f"nothing could be certified ({why}); a default configuration",
        stop=why,
        seconds=0.0,
        points=points if x_sim is not None else 0,
        simulated=x_sim is not None,
    )


# -------------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class DataPlan:
    """What runs on every data point: the choice, and the bounds at about equal time."""

    choice: Config
    iwae: Config | None  # posterior IS at about the choice's time per point (None: n/a)
    elbo: Config | None

    def columns(self):
        """[(column prefix, config)]: "" for the choice."""
        found = [("", self.choice)]
        if self.iwae is not None and self.iwae != self.choice:
            found.append(("iwae_", self.iwae))
        if self.elbo is not None:
            found.append(("elbo_", self.elbo))
        return found


def data_plan(model, certification):
    """The choice, plus posterior IS and the ELBO at about the choice's seconds per point, where
    posterior IS applies (the per-sample time from its largest certification run)."""
    choice = certification.choice
    iwae_name = registry.method_with(baseline_role="posterior")
    elbo_name = registry.method_with(returns="ELBO")
    if not _applies(iwae_name, model):
        return DataPlan(choice, None, None)
    if registry.parse(choice.method).name == iwae_name:
        return DataPlan(choice, choice, Config(registry.canonical(elbo_name), choice.num_samples))
    candidates = certification.candidates
    target = _seconds_per_point(certification, choice)
    num_samples = FALLBACK_SAMPLES
    if len(candidates) and target is not None:
        mine = candidates[candidates["method"] == registry.canonical(iwae_name)]
        if len(mine):
            largest = mine.loc[mine["num_samples"].idxmax()]
            per_sample = largest["seconds_per_point"] / largest["num_samples"]
            if per_sample > 0:
                ratio = target / per_sample
                num_samples = int(2 ** max(0, math.floor(math.log2(max(ratio, 1.0)))))
    num_samples = min(num_samples, MAX_EQUAL_TIME_SAMPLES)
    return DataPlan(
        choice,
        Config(registry.canonical(iwae_name), num_samples),
        Config(registry.canonical(elbo_name), num_samples),
    )


def _seconds_per_point(certification, config):
    candidates = certification.candidates
    if not len(candidates):
        return None
    row = candidates[
        (candidates["method"] == config.method) & (candidates["num_samples"] == config.num_samples)
    ]
    return float(row["seconds_per_point"].iloc[0]) if len(row) else None


def evaluate_batch(model, model_key, rows, count, plan, seed, jit_compile=True):
    """One batch of data rows (padded to the batch shape) through every configuration of the
    plan: a frame of ``count`` rows, columns per configuration (its prefix + estimate, se,
    khat, ess, evaluations, seconds). The function a Dask worker runs; it needs only its
    arguments. ``model_key`` (on a cluster): the worker computes with the first copy of that
    model it received, whose compiled functions the next batches reuse."""
    model = _RESIDENT.setdefault(model_key, model) if model_key else model
    columns = {}
    for prefix, config in plan.columns():
        call_seed = stage_seed(seed, prefix, config.method)
        frame = timed_estimate(model, rows, config, call_seed, None, jit_compile)
        for name, values in frame.items():
            columns[prefix + name] = values.to_numpy()[:count]
    return pd.DataFrame(columns)


def run_on_data(model, x, plan, settings, store, executor, model_key, log):
    """Stage 3: the plan on every row of x, in batches of one shape (the last padded with copies
    of its first row, dropped again). Returns (per-point frame, seconds)."""
    n = x.shape[0]
    rows = min(int(settings.batch_rows), max(n, 2))  # >= 2 rows: one shape for every call
    starts = list(range(0, n, rows))
    results, calls = {}, []
    for index, start in enumerate(starts):
        batch = x[start : start + rows]
        count = batch.shape[0]
        padded = np.concatenate([batch, np.repeat(batch[:1], rows - count, axis=0)])
        seed = stage_seed(settings.seed, "data", index)
        digest = hashlib.sha256(batch.tobytes()).hexdigest()
        key = store.key("data", digest, plan, seed, settings.jit_compile)
        found = store.load("data", key)
        if found is not None:
            results[index] = found
        else:
            args = (model, model_key, padded, count, plan, seed, settings.jit_compile)
            calls.append((str(index), args))
            results[index] = key
    started = time.perf_counter()
    done = [0]

    def on_result(name, frame, place):
        index = int(name)
        store.save("data", results[index], frame)
        results[index] = frame
        done[0] += 1
        log(f"data: batch {done[0]} of {len(calls)} done")

    if calls:
        executor.map(evaluate_batch, calls, on_result)
    seconds = time.perf_counter() - started
    frame = pd.concat([results[i] for i in range(len(starts))], ignore_index=True)
    frame.insert(0, "point", np.arange(n))
    frame["khat_warning"] = frame["khat"] > KHAT_LIMIT
    return frame, seconds


def exact_values(model, x, store, stage, log=None):
    """The exact log p(x) [N] (closed form, or quadrature for latent_dim <= 2), or None."""
    key = store.key(stage, hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest())
    found = store.load(stage, key)
    if found is not None:
        return found["exact"].to_numpy()
    start = time.perf_counter()
    try:
        values, _ = reference_log_marginal(model, x, method="exact")
    except NotImplementedError:
        return None
    seconds = time.perf_counter() - start
    if log is not None and seconds > 1:
        log(f"exact log p(x) of {len(x)} points ({stage}): {seconds:.0f} s")
    store.save(stage, key, pd.DataFrame({"exact": np.asarray(values, np.float64)}))
    return np.asarray(values, np.float64)


def round_off(dtype, values):
    """The float round-off allowed an estimate beside an exact value: ``ROUND_OFF_EPS`` machine
    epsilons of the model's dtype times max(1, |log p|). An estimate that is exact up to
    round-off (posterior IS from an exact posterior: every weight equal, se = 0) then counts as
    covered."""
    eps = float(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps)
    return ROUND_OFF_EPS * eps * np.maximum(1.0, np.abs(np.asarray(values, np.float64)))


# ------------------------------------------------------------------------------- summary


def summarize(model, x, settings, certification, plan, points, **info):
    """The numbers of the evaluation as a JSON-able dict (summary.json, the report)."""
    n = len(points)
    estimates = points["estimate"].to_numpy()
    summary = {
        "model": info["model_name"],
        "model_class": type(model).__name__,
        "model_fingerprint": info["fingerprint"],
        "data": info["data_name"],
        "points": n,
        "data_dim": int(x.shape[1]),
        "latent_dim": int(model.latent_dim),
        "has_encoder": getattr(model, "amortized_posterior", None) is not None,
        "settings": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()
        },
        "configuration": {
            "method": plan.choice.method,
            "label": registry.label(plan.choice.method),
            "num_samples": plan.choice.num_samples,
            "counts": registry.parse(plan.choice.method).method.samples,
            "bound": registry.parse(plan.choice.method).method.bound,
        },
        "certification": {
            "certified": certification.certified,
            "reference": certification.reference,
            "simulated": certification.simulated,
            "simulated_points": certification.points,
            "tolerance": settings.tolerance,
            "width": certification.width,
            "steps": int(certification.sandwich["steps"].iloc[-1])
            if len(certification.sandwich)
            else None,
            "chains": settings.chains,
            "stop": certification.stop,
            "reason": certification.reason,
            "bound": _chosen(certification, "bound"),
            "seconds_per_point": _chosen(certification, "seconds_per_point"),
            "exact_on_simulations": certification.exact_on_simulations,
        },
        "log_p": _mean_with_se(estimates, points["se"].to_numpy()),
        "seconds": info["seconds"],
        "seconds_per_point": float(points["seconds"].mean()),
        "khat_warnings": int(points["khat_warning"].sum()),
        "khat_points": [int(i) for i in points.loc[points["khat_warning"], "point"].head(20)],
        "khat_limit": KHAT_LIMIT,
    }
    for prefix, config in plan.columns()[1:]:
        name = prefix + "bound"  # iwae_bound, elbo_bound
        summary[name] = {
            "method": config.method,
            "label": registry.label(config.method),
            "num_samples": config.num_samples,
            **_mean_with_se(
                points[prefix + "estimate"].to_numpy(), points[prefix + "se"].to_numpy()
            ),
            "seconds_per_point": float(points[prefix + "seconds"].mean()),
        }
    if plan.iwae is not None and plan.iwae == plan.choice:
        summary["iwae_bound"] = {
            **summary["configuration"],
            **summary["log_p"],
            "same_as_estimate": True,
            "seconds_per_point": summary["seconds_per_point"],
        }
    if "exact" in points:
        summary["exact"] = _exact_summary(points)
    return summary


def _chosen(certification, column):
    candidates = certification.candidates
    if not len(candidates):
        return None
    return float(candidates.loc[candidates["chosen"], column].iloc[0])


def _mean_with_se(values, se):
    """The mean over points, its SE over the points (sd / sqrt N: the data set's sampling error
    with the Monte Carlo noise in it), and the Monte Carlo part alone (sqrt(sum se^2) / N)."""
    n = len(values)
    return {
        "mean": float(np.mean(values)),
        "se": float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        "mc_se": float(np.sqrt(np.nansum(np.square(se))) / n),
    }


def _exact_summary(points):
    from scipy import stats

    error = points["error"].to_numpy()
    scored = points["covered"].dropna()
    k, n = int(scored.sum()), len(scored)
    low = float(stats.beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0
    high = float(stats.beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    return {
        "mean_error": float(np.mean(error)),
        "rmse": float(np.sqrt(np.mean(np.square(error)))),
        "max_abs_error": float(np.max(np.abs(error))),
        "exact_mean": float(points["exact"].mean()),
        "covered": k,
        "scored": n,
        "coverage": k / n if n else math.nan,
        "coverage_interval": [low, high] if n else None,
    }


# --------------------------------------------------------------------------------- output


def write_outputs(evaluation, folder):
    """points.parquet (with the summary as metadata), points.csv, summary.json, report.md and
    report.html, each atomically; returns {file name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in FILES}
    write_table(evaluation.points, paths["points.parquet"], {"summary": evaluation.summary})
    _write_text(paths["points.csv"], evaluation.points.to_csv(index=False))
    text = json.dumps(evaluation.summary, indent=2, default=_json_default) + "\n"
    _write_text(paths["summary.json"], text)
    _write_text(paths["report.md"], render_markdown(evaluation.document))
    _write_text(paths["report.html"], render_html(evaluation.document, folder))
    return paths


def _write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode()))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
