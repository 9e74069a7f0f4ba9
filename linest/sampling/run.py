"""``linest.sample`` and ``linest.join_runs``: the driver (warm-up, blocks of draws, resume)."""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from linest._io import check_output, remove_stale_temporaries
from linest._setup import release_compiled_programs
from linest.models.base import for_compute
from linest.priors import Prior, PriorError
from linest.progress import Progress, prints, reporting
from linest.progress import enabled as progress_enabled
from linest.sampling.base import (
    CHEES_FEW_CHAINS,
    KERNELS,
    MEADS_FOLDS,
    MEADS_MIN_CHAINS,
    TARGET_ACCEPTANCE,
    SamplingError,
    SamplingWarning,
    _method_name,
)
from linest.sampling.chains import _across_chains, _chain_devices, _over_chains
from linest.sampling.checkpoint import (
    CHECKPOINT,
    _data_fingerprint,
    _datatree,
    _load,
    _Settings,
    _write,
)
from linest.sampling.chees import ChEES
from linest.sampling.delayed import DelayedAcceptance
from linest.sampling.diagnostics import diagnose
from linest.sampling.kernels import _LogDensity
from linest.sampling.meads import MEADS
from linest.sampling.nuts import WindowAdapted
from linest.sampling.surrogates import AbstractSurrogate, Whitening, surrogate_from_string
from linest.sampling.trajectory import SurrogateTrajectory

#: The module behind each ``kernel=`` name (see kernels.py for the contract).
#: The warm-up's target for HMC trajectories on a surrogate (kernel="hmc", surrogate=...):
#: on the 130-parameter advection posterior (score-matched Gaussian, 4 x 500 draws) 0.8
#: gave an exact acceptance of 0.82 (the surrogate's own 0.82) and max r_hat 1.011; 0.95
#: gave 0.91 (0.93), 6.5 steps a draw instead of 4.5, r_hat 1.008, min ESS 980.
SURROGATE_TRAJECTORY_ACCEPTANCE = 0.95
KERNEL_CLASSES = {"nuts": WindowAdapted, "hmc": WindowAdapted, "chees": ChEES, "meads": MEADS}

# ----------------------------------------------------------------------------- API


def sample(
    model,
    data,
    prior,
    *,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    gradient=None,
    kernel: str = "nuts",
    rng_key=0,
    out=None,
    resume: bool = False,
    overwrite: bool = False,
    block_size: int | None = None,
    progress=True,
    target_acceptance: float | None = None,
    max_tree_depth: int = 10,
    num_integration_steps: int | None = None,
    init=None,
    devices=None,
    log_likelihood: bool = True,
    chain_range: tuple[int, int] | None = None,
    surrogate=None,
    dense_mass: bool = False,
    exact_every: int = 0,
):
    """Posterior draws of ``model``'s parameters given ``data`` and ``prior``.

    Parameters
    ----------
    model, data : a linest model and its data (``read_chains`` output or statistics)
    prior : a :class:`linest.priors.Prior` or a table such as
        ``{"log_rate": {"normal": [-2, 2]}, "effect": {"normal": [0, 1]}}`` (see
        :mod:`linest.priors`; priors on rates get their Jacobian)
    num_chains, num_warmup, num_samples : chains, adaptation steps per chain (blackjax
        window adaptation: step size and diagonal mass matrix) and kept draws per chain
    gradient : the engine method for the leapfrog force (default: the model's exact
        one). A surrogate keeps the log density, hence the accept step, exact.
    kernel : ``"nuts"`` (default), ``"hmc"`` (``num_integration_steps`` leapfrog steps,
        default 16; with a surrogate, default a quarter period of the warm-up's Gaussian)
        or ``"chees"`` (jittered HMC; step size, diagonal mass matrix and trajectory
        length adapted across chains by ChEES; at most ``2**max_tree_depth`` leapfrog
        steps). ChEES is for many chains (dozens to thousands): every chain takes the same
        number of steps per draw. ``"meads"``: generalized HMC, one leapfrog step per draw
        with persistent momentum, step size, damping and diagonal scale adapted across
        chains by MEADS (Hoffman and Sountsov 2022); ``num_chains`` a multiple of 4 (its
        folds), at least 32. A MEADS draw costs one gradient, so it needs many chains or
        many draws: its ESS per draw is lower than NUTS's, its ESS per gradient is not.
    target_acceptance : the adaptation's target (default 0.8 for NUTS and HMC, 0.651
        for ChEES; MEADS has none and refuses one)
    rng_key : an int seed or a JAX key
    out : a netCDF path; written atomically after warm-up and after every block
    resume : continue the run stored in ``out`` (same settings required)
    overwrite : replace an existing ``out`` (otherwise an existing file is an error,
        so that a finished run is never lost by accident)
    block_size : draws per block between progress reports and writes (default:
        ``num_samples / 10``, at least 50)
    progress : where the run is (:mod:`linest.progress`): ``True`` (default) a bar on a
        terminal or in a notebook, occasional lines otherwise, with chain steps per
        second, the step size, divergences so far and the time left; ``False`` nothing;
        ``"bar"``, ``"lines"`` or a callable taking :class:`linest.progress.Update`
    init : starting points, ``(num_chains, num_params)`` or ``(num_params,)``; default
        the model's (``model.chain_starts``: for most, the crude estimates plus
        uniform(-0.5, 0.5) jitter per chain). ``"mle"`` (or a :class:`linest.FitResult`
        of this model and data): fit first, start the chains from the fit's normal
        approximation and sample in its whitened coordinates ``z``, ``theta = theta_hat + L
        z`` with ``L L^T`` the fit's covariance: the warm-up's mass matrix then starts at
        the fit's (dense) covariance instead of the identity, and needs far fewer steps.
    surrogate : a cheap density for delayed acceptance (:mod:`linest.sampling.surrogates`:
        ``Laplace()``, ``Coarse(2)``, ``Affine(Coarse(2))``, ``Custom(fn)``, or their names
        ``"laplace"``, ``"coarse:2"``, ``"affine:coarse:2"``): each NUTS (``kernel="nuts"``)
        transition runs on it and is accepted or rejected with the exact posterior
        (delayed acceptance, :mod:`linest.sampling.delayed`); with ``kernel="hmc"`` each
        jittered trajectory runs on its force and is accepted with the exact energy at its
        ends (:mod:`linest.sampling.trajectory`). Either way the draws stay exact and the
        exact gradient is never evaluated. ``Laplace`` and ``Affine`` are built from the
        fit: they need ``init="mle"``.
    exact_every : with a surrogate, make every ``exact_every``-th draw an exact-gradient
        NUTS transition (0: never). A surrogate lighter-tailed than the posterior (a
        Gaussian where the likelihood has a plateau, as for a rate whose data allow 0)
        leaves the chain exact but not geometrically ergodic: it reaches the tail rarely
        and sticks there, and its means are biased towards the fit at any practical length
        (the tail warning after sampling says so). The exact transitions bound the stuck
        spells, at the cost of an exact NUTS draw every ``exact_every``
        (:mod:`linest.sampling.interleave`).
    dense_mass : adapt a dense mass matrix (blackjax's window adaptation; NUTS and HMC)
        instead of a diagonal one, for correlated posteriors
    devices : JAX devices for the chains (default all); chains are split evenly over
        the largest number of them that divides ``num_chains``
    log_likelihood : add the pointwise log-likelihood group (for ``arviz.loo``)
    chain_range : ``(start, stop)``: run only chains ``start .. stop - 1`` of the
        ``num_chains``, with the keys and starting points they have in the whole run (its
        draws are those chains' draws in one run of all of them; ChEES and MEADS adapt
        on the chains it runs, so their draws differ from one run of all). Default: all
        of them, or, under JAX's multi-process runtime (``jax.distributed.initialize``),
        this process's contiguous share. Join the files of the parts with
        :func:`join_runs`.

    Returns
    -------
    arviz DataTree with groups posterior (``theta`` and natural-scale quantities, e.g.
    ``rate`` and ``hazard_ratio``), sample_stats, log_likelihood, observed_data, and
    ``linest_checkpoint`` (the state a resumed run needs).
    """
    release_compiled_programs()
    model.check_gradient(gradient, "sample")
    gradient, devices = model.sampling_setup(gradient, devices)
    if kernel not in KERNELS:
        raise SamplingError(
            f"sample: kernel={kernel!r}; expected one of {', '.join(map(repr, KERNELS))}"
        )
    if kernel == "meads" and target_acceptance is not None:
        raise SamplingError(
            "sample: kernel='meads' has no target_acceptance (MEADS sets its step size from "
            "the largest eigenvalue of the chains' scaled gradients); leave it out"
        )
    if target_acceptance is None:
        target_acceptance = TARGET_ACCEPTANCE[kernel]
        if surrogate is not None and kernel == "hmc":
            # The surrogate's steps are cheap: integrate its trajectories finely, so that the
            # exact accept step mostly sees the surrogate's error, not the leapfrog's.
            target_acceptance = SURROGATE_TRAJECTORY_ACCEPTANCE
    for name, value, low in (
        ("num_chains", num_chains, 1),
        ("num_warmup", num_warmup, 10),
        ("num_samples", num_samples, 1),
        ("max_tree_depth", max_tree_depth, 1),
        ("num_integration_steps", 1 if num_integration_steps is None else num_integration_steps, 1),
    ):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise SamplingError(f"sample: {name} must be an integer >= {low}, got {value!r}")
    if num_integration_steps is None:
        # HMC on a surrogate: a quarter period of the adapted Gaussian (0 = set after the
        # warm-up from the step size); plain HMC: 16 steps.
        num_integration_steps = 0 if surrogate is not None else 16
    if target_acceptance is not None and not 0 < target_acceptance < 1:
        raise SamplingError(f"sample: target_acceptance must be in (0, 1), got {target_acceptance}")
    if prior is None:
        raise PriorError(
            "sample: a prior is required, e.g. prior={'log_rate': {'normal': [-2.0, 2.0]}, "
            "'effect': {'normal': [0.0, 1.0]}} (or the [priors] table of a spec file)"
        )
    prior = Prior.from_table(model, prior)
    if resume and out is None:
        raise SamplingError("sample: resume=True needs out= (the file of the run to continue)")
    out = None if out is None else Path(out)
    if out is not None and out.exists() and not (resume or overwrite):
        raise SamplingError(
            f"{out} exists: resume=True (--resume) continues that run, overwrite=True "
            "(--overwrite) replaces it"
        )
    if out is not None:  # a folder, a device, a missing folder: before any work
        check_output(out, option="out", overwrite=True)
        remove_stale_temporaries(out)  # left by a run killed while writing

    total_chains = int(num_chains)
    if chain_range is None and jax.process_count() > 1:
        index, count = jax.process_index(), jax.process_count()
        chain_range = (index * total_chains // count, (index + 1) * total_chains // count)
    first, stop = (0, total_chains) if chain_range is None else map(int, chain_range)
    if not 0 <= first < stop <= total_chains:
        raise SamplingError(
            f"sample: chain_range={chain_range!r} must satisfy 0 <= start < stop <= "
            f"num_chains={total_chains}"
        )
    num_chains = stop - first
    if kernel == "chees" and num_chains < 2:
        raise SamplingError(
            f"sample: kernel='chees' adapts across chains: it needs num_chains >= 2 in each "
            f"run (this one has {num_chains})"
        )
    if kernel == "meads" and (num_chains % MEADS_FOLDS or num_chains < MEADS_MIN_CHAINS):
        raise SamplingError(
            f"sample: kernel='meads' adapts from {MEADS_FOLDS} folds of chains: it needs "
            f"num_chains a multiple of {MEADS_FOLDS} and at least {MEADS_MIN_CHAINS} in each "
            f"run (this one has {num_chains}; with 16, 5 of 8 test runs sampled a Gaussian "
            "6 to 212 times too wide); use more chains or kernel='nuts'"
        )
    if kernel == "chees" and num_chains < CHEES_FEW_CHAINS:
        warnings.warn(
            f"sample: kernel='chees' with {num_chains} chains: ChEES estimates its step "
            f"size, mass matrix and trajectory length from the chains' ensemble, which is "
            f"noisy below {CHEES_FEW_CHAINS} (on cav, 4 chains gave 0.18x NUTS's ESS/s and "
            "16 chains 2.1x); use more chains or kernel='nuts'",
            SamplingWarning,
            stacklevel=2,
        )

    init_mode = _init_mode(init)
    if isinstance(surrogate, str):
        try:
            surrogate = surrogate_from_string(surrogate)
        except ValueError as error:
            raise SamplingError(f"sample: {error}") from None
    if surrogate is not None:
        if not isinstance(surrogate, AbstractSurrogate):
            raise SamplingError(
                f"sample: surrogate must be a linest.sampling.surrogates object or a name such "
                f"as 'laplace' or 'coarse:2'; got {surrogate!r}"
            )
        if kernel not in ("nuts", "hmc"):
            raise SamplingError(
                f"sample: a surrogate runs NUTS or HMC transitions on it (delayed acceptance); "
                f"kernel={kernel!r} adapts across chains and has no such form: use "
                "kernel='nuts' or 'hmc'"
            )
        if surrogate.needs_fit and init_mode != "mle":
            raise SamplingError(
                f"sample: the surrogate {surrogate.name()!r} is built from the fit: pass "
                "init='mle' (--init mle)"
            )
    if exact_every and surrogate is None:
        raise SamplingError(
            "sample: exact_every mixes exact NUTS draws into a surrogate kernel's; it needs "
            "a surrogate"
        )
    if not isinstance(exact_every, (int, np.integer)) or exact_every < 0:
        raise SamplingError(f"sample: exact_every must be an integer >= 0; got {exact_every!r}")
    if dense_mass and kernel not in ("nuts", "hmc"):
        raise SamplingError(
            f"sample: dense_mass is for kernel='nuts' or 'hmc' (window adaptation); "
            f"{kernel!r} adapts its own diagonal scales"
        )
    p = model.num_params
    statistics = model.statistics(data)
    compute = for_compute(statistics)
    seed = rng_key if isinstance(rng_key, (int, np.integer)) else None
    if seed is not None:
        key = jax.random.key(int(seed))
    else:
        key = rng_key
        try:
            raw = jax.random.key_data(rng_key)  # a typed key
        except TypeError:
            raw = rng_key  # a raw uint32 key (jax.random.PRNGKey)
        seed = int(np.asarray(raw).ravel()[-1])
    block = block_size or max(50, math.ceil(num_samples / 10))
    block = min(block, num_samples)
    settings = _Settings(
        kernel=kernel,
        num_chains=total_chains,
        num_warmup=int(num_warmup),
        num_samples=int(num_samples),
        seed=int(seed),
        gradient=_method_name(gradient),
        target_acceptance=None if target_acceptance is None else float(target_acceptance),
        max_tree_depth=int(max_tree_depth),
        num_integration_steps=int(num_integration_steps) if kernel == "hmc" else 0,
        params=tuple(model.param_names),
        prior=tuple(prior.describe()),
        data=_data_fingerprint(compute),
        chains="" if (first, stop) == (0, total_chains) else f"{first}:{stop}",
        init=init_mode,
        surrogate="" if surrogate is None else surrogate.name(),
        dense_mass=bool(dense_mass),
        exact_every=int(exact_every),
    )

    records, checkpoint, attrs = None, None, {}
    if resume and out is not None and out.exists():
        records, checkpoint, attrs = _load(out, settings)
    whitening, fitted = _preconditioning(
        model, statistics, init, checkpoint, surrogate, progress, say=_say(progress)
    )
    logdensity = _LogDensity(model, compute, prior, gradient)
    cheap = None
    if surrogate is not None:
        if surrogate.needs_exact_draws:
            _say(progress)(f"building the surrogate {surrogate.name()!r} from exact solves")
        cheap = surrogate.build(model, compute, prior, fitted)
        report = getattr(cheap, "report", "")
        if report:
            _say(progress)(report)
            attrs["linest_surrogate_report"] = report
    if whitening is not None:
        logdensity = whitening.density(logdensity)
        cheap = None if cheap is None else whitening.density(cheap)

    common: dict[str, Any] = dict(
        progress=progress_enabled(progress),
        logdensity=logdensity,
        target_acceptance=0.0 if target_acceptance is None else float(target_acceptance),
        max_tree_depth=int(max_tree_depth),
        num_warmup=int(num_warmup),
        block=int(block),
        num_samples=int(num_samples),
    )
    if cheap is not None and kernel == "hmc":
        sampler = SurrogateTrajectory(
            **common,
            algorithm=kernel,
            num_integration_steps=int(num_integration_steps),
            dense_mass=bool(dense_mass),
            surrogate=cheap,
            exact_every=int(exact_every),
        )
    elif cheap is not None:
        sampler = DelayedAcceptance(
            **common,
            algorithm=kernel,
            num_integration_steps=int(num_integration_steps),
            dense_mass=bool(dense_mass),
            surrogate=cheap,
            exact_every=int(exact_every),
        )
    elif KERNEL_CLASSES[kernel] is WindowAdapted:
        sampler = WindowAdapted(
            **common,
            algorithm=kernel,
            num_integration_steps=int(num_integration_steps),
            dense_mass=bool(dense_mass),
        )
    else:
        sampler = KERNEL_CLASSES[kernel](**common)
    chosen = _chain_devices(num_chains, devices)
    # Draw i of chain c uses fold_in(fold_in(key, c), i); warm-up a separate stream.
    ids = jnp.arange(first, stop)
    chain_keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(ids)
    warmup_root = jax.random.fold_in(key, 2**31 - 1)
    warmup_keys = jax.vmap(lambda c: jax.random.fold_in(warmup_root, c))(ids)

    say = _say(progress)
    if checkpoint is not None:
        say(f"resuming {out} at draw {checkpoint['next_draw']} of {num_samples}")
    elif resume:
        say(f"{out} does not exist yet: starting a new run")

    if checkpoint is None:
        if whitening is not None:  # the fit's normal approximation: z ~ N(0, I)
            z0 = jax.random.normal(jax.random.fold_in(key, 104729), (total_chains, p))
            theta0 = z0[first:stop]
        else:
            theta0 = _initial(model, compute, init, total_chains, key)[first:stop]
        fixed = np.flatnonzero(np.ptp(np.asarray(theta0), axis=0) == 0)
        if kernel == "meads" and fixed.size:
            same = [model.param_names[i] for i in fixed]
            raise SamplingError(
                "sample: kernel='meads' scales each parameter by its spread across chains, "
                f"and every chain starts at the same {', '.join(same)}: give init= one "
                "dispersed row per chain, or leave init out"
            )
        start_theta = theta0[0] if whitening is None else whitening.to_theta(theta0[0])
        model.preflight(np.asarray(start_theta), compute, gradient)
        start = time.perf_counter()
        say(f"warm-up: {num_chains} chains x {num_warmup} steps on {len(chosen)} device(s)")
        if sampler.adapts_across_chains:
            warm = _across_chains(tuple(chosen))
            keys = warmup_root
        else:
            warm = _over_chains("warmup", tuple(chosen), num_chains)
            keys = warmup_keys
        total = num_chains * int(num_warmup)
        with Progress("warm-up", total, "chain steps", progress) as bar:
            with reporting(bar, divergences=None):
                position, lp, grad, step_size, inverse_mass, extra = warm(sampler, keys, theta0)
                jax.block_until_ready(position)
            bar.update(max(total - bar.done, 0))  # ticks are every few steps
        checkpoint = {
            "position": np.asarray(position),
            "logdensity": np.asarray(lp),
            "grad": np.asarray(grad),
            "step_size": np.asarray(step_size),
            "inverse_mass": np.asarray(inverse_mass),
            "extra": {k: np.asarray(v) for k, v in extra.items()},
            "next_draw": 0,
        }
        if whitening is not None:
            checkpoint["whitening"] = {
                "whitening_shift": np.asarray(whitening.shift),
                "whitening_matrix": np.asarray(whitening.matrix),
            }
        attrs["linest_warmup_seconds"] = time.perf_counter() - start
        say(
            f"warm-up done in {attrs['linest_warmup_seconds']:.1f} s; step sizes "
            + ", ".join(f"{s:.3g}" for s in checkpoint["step_size"])
        )
        _check_warmup(checkpoint)
        if out is not None:
            _write(_datatree(model, settings, None, checkpoint, statistics, attrs), out)

    done = checkpoint["next_draw"]
    run = _over_chains("run_block", tuple(chosen), num_chains)
    sampling_seconds = float(attrs.get("linest_sampling_seconds", 0.0))
    steps = num_chains * block * math.ceil(max(num_samples - done, 0) / block)
    bar = Progress("draws", steps, "chain steps", progress)
    before = 0 if records is None else int(np.sum(np.asarray(records["diverging"])))
    with bar, reporting(bar, divergences=before):
        while done < num_samples:
            start = time.perf_counter()
            position, lp, grad, new, extra = run(
                sampler,
                chain_keys,
                jnp.asarray(checkpoint["position"]),
                jnp.asarray(checkpoint["logdensity"]),
                jnp.asarray(checkpoint["grad"]),
                jnp.asarray(checkpoint["step_size"]),
                jnp.asarray(checkpoint["inverse_mass"]),
                jnp.full((num_chains,), done, dtype=jnp.int32),
                {k: jnp.asarray(v) for k, v in checkpoint.get("extra", {}).items()},
            )
            new = {k: np.asarray(v) for k, v in new.items()}
            elapsed = time.perf_counter() - start
            sampling_seconds += elapsed
            kept = min(block, num_samples - done)  # the last block may run past num_samples
            fresh = {k: v[:, :kept] for k, v in new.items()}
            if whitening is not None:  # the draws of z back to theta
                fresh["theta"] = np.asarray(whitening.to_theta(jnp.asarray(fresh["theta"])))
            records = (
                fresh
                if records is None
                else {k: np.concatenate([np.asarray(records[k]), fresh[k]], axis=1) for k in fresh}
            )
            done += kept
            checkpoint |= {
                "position": np.asarray(position),
                "logdensity": np.asarray(lp),
                "grad": np.asarray(grad),
                "extra": {k: np.asarray(v) for k, v in extra.items()},
                "next_draw": done,
            }
            attrs["linest_sampling_seconds"] = sampling_seconds
            # The block's summary joins the display's fields (its steps were counted
            # from inside the loop).
            bar.update(
                0,
                acceptance=round(float(np.mean(fresh["acceptance_rate"])), 2),
                **{"mean steps": round(float(np.mean(fresh["n_steps"])), 1)},
            )
            if out is not None:
                _write(_datatree(model, settings, records, checkpoint, statistics, attrs), out)

    assert records is not None
    loglik = None
    if log_likelihood:
        loglik = _pointwise(model, statistics, records["theta"])
    tree = _datatree(model, settings, records, checkpoint, statistics, attrs, loglik)
    notes = diagnose(
        tree,
        max_tree_depth if sampler.reports_tree_depth else None,
        np.asarray(model.boundary_mask(), bool),
    )
    tree.attrs["linest_warnings"] = json.dumps(notes)
    for note in notes:
        warnings.warn(note, SamplingWarning, stacklevel=2)
    if out is not None:
        _write(tree, out)
    return tree


def _say(progress):
    """Milestone lines (warm-up done, resuming...) when the display is on (a callback
    progress gets the :class:`~linest.progress.Update` stream only)."""

    def say(text):
        if prints(progress):
            print(f"linest sample: {text}", file=sys.stderr, flush=True)

    return say


def _init_mode(init) -> str:
    """ "mle" when the chains start from (and are preconditioned by) a fit, else ""."""
    from linest.models.result import FitResult

    if isinstance(init, FitResult):
        return "mle"
    if isinstance(init, str):
        if init.strip().lower() != "mle":
            raise SamplingError(f"sample: init={init!r}; expected 'mle', a FitResult or arrays")
        return "mle"
    return ""


class _FitSummary:
    """What the surrogates read of a fit: its estimate and covariance."""

    def __init__(self, theta, covariance, param_names):
        self.theta, self.covariance, self.param_names = theta, covariance, param_names


def _preconditioning(model, statistics, init, checkpoint, surrogate, progress, say):
    """(Whitening or None, the fit's estimate and covariance or None) for ``init``.

    A resumed run takes the whitening from its checkpoint (no second fit); a new one fits
    (``init="mle"``) or takes the given FitResult."""
    from linest.models.result import FitResult

    if _init_mode(init) != "mle":
        return None, None
    if checkpoint is not None and "whitening" in checkpoint:
        shift = jnp.asarray(checkpoint["whitening"]["whitening_shift"])
        matrix = jnp.asarray(checkpoint["whitening"]["whitening_matrix"])
        whitening = Whitening(shift, matrix)
    else:
        if isinstance(init, FitResult):
            fit = init
            if tuple(fit.param_names) != tuple(model.param_names):
                raise SamplingError(
                    "sample: init is a FitResult of another model (its parameters are "
                    f"{list(fit.param_names)[:4]}...); fit this model, or pass init='mle'"
                )
        else:
            import warnings as _warnings

            from linest.fit import FitWarning
            from linest.fit import fit as run_fit

            say("init='mle': fitting first")
            with _warnings.catch_warnings():
                _warnings.simplefilter("ignore", FitWarning)
                fit = run_fit(model, statistics, assess_model_error=False, progress=progress)
            if not fit.converged:
                raise SamplingError(
                    "sample: init='mle': the fit did not converge "
                    f"({'; '.join(fit.warnings) or fit.message}); sample without init='mle'"
                )
            say(f"fit: converged in {fit.iterations} iterations, {fit.seconds:.1f} s")
        whitening = Whitening.from_fit(fit)
    matrix = np.asarray(whitening.matrix)
    summary = _FitSummary(np.asarray(whitening.shift), matrix @ matrix.T, tuple(model.param_names))
    return whitening, summary


def _initial(model, statistics, init, num_chains, key) -> jax.Array:
    p = model.num_params
    if init is not None:
        init = np.asarray(init, dtype=float)
        if init.shape == (p,):
            init = np.broadcast_to(init, (num_chains, p))
        if init.shape != (num_chains, p) or not np.all(np.isfinite(init)):
            raise SamplingError(
                f"sample: init must be finite, shaped ({p},) or ({num_chains}, {p}); "
                f"got shape {init.shape}"
            )
        return jnp.asarray(init)
    return model.chain_starts(statistics, num_chains, key)


def _check_warmup(checkpoint) -> None:
    bad = ~np.isfinite(checkpoint["logdensity"]) | ~np.isfinite(checkpoint["step_size"])
    if bad.any():
        chains = np.flatnonzero(bad).tolist()
        raise FloatingPointError(
            f"sample: warm-up ended with a non-finite log density or step size in chain(s) "
            f"{chains}; check the prior and the starting points (init=)"
        )


def _pointwise(model, statistics, theta):
    labels = model.observation_labels(statistics)
    if labels is None:
        return None
    flat = jnp.asarray(theta.reshape(-1, theta.shape[-1]))
    values = np.asarray(_pointwise_draws(model, statistics, flat))
    return values.reshape(theta.shape[:2] + (-1,)), labels


@eqx.filter_jit
def _pointwise_draws(model, statistics, thetas):
    return jax.lax.map(lambda t: model.pointwise_loglik(t, statistics), thetas, batch_size=64)


#: A log-rate this far below the largest rate's posterior median is "at 0".


def join_runs(parts) -> Any:
    """One DataTree from the files (or trees) of runs that each sampled part of the same
    chains (``chain_range``, or one per process under ``jax.distributed``): posterior,
    sample statistics and pointwise log-likelihood joined along ``chain`` in chain order,
    the diagnostics recomputed on the whole. The parts must share every setting but
    their chain ranges, and together hold each chain once."""
    import xarray as xr

    trees, names = [], []
    for part in parts:
        if isinstance(part, (str, Path)):
            try:
                trees.append(xr.open_datatree(part, engine="h5netcdf").load())
            except Exception as error:
                raise SamplingError(
                    f"{part}: cannot join, the file is not readable ({error})"
                ) from None
            names.append(str(part))
        else:
            trees.append(part)
            names.append(f"part {len(names) + 1}")
    if not trees:
        raise SamplingError("join_runs: no runs given")
    settings = []
    for tree, name in zip(trees, names):
        if CHECKPOINT not in tree.children or "posterior" not in tree.children:
            raise SamplingError(f"{name}: cannot join, not a linest run with draws")
        saved = json.loads(tree[CHECKPOINT].attrs["settings"])
        if tree[CHECKPOINT].attrs["next_draw"] != saved["num_samples"]:
            raise SamplingError(
                f"{name}: cannot join an unfinished run ({tree[CHECKPOINT].attrs['next_draw']} "
                f"of {saved['num_samples']} draws); resume it first"
            )
        settings.append(saved)
    for name, saved in zip(names[1:], settings[1:]):
        different = sorted(
            k for k in saved.keys() | settings[0].keys()
            if k != "chains" and saved.get(k) != settings[0].get(k)
        )  # fmt: skip
        if different:
            raise SamplingError(
                f"{name}: cannot join, its settings differ from {names[0]}'s in "
                f"{', '.join(different)}"
            )
    order = sorted(range(len(trees)), key=lambda i: int(trees[i]["posterior"]["chain"][0]))
    chains = np.concatenate([trees[i]["posterior"]["chain"].values for i in order])
    total = settings[0]["num_chains"]
    if not np.array_equal(chains, np.arange(total)):
        raise SamplingError(
            f"join_runs: the parts hold chains {chains.tolist()}, not each of 0..{total - 1} once"
        )
    joined = xr.DataTree()
    for group in ("posterior", "sample_stats", "log_likelihood"):
        if all(group in trees[i].children for i in order):
            parts_of = [trees[i][group].to_dataset() for i in order]
            joined[group] = xr.DataTree(cast(xr.Dataset, xr.concat(parts_of, dim="chain")))
    if "observed_data" in trees[0].children:
        joined["observed_data"] = trees[0]["observed_data"]
    joined.attrs.update(trees[order[0]].attrs)
    for key in ("linest_warmup_seconds", "linest_sampling_seconds"):
        values = [float(trees[i].attrs.get(key, 0.0)) for i in order]
        joined.attrs[key] = max(values)  # the parts ran side by side
    saved = settings[0]
    depth = saved["max_tree_depth"] if saved["kernel"] == "nuts" else None
    notes = diagnose(joined, depth, None)
    joined.attrs["linest_warnings"] = json.dumps(notes)
    joined.attrs["linest_parts"] = len(trees)
    return joined
