"""Bayesian posteriors by HMC/NUTS (blackjax), in blocks that survive a killed process.

``linest.sample(model, data, prior, ...)`` runs blackjax's window adaptation and then
NUTS (or static HMC), one chain per JAX device when there are several (``jax.shard_map``
over ``jax.make_mesh``), chains vmapped within a device. Draws come back as an ArviZ
``DataTree``.

**Many chains.** ``kernel="chees"`` (jittered HMC whose step size, diagonal mass matrix
and trajectory length are tuned by the ChEES criterion across chains, Hoffman, Radul and
Sountsov 2021) adapts from all chains at once, and every chain then takes the same number
of leapfrog steps per draw: no chain waits for another's longer NUTS tree, which is what
thousands of vmapped chains on one accelerator need. (MEADS is not offered: blackjax
1.7.1's ``meads_adaptation`` drove the chains of a 7-dimensional Gaussian with standard
deviations 0.05 to 10 to spreads 36 to 370 times too wide, with 8 to 256 chains.)

**Surrogate trajectories.** With ``gradient=linest.Surrogate(...)`` the log density's
*value* is still exact (every engine method computes ``exp`` exactly; only its derivative
is approximated), so blackjax's leapfrog uses the cheap surrogate force while the
energy, the divergence check and NUTS's multinomial choice use the exact log density.
Leapfrog with any force is volume-preserving and reversible, so the chain targets the
exact posterior (gradients.md, section 5); a poor surrogate only lowers acceptance,
which shows as a smaller adapted step size and deeper trees.

**Resumable runs.** With ``out=PATH`` the run writes, after warm-up and after every
block of draws, the whole DataTree so far plus a ``linest_checkpoint`` group (each
chain's last state, step size and mass matrix, the next draw index, and a fingerprint
of the settings) to a temporary file renamed over ``PATH`` (atomic). ``resume=True``
continues from it. The random key of draw ``i`` of chain ``c`` is
``fold_in(fold_in(key, c), i)``, so a resumed run's draws equal an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from linest._io import atomic_write
from linest.models.base import for_compute
from linest.priors import Prior, PriorError

__all__ = ["SamplingError", "SamplingWarning", "join_runs", "sample"]

CHECKPOINT = "linest_checkpoint"

KERNELS = ("nuts", "hmc", "chees")
#: ChEES's first step size and its Adam learning rate (Hoffman, Radul and Sountsov 2021).
CHEES_INITIAL_STEP = 0.1
CHEES_LEARNING_RATE = 0.025
#: Fewer chains than this get a warning with kernel="chees" (its estimates are cross-chain).
CHEES_FEW_CHAINS = 16
#: Default acceptance targets: NUTS/HMC (Stan's 0.8), ChEES (0.651, optimal for HMC).
TARGET_ACCEPTANCE = {"nuts": 0.8, "hmc": 0.8, "chees": 0.651}


class SamplingWarning(UserWarning):
    """Convergence diagnostics failed (r_hat, ESS, divergences, tree depth)."""


class SamplingError(ValueError):
    """Bad sampler settings, or a checkpoint that does not match the request."""


def _method_name(gradient) -> str:
    return "default" if gradient is None else repr(gradient)


@dataclasses.dataclass(frozen=True)
class _Settings:
    kernel: str
    num_chains: int
    num_warmup: int
    num_samples: int
    seed: int
    gradient: str
    target_acceptance: float
    max_tree_depth: int
    num_integration_steps: int
    params: tuple[str, ...]
    prior: tuple[str, ...]
    data: str
    chains: str = ""  # "start:stop" when this run holds part of num_chains (processes)

    def fingerprint(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def _data_fingerprint(statistics) -> str:
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(statistics):
        if hasattr(leaf, "shape"):
            array = np.ascontiguousarray(np.asarray(leaf))
            digest.update(str(array.shape).encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- chains


def _chain_devices(num_chains: int, devices=None) -> list:
    """The largest number of devices (at most one chain group each) dividing num_chains.
    By default this process's own devices (under ``jax.distributed`` ``jax.devices()``
    lists every process's)."""
    devices = list(jax.local_devices() if devices is None else devices)
    count = max(d for d in range(1, len(devices) + 1) if num_chains % d == 0)
    return devices[:count]


@functools.lru_cache(maxsize=32)
def _over_chains(method: str, devices: tuple, num_chains: int):
    """``_Sampler.<method>`` (one chain) over a leading chain axis, sharded over ``devices``.

    Returns ``g(sampler, *per_chain_args)``; ``sampler`` (model, data, prior) is
    replicated. Cached, and jitted on the sampler's structure, so a second run of the
    same model and settings reuses the compiled program.

    Within a device the chains are vmapped; with one chain per device the chain runs
    unbatched, so data-dependent branches (``lax.cond``: NUTS's tree building, the
    eigendecomposition's fallback) run one branch instead of both, and no chain waits
    for another's longer trajectory.
    """
    per_device = num_chains // len(devices)

    def batched(sampler, *args):
        f = getattr(sampler, method)
        if per_device == 1:
            out = f(*jax.tree.map(lambda x: x[0], args))
            return jax.tree.map(lambda x: x[None], out)
        return jax.vmap(f)(*args)

    if len(devices) == 1:  # on that device (not the default one, when another is asked)
        single = eqx.filter_jit(batched)
        return lambda sampler, *args: single(sampler, *jax.device_put(args, devices[0]))
    mesh = jax.make_mesh((len(devices),), ("chain",), devices=list(devices))
    chain = jax.sharding.PartitionSpec("chain")
    sharding = jax.sharding.NamedSharding(mesh, chain)

    @eqx.filter_jit
    def run(sampler, *args):
        dynamic, static = eqx.partition(sampler, eqx.is_array)

        def inner(dynamic, *args):
            return batched(eqx.combine(dynamic, static), *args)

        specs = (jax.sharding.PartitionSpec(),) + (chain,) * len(args)
        return jax.shard_map(inner, mesh=mesh, in_specs=specs, out_specs=chain, check_vma=False)(
            dynamic, *args
        )

    def sharded(sampler, *args):
        return run(sampler, *jax.device_put(args, sharding))

    return sharded


@functools.lru_cache(maxsize=8)
def _across_chains(devices: tuple):
    """``_Sampler.warmup_all`` (all chains at once: ChEES adapts from the ensemble),
    jitted; with several devices the chain axis is sharded over them and XLA
    places the cross-chain reductions."""
    run = eqx.filter_jit(lambda sampler, key, positions: sampler.warmup_all(key, positions))
    if len(devices) == 1:
        return lambda sampler, key, positions: run(
            sampler, *jax.device_put((key, positions), devices[0])
        )
    # Auto axes: XLA (GSPMD) propagates the chain sharding through the adaptation.
    mesh = jax.make_mesh(
        (len(devices),),
        ("chain",),
        devices=list(devices),
        axis_types=(jax.sharding.AxisType.Auto,),
    )
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chain"))
    return lambda sampler, key, positions: run(sampler, key, jax.device_put(positions, sharding))


class _LogDensity(eqx.Module):
    """log p(theta | data) up to a constant: the model's log-likelihood plus the prior."""

    model: object
    statistics: object
    prior: Prior = eqx.field(static=True)
    gradient: object = eqx.field(static=True)

    def __call__(self, theta):
        value = self.model.loglik(theta, self.statistics, self.gradient) + self.prior.logpdf(theta)
        return jnp.where(jnp.isfinite(value), value, -jnp.inf)


class _Sampler(eqx.Module):
    """Per-chain warm-up and block functions (the model and data are closed over)."""

    logdensity: Callable
    kernel: str = eqx.field(static=True)
    target_acceptance: float = eqx.field(static=True)
    max_tree_depth: int = eqx.field(static=True)
    num_integration_steps: int = eqx.field(static=True)
    num_warmup: int = eqx.field(static=True)
    block: int = eqx.field(static=True)
    num_samples: int = eqx.field(static=True, default=0)

    def _algorithm(self):
        import blackjax

        return blackjax.nuts if self.kernel == "nuts" else blackjax.hmc

    def _halton_bits(self) -> int:
        """Bits of the Halton sequence that jitters ChEES's trajectory lengths: enough
        for every warm-up and sampling step to get its own value."""
        return max(10, math.ceil(math.log2(self.num_warmup + self.num_samples + 2)))

    def _jittered_steps(self, index, num_steps):
        """ChEES's number of leapfrog steps at step ``index``: ceil(u * num_steps), u
        from the Halton sequence (the same for every chain, as in the warm-up)."""
        from blackjax.mcmc.dynamic_hmc import halton_sequence

        u = halton_sequence(index, self._halton_bits())
        return jnp.maximum(jnp.ceil(u * num_steps), 1).astype(int)

    def warmup_all(self, key, positions):
        """ChEES adaptation from all chains at once (``positions``: (chains, p))."""
        import blackjax
        import optax
        from blackjax.adaptation.base import get_filter_adapt_info_fn

        n, p = positions.shape
        adaptation = blackjax.chees_adaptation(
            self.logdensity,
            n,
            target_acceptance_rate=self.target_acceptance,
            max_leapfrog_steps=2**self.max_tree_depth,
            adaptation_info_fn=get_filter_adapt_info_fn(),
            mass_matrix_estimation="diagonal",
        )
        run = cast(Callable, adaptation.run)  # blackjax types run's signature loosely
        (states, parameters), _ = run(
            key,
            positions,
            step_size=CHEES_INITIAL_STEP,
            optim=optax.adam(CHEES_LEARNING_RATE),
            num_steps=self.num_warmup,
            max_sampling_steps=max(self.num_samples, 1),
        )
        (num_steps,) = parameters["integration_steps_params"]
        extra = {
            "random_arg": jnp.broadcast_to(states.random_generator_arg, (n,)),
            "num_steps": jnp.full((n,), num_steps, positions.dtype),
        }
        return (
            states.position,
            states.logdensity,
            states.logdensity_grad,
            jnp.full((n,), parameters["step_size"], positions.dtype),
            jnp.broadcast_to(parameters["inverse_mass_matrix"], (n, p)),
            extra,
        )

    def _extra(self) -> dict[str, Any]:
        if self.kernel == "nuts":
            return {"max_num_doublings": self.max_tree_depth}
        return {"num_integration_steps": self.num_integration_steps}

    def warmup(self, key, position):
        import blackjax
        from blackjax.adaptation.base import get_filter_adapt_info_fn

        adaptation = blackjax.window_adaptation(
            self._algorithm(),
            self.logdensity,
            target_acceptance_rate=self.target_acceptance,
            adaptation_info_fn=get_filter_adapt_info_fn(),
            **self._extra(),
        )
        run = cast(Callable, adaptation.run)
        result, _ = run(key, position, num_steps=self.num_warmup)
        state = result.state
        return (
            state.position,
            state.logdensity,
            state.logdensity_grad,
            jnp.asarray(result.parameters["step_size"]),
            result.parameters["inverse_mass_matrix"],
        )

    def run_block(self, key, position, logdensity, grad, step_size, inverse_mass, start, extra):
        import blackjax
        from blackjax.mcmc.dynamic_hmc import DynamicHMCState
        from blackjax.mcmc.hmc import HMCState

        if self.kernel == "chees":
            algorithm = blackjax.dynamic_hmc(
                self.logdensity,
                step_size,
                inverse_mass,
                next_random_arg_fn=lambda index: index + 1,
                integration_steps_fn=self._jittered_steps,
                integration_steps_params=(extra["num_steps"],),
            )
            state = DynamicHMCState(position, logdensity, grad, extra["random_arg"])
        else:
            algorithm = self._algorithm()(self.logdensity, step_size, inverse_mass, **self._extra())
            state = HMCState(position, logdensity, grad)

        def step(state, i):
            state, info = algorithm.step(jax.random.fold_in(key, start + i), state)
            depth = (
                info.num_trajectory_expansions
                if self.kernel == "nuts"
                else jnp.zeros((), jnp.int32)
            )
            record = {
                "theta": state.position,
                "lp": state.logdensity,
                "acceptance_rate": info.acceptance_rate,
                "diverging": info.is_divergent,
                "energy": info.energy,
                "n_steps": info.num_integration_steps,
                "tree_depth": depth,
            }
            return state, record

        state, records = jax.lax.scan(step, state, jnp.arange(self.block))
        if self.kernel == "chees":
            extra = extra | {"random_arg": state.random_generator_arg}
        return state.position, state.logdensity, state.logdensity_grad, records, extra


# ----------------------------------------------------------------------------- output


def _datatree(model, settings, records, checkpoint, statistics, extra_attrs, loglik=None):
    import xarray as xr

    attrs = {
        "linest_kernel": settings.kernel,
        "linest_gradient": settings.gradient,
        "linest_seed": settings.seed,
        "linest_prior": "; ".join(settings.prior),
        **extra_attrs,
    }
    if records is None:  # after warm-up, before the first block
        tree = xr.DataTree(xr.Dataset(attrs=attrs))
    else:
        first = int(settings.chains.split(":")[0]) if settings.chains else 0
        tree = _draws_tree(model, records, checkpoint, statistics, attrs, loglik, first)
    tree[CHECKPOINT] = xr.DataTree(
        xr.Dataset(
            {
                "position": (("chain", "param"), checkpoint["position"]),
                "logdensity": (("chain",), checkpoint["logdensity"]),
                "logdensity_grad": (("chain", "param"), checkpoint["grad"]),
                "step_size": (("chain",), checkpoint["step_size"]),
                "inverse_mass_matrix": (
                    ("chain", *[f"mass_{i}" for i in range(checkpoint["inverse_mass"].ndim - 1)]),
                    checkpoint["inverse_mass"],
                ),
                **{
                    f"kernel_{name}": (
                        ("chain", *[f"{name}_{i}" for i in range(np.ndim(value) - 1)]),
                        np.asarray(value),
                    )
                    for name, value in checkpoint.get("extra", {}).items()
                },
            },
            attrs={"next_draw": int(checkpoint["next_draw"]), "settings": settings.fingerprint()},
        )
    )
    return tree


def _draws_tree(model, records, checkpoint, statistics, attrs, loglik, first_chain=0):
    import arviz as az

    theta = records["theta"]
    posterior = {"theta": theta}
    dims = {"theta": ["param"]}
    # Chains keep their number in the whole run (a part of one starts at first_chain).
    coords = {
        "param": list(model.param_names),
        "chain": list(range(first_chain, first_chain + theta.shape[0])),
    }
    for name, (values, dim, labels) in model.natural_parameters(jnp.asarray(theta)).items():
        posterior[name] = np.asarray(values)
        dims[name] = [dim]
        coords[dim] = list(labels)
    num_draws = theta.shape[1]
    step_size = np.broadcast_to(checkpoint["step_size"][:, None], (theta.shape[0], num_draws))
    sample_stats = {
        "lp": records["lp"],
        "acceptance_rate": records["acceptance_rate"],
        "diverging": records["diverging"].astype(bool),
        "energy": records["energy"],
        "n_steps": records["n_steps"],
        "tree_depth": records["tree_depth"],
        "step_size": np.array(step_size),
    }
    groups = {"posterior": posterior, "sample_stats": sample_stats}
    if loglik is not None:
        dim, labels = loglik[1]
        groups["log_likelihood"] = {"obs": loglik[0]}
        dims["obs"] = [dim]
        coords[dim] = labels
    observed = model.observed_data(statistics)
    if observed:
        groups["observed_data"] = {}
        for name, (values, names, labels) in observed.items():
            groups["observed_data"][name] = values
            dims[name] = list(names)
            coords.update(labels)
    tree = az.from_dict(groups, dims=dims, coords=coords)
    tree.attrs.update(attrs)
    return tree


def _write(tree, path: Path) -> None:
    """Write the DataTree atomically (a killed run leaves the previous block's file)."""
    atomic_write(path, lambda tmp: tree.to_netcdf(tmp, engine="h5netcdf"))


def _load(path: Path, settings: _Settings):
    """(records, checkpoint) from a previous run's file, after checking it matches."""
    import xarray as xr

    try:
        tree = xr.open_datatree(path, engine="h5netcdf").load()
    except Exception as error:
        raise SamplingError(f"{path}: cannot resume, the file is not readable ({error})") from None
    if CHECKPOINT not in tree.children:
        raise SamplingError(f"{path}: cannot resume, no {CHECKPOINT} group (not a linest run?)")
    group = tree[CHECKPOINT]
    saved = json.loads(group.attrs["settings"])
    wanted = dataclasses.asdict(settings)
    defaults = {f.name: f.default for f in dataclasses.fields(_Settings)}
    different = {
        k: (saved.get(k), v)
        for k, v in wanted.items()
        if json.loads(json.dumps(v)) != saved.get(k)
        and not (k not in saved and v == defaults.get(k))  # a field newer than the file
    }
    if different:
        detail = "; ".join(f"{k}: file {a!r}, now {b!r}" for k, (a, b) in different.items())
        raise SamplingError(
            f"{path}: cannot resume, the run in the file used different settings ({detail}); "
            "use the same settings, or a new --out file"
        )
    checkpoint = {
        "position": group["position"].values,
        "logdensity": group["logdensity"].values,
        "grad": group["logdensity_grad"].values,
        "step_size": group["step_size"].values,
        "inverse_mass": group["inverse_mass_matrix"].values,
        "extra": {
            name.removeprefix("kernel_"): group[name].values
            for name in map(str, group.data_vars)
            if name.startswith("kernel_")
        },
        "next_draw": int(group.attrs["next_draw"]),
    }
    records = None
    if checkpoint["next_draw"] > 0:
        post, stats = tree["posterior"], tree["sample_stats"]
        records = {"theta": post["theta"].values}
        for k in ("lp", "acceptance_rate", "diverging", "energy", "n_steps", "tree_depth"):
            records[k] = stats[k].values
    return records, checkpoint, dict(tree.attrs)


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
    progress: bool = True,
    target_acceptance: float | None = None,
    max_tree_depth: int = 10,
    num_integration_steps: int = 16,
    init=None,
    devices=None,
    log_likelihood: bool = True,
    chain_range: tuple[int, int] | None = None,
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
    kernel : ``"nuts"`` (default), ``"hmc"`` (``num_integration_steps`` leapfrog steps)
        or ``"chees"`` (jittered HMC; step size, diagonal mass matrix and trajectory
        length adapted across chains by ChEES; at most ``2**max_tree_depth`` leapfrog
        steps). ChEES is for many chains (dozens to thousands): every chain takes the same
        number of steps per draw.
    target_acceptance : the adaptation's target (default 0.8 for NUTS and HMC, 0.651
        for ChEES)
    rng_key : an int seed or a JAX key
    out : a netCDF path; written atomically after warm-up and after every block
    resume : continue the run stored in ``out`` (same settings required)
    overwrite : replace an existing ``out`` (otherwise an existing file is an error,
        so that a finished run is never lost by accident)
    block_size : draws per block between progress reports and writes (default:
        ``num_samples / 10``, at least 50)
    progress : print a line per block to stderr
    init : starting points, ``(num_chains, num_params)`` or ``(num_params,)``; default
        the model's (``model.chain_starts``: for most, the crude estimates plus
        uniform(-0.5, 0.5) jitter per chain)
    devices : JAX devices for the chains (default all); chains are split evenly over
        the largest number of them that divides ``num_chains``
    log_likelihood : add the pointwise log-likelihood group (for ``arviz.loo``)
    chain_range : ``(start, stop)``: run only chains ``start .. stop - 1`` of the
        ``num_chains``, with the keys and starting points they have in the whole run (its
        draws are those chains' draws in one run of all of them; ChEES adapts on the
        chains it runs). Default: all of them, or, under JAX's multi-process runtime
        (``jax.distributed.initialize``), this process's contiguous share. Join the
        files of the parts with :func:`join_runs`.

    Returns
    -------
    arviz DataTree with groups posterior (``theta`` and natural-scale quantities, e.g.
    ``rate`` and ``hazard_ratio``), sample_stats, log_likelihood, observed_data, and
    ``linest_checkpoint`` (the state a resumed run needs).
    """
    model.check_gradient(gradient, "sample")
    gradient, devices = model.sampling_setup(gradient, devices)
    if kernel not in KERNELS:
        raise SamplingError(
            f"sample: kernel={kernel!r}; expected one of {', '.join(map(repr, KERNELS))}"
        )
    if target_acceptance is None:
        target_acceptance = TARGET_ACCEPTANCE[kernel]
    for name, value, low in (
        ("num_chains", num_chains, 1),
        ("num_warmup", num_warmup, 10),
        ("num_samples", num_samples, 1),
        ("max_tree_depth", max_tree_depth, 1),
        ("num_integration_steps", num_integration_steps, 1),
    ):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise SamplingError(f"sample: {name} must be an integer >= {low}, got {value!r}")
    if not 0 < target_acceptance < 1:
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
    if kernel == "chees" and num_chains < CHEES_FEW_CHAINS:
        warnings.warn(
            f"sample: kernel='chees' with {num_chains} chains: ChEES estimates its step "
            f"size, mass matrix and trajectory length from the chains' ensemble, which is "
            f"noisy below {CHEES_FEW_CHAINS} (on cav, 4 chains gave 0.18x NUTS's ESS/s and "
            "16 chains 2.1x); use more chains or kernel='nuts'",
            SamplingWarning,
            stacklevel=2,
        )

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
        target_acceptance=float(target_acceptance),
        max_tree_depth=int(max_tree_depth),
        num_integration_steps=int(num_integration_steps) if kernel == "hmc" else 0,
        params=tuple(model.param_names),
        prior=tuple(prior.describe()),
        data=_data_fingerprint(compute),
        chains="" if (first, stop) == (0, total_chains) else f"{first}:{stop}",
    )

    sampler = _Sampler(
        logdensity=_LogDensity(model, compute, prior, gradient),
        kernel=kernel,
        target_acceptance=float(target_acceptance),
        max_tree_depth=int(max_tree_depth),
        num_integration_steps=int(num_integration_steps),
        num_warmup=int(num_warmup),
        block=int(block),
        num_samples=int(num_samples),
    )
    chosen = _chain_devices(num_chains, devices)
    # Draw i of chain c uses fold_in(fold_in(key, c), i); warm-up a separate stream.
    ids = jnp.arange(first, stop)
    chain_keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(ids)
    warmup_root = jax.random.fold_in(key, 2**31 - 1)
    warmup_keys = jax.vmap(lambda c: jax.random.fold_in(warmup_root, c))(ids)

    def say(text):
        if progress:
            print(f"linest sample: {text}", file=sys.stderr, flush=True)

    records, checkpoint, attrs = None, None, {}
    if resume and out is not None and out.exists():
        records, checkpoint, attrs = _load(out, settings)
        say(f"resuming {out} at draw {checkpoint['next_draw']} of {num_samples}")
    elif resume:
        say(f"{out} does not exist yet: starting a new run")

    if checkpoint is None:
        theta0 = _initial(model, compute, init, total_chains, key)[first:stop]
        model.preflight(np.asarray(theta0[0]), compute, gradient)
        start = time.perf_counter()
        say(f"warm-up: {num_chains} chains x {num_warmup} steps on {len(chosen)} device(s)")
        if kernel == "chees":
            warm = _across_chains(tuple(chosen))
            position, lp, grad, step_size, inverse_mass, extra = warm(sampler, warmup_root, theta0)
        else:
            warm = _over_chains("warmup", tuple(chosen), num_chains)
            position, lp, grad, step_size, inverse_mass = warm(sampler, warmup_keys, theta0)
            extra = {}
        checkpoint = {
            "position": np.asarray(position),
            "logdensity": np.asarray(lp),
            "grad": np.asarray(grad),
            "step_size": np.asarray(step_size),
            "inverse_mass": np.asarray(inverse_mass),
            "extra": {k: np.asarray(v) for k, v in extra.items()},
            "next_draw": 0,
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
        records = (
            fresh
            if records is None
            else {k: np.concatenate([records[k], fresh[k]], axis=1) for k in fresh}
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
        say(
            f"draws {done}/{num_samples} per chain: acceptance "
            f"{np.mean(fresh['acceptance_rate']):.2f}, divergences "
            f"{int(np.sum(fresh['diverging']))} (total {int(np.sum(records['diverging']))}), "
            f"mean steps {np.mean(fresh['n_steps']):.1f}, {elapsed:.1f} s"
        )
        if out is not None:
            _write(_datatree(model, settings, records, checkpoint, statistics, attrs), out)

    assert records is not None
    loglik = None
    if log_likelihood:
        loglik = _pointwise(model, statistics, records["theta"])
    tree = _datatree(model, settings, records, checkpoint, statistics, attrs, loglik)
    notes = diagnose(
        tree, max_tree_depth if kernel == "nuts" else None, np.asarray(model.boundary_mask(), bool)
    )
    tree.attrs["linest_warnings"] = json.dumps(notes)
    for note in notes:
        warnings.warn(note, SamplingWarning, stacklevel=2)
    if out is not None:
        _write(tree, out)
    return tree


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
BOUNDARY_DROP = math.log(1e4)


def diagnose(tree, max_tree_depth=None, boundary=None) -> list[str]:
    """Messages for r_hat > 1.01, ESS_bulk < 100 per chain, divergences, saturated trees,
    and chains stuck at the boundary: for the parameters ``boundary`` marks (log-rates
    that may be 0), a chain with most of its draws more than 10^4 below the largest
    rate's median."""
    import arviz as az

    notes = []
    theta = np.asarray(tree["posterior"]["theta"])  # (chain, draw, param)
    if boundary is not None and np.any(boundary):
        index = np.flatnonzero(boundary)
        medians = np.median(theta[:, :, index], axis=(0, 1))
        floor = float(np.max(medians)) - BOUNDARY_DROP
        stuck = np.mean(theta[:, :, index] < floor, axis=1) > 0.5  # (chain, boundary param)
        if stuck.any():
            names = tree["posterior"]["theta"].coords["param"].values
            parts = [
                f"{names[index[k]]} (chain {', '.join(str(c) for c in np.flatnonzero(stuck[:, k]))})"
                for k in np.flatnonzero(stuck.any(axis=0))
            ]
            notes.append(
                "chains stuck at the boundary: most draws put "
                + "; ".join(parts)
                + " more than 10^4 below the largest rate, i.e. at 0: the posterior piles up "
                "there (the likelihood's maximum is at 0). On the log scale the sampler drifts "
                "towards -inf and mixes slowly; a gamma prior on the rate with shape < 1 keeps "
                "mass near 0 but bounds the drift, shape >= 1 moves it away"
            )
    stats = tree["sample_stats"]
    num_chains = stats.sizes["chain"]
    summary = az.summary(tree, var_names=["theta"], kind="diagnostics")
    worst_rhat = summary["r_hat"].astype(float)
    if bool(np.any(np.asarray(worst_rhat) > 1.01)):
        names = ", ".join(f"{k} ({v:.3f})" for k, v in worst_rhat[worst_rhat > 1.01].items())
        notes.append(f"r_hat > 1.01 for {names}: the chains disagree; run longer")
    ess = summary["ess_bulk"].astype(float)
    low = ess < 100 * num_chains
    if bool(np.any(np.asarray(low))):
        names = ", ".join(f"{k} ({v:.0f})" for k, v in ess[low].items())
        notes.append(
            f"ESS_bulk below {100 * num_chains} (100 per chain) for {names}: estimates of "
            "posterior quantiles are unreliable; run longer"
        )
    divergent = int(np.asarray(stats["diverging"]).sum())
    if divergent:
        notes.append(
            f"{divergent} divergent transition(s): the sampler missed part of the posterior; "
            "raise target_acceptance or reparametrise"
        )
    if max_tree_depth is not None:
        saturated = int((np.asarray(stats["tree_depth"]) >= max_tree_depth).sum())
        if saturated:
            notes.append(
                f"{saturated} draw(s) hit the maximum tree depth {max_tree_depth}: "
                "trajectories were cut short (a poor surrogate gradient shows this way)"
            )
    return notes


def summarize(tree) -> str:
    """ArviZ summary (mean, sd, 95% HDI, r_hat, ESS bulk and tail) plus sampler statistics."""
    import arviz as az

    names = [v for v in tree["posterior"].data_vars if v != "theta"] + ["theta"]
    with warnings.catch_warnings():
        # A quantity fixed by construction (a gauge: V = 0 at a reference site) has no
        # chain variance; its r_hat is NaN, which is the right answer, not a warning.
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        table = az.summary(tree, var_names=names, ci_kind="hdi", ci_prob=0.95)
    stats = tree["sample_stats"]
    chains, draws = stats.sizes["chain"], stats.sizes["draw"]
    lines = [
        f"{tree.attrs.get('linest_kernel', 'nuts').upper()} with gradient "
        f"{tree.attrs.get('linest_gradient')}: {chains} chains x {draws} draws; "
        f"acceptance {float(stats['acceptance_rate'].mean()):.2f}, divergences "
        f"{int(stats['diverging'].sum())}, step size "
        f"{float(stats['step_size'].mean()):.3g}, mean leapfrog steps "
        f"{float(stats['n_steps'].mean()):.1f}, max tree depth "
        f"{int(stats['tree_depth'].max())}",
        f"prior: {_short_prior(tree.attrs.get('linest_prior', ''))}",
        "",
        table.to_string(),
    ]
    return "\n".join(lines)


def _short_prior(text: str) -> str:
    """'a ~ d; b ~ d; c ~ d; e ~ f' -> 'a ... c (3 parameters) ~ d; e ~ f' (groups of more
    than three parameters with the same prior)."""
    groups: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, distribution = item.partition(" ~ ")
        groups.setdefault(distribution, []).append(name)
    parts = []
    for distribution, names in groups.items():
        shown = (
            ", ".join(names)
            if len(names) <= 3
            else f"{names[0]} ... {names[-1]} ({len(names)} parameters)"
        )
        parts.append(f"{shown} ~ {distribution}")
    return "; ".join(parts)


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
