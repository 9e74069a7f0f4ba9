"""Where chains run: over a leading chain axis, vmapped within a device and sharded over
devices (per-chain kernels), or all at once (kernels that adapt across chains)."""

from __future__ import annotations

import functools

import equinox as eqx
import jax

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
    """A kernel's ``<method>`` (one chain) over a leading chain axis, sharded over ``devices``.

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
    """A kernel's ``warmup_all`` (all chains at once: ChEES adapts from the ensemble),
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
