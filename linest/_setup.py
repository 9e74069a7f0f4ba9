"""Configure JAX when linest is imported, before JAX starts its backend."""

import os as _os

import jax as _jax

if _os.environ.get("LINEST_X64", "1") != "0":
    _jax.config.update("jax_enable_x64", True)


def _use_cpu_devices() -> None:
    """Split the CPU into several JAX devices so MCMC chains run in parallel (linest.sample).

    One chain per device beat vmapping 4 chains on the same 2 cores by 4.5x (a vmapped
    NUTS step waits for the slowest chain). Only possible before JAX starts its backend;
    skipped when XLA_FLAGS already sets a device count. LINEST_CPU_DEVICES=N chooses N
    (default max(4, cores)); 0 or 1 leaves JAX's default of one CPU device.
    """
    wanted = _os.environ.get("LINEST_CPU_DEVICES")
    if "xla_force_host_platform_device_count" in _os.environ.get("XLA_FLAGS", ""):
        return
    count = int(wanted) if wanted else max(4, _os.cpu_count() or 1)
    if count <= 1:
        return
    try:
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            return
        _jax.config.update("jax_num_cpu_devices", count)
    except Exception:
        return


_use_cpu_devices()


def _mapped_regions() -> tuple[int, int]:
    """This process's memory mappings and the kernel's limit on them ((0, 0) off Linux)."""
    try:
        with open("/proc/self/maps") as maps, open("/proc/sys/vm/max_map_count") as limit:
            return sum(1 for _ in maps), int(limit.read())
    except (OSError, ValueError):
        return 0, 0


def release_compiled_programs() -> bool:
    """Drop JAX's compiled programs when this process holds more than half the memory
    mappings the kernel allows; True when it did.

    Every program XLA's CPU backend compiles keeps about 20 mappings while JAX caches
    it. A process that compiles thousands (a test suite, a notebook fitting model after
    model) reached Linux's vm.max_map_count (65530): LLVM then failed with "Cannot
    allocate memory" and aborted the process, results unwritten. ``fit``, ``sample`` and
    ``compare`` call this before they start; the price is recompiling what is still
    needed."""
    import gc

    count, limit = _mapped_regions()
    if limit and count > limit // 2:
        _jax.clear_caches()
        gc.collect()
        return True
    return False
