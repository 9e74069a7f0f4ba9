"""Runs on disk: the settings fingerprint, the ArviZ DataTree with the checkpoint group,
atomic writes and reading a run back to resume it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from linest._io import atomic_write
from linest.sampling.base import SamplingError

CHECKPOINT = "linest_checkpoint"


@dataclasses.dataclass(frozen=True)
class _Settings:
    kernel: str
    num_chains: int
    num_warmup: int
    num_samples: int
    seed: int
    gradient: str
    target_acceptance: float | None  # None: the kernel has no target (MEADS)
    max_tree_depth: int
    num_integration_steps: int
    params: tuple[str, ...]
    prior: tuple[str, ...]
    data: str
    chains: str = ""  # "start:stop" when this run holds part of num_chains (processes)
    init: str = ""  # "mle": sampled in the fit's whitened coordinates
    surrogate: str = ""  # delayed acceptance on this surrogate (its name)
    dense_mass: bool = False
    exact_every: int = 0  # HMC trajectories on a surrogate: an exact NUTS draw every k

    def fingerprint(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


#: The per-draw statistics every kernel records; a kernel may add its own (``record_stats``).
STANDARD_STATS = ("lp", "acceptance_rate", "diverging", "energy", "n_steps", "tree_depth")


def _data_fingerprint(statistics) -> str:
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(statistics):
        if hasattr(leaf, "shape"):
            array = np.ascontiguousarray(np.asarray(leaf))
            digest.update(str(array.shape).encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- output


def _datatree(model, settings, records, checkpoint, statistics, extra_attrs, loglik=None):
    import xarray as xr

    attrs = {
        "linest_kernel": settings.kernel,
        "linest_gradient": settings.gradient,
        "linest_seed": settings.seed,
        "linest_prior": "; ".join(settings.prior),
        "linest_init": settings.init,
        "linest_surrogate": settings.surrogate,
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
                    name: (("param", *[f"{name}_{i}" for i in range(np.ndim(value) - 1)]), value)
                    for name, value in checkpoint.get("whitening", {}).items()
                },
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
    for name, values in records.items():  # a kernel's own per-draw statistics
        if name != "theta" and name not in sample_stats:
            sample_stats[name] = values
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
    if "whitening_shift" in group:
        checkpoint["whitening"] = {
            name: group[name].values for name in ("whitening_shift", "whitening_matrix")
        }
    records = None
    if checkpoint["next_draw"] > 0:
        post, stats = tree["posterior"], tree["sample_stats"]
        records = {"theta": post["theta"].values}
        for k in STANDARD_STATS:
            records[k] = stats[k].values
        for k in map(str, stats.data_vars):  # a kernel's own statistics
            if k not in records and k != "step_size":
                records[k] = stats[k].values
    return records, checkpoint, dict(tree.attrs)
