"""Snapshot data of a grid model: reading and writing NetCDF, and the statistics the
likelihood reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from linest._io import atomic_write
from linest.data import LARGEST, DataError
from linest.models.advection_diffusion.operator import _AXIS_NAMES


@dataclasses.dataclass(frozen=True, eq=False)
class Snapshots:
    """Checked snapshot data: ``values[k]`` observed at ``times[k]``.

    ``values`` is ``(K, *grid)`` for whole-grid snapshots or ``(K, S)`` at ``S`` sensors
    whose coordinates are ``sensors`` (``(S, d)``, ordered as the grid axes, e.g. ``(y,
    x)``). ``initial`` is the field at time 0 on the grid; ``length`` the domain's
    extent per axis (from the coordinates: cell centres at ``(i + 1/2) h``).
    """

    times: np.ndarray
    values: np.ndarray
    initial: np.ndarray
    length: tuple[float, ...]
    sensors: np.ndarray | None
    source: str
    variable: str


def read_snapshots(
    source,
    variable: str = "concentration",
    initial: str = "initial",
    *,
    time: str = "time",
    sensor: str = "sensor",
) -> Snapshots:
    """Read snapshots from a NetCDF file (or an ``xarray.Dataset``) and check them.

    Layout, as simulation output comes:

    * whole grid: ``variable`` with dims ``(time, y, x)`` (2D) or ``(time, x)`` (1D),
      coordinates ``x`` (and ``y``) at the cell centres, uniformly spaced from ``h/2``;
    * sensors: ``variable`` with dims ``(time, sensor)`` and coordinate variables
      ``sensor_x`` (and ``sensor_y``) along ``sensor``, plus the grid coordinates of the
      initial field;
    * ``initial``: the field at time 0, dims ``(y, x)`` or ``(x,)``.

    Every problem raises :class:`linest.DataError` naming the file and the variable
    (and the first bad index): missing variables or coordinates, NaN or inf values,
    times not > 0 or not increasing, non-uniform or non-centred grid coordinates.
    """
    import xarray as xr

    name = str(source) if not isinstance(source, xr.Dataset) else "<xarray.Dataset>"
    if isinstance(source, xr.Dataset):
        dataset = source
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"{path}: no such file")
        try:
            dataset = xr.open_dataset(path, engine="h5netcdf").load()
        except Exception as error:
            raise DataError(f"{path}: not a readable NetCDF file ({error})") from None

    def fail(text):
        raise DataError(f"{name}: {text}")

    for var in (variable, initial):
        if var not in dataset.variables:
            fail(
                f"no variable {var!r}; the file has {sorted(map(str, dataset.data_vars))} "
                "(name them with variable= / initial=, or data.variable / data.initial in a spec)"
            )
    field = dataset[initial]
    grid_dims = tuple(str(d) for d in field.dims)
    if len(grid_dims) not in (1, 2):
        fail(f"{initial} has dims {grid_dims}; expected (y, x) or (x,)")
    lengths = []
    for dim in grid_dims:
        if dim not in dataset.coords:
            fail(f"{initial}: no coordinate variable for dim {dim!r} (cell centres)")
        centres = np.asarray(dataset[dim].values, float)
        h = (centres[-1] - centres[0]) / max(len(centres) - 1, 1)
        expected = (np.arange(len(centres)) + 0.5) * h
        if len(centres) < 4 or not np.allclose(centres, expected, rtol=1e-6, atol=1e-9 * h):
            fail(
                f"coordinate {dim!r} must hold >= 4 uniformly spaced cell centres "
                f"(i + 1/2) h from h/2; got {centres[:4]}..."
            )
        lengths.append(float(h * len(centres)))
    values = dataset[variable]
    dims = tuple(str(d) for d in values.dims)
    if not dims or dims[0] != time:
        fail(f"{variable} has dims {dims}; its first dim must be {time!r}")
    sensors = None
    if dims[1:] == grid_dims:
        data = np.asarray(values.values, float)
    elif dims[1:] == (sensor,):
        data = np.asarray(values.values, float)
        coordinates = []
        for dim, length in zip(grid_dims, lengths):
            label = f"{sensor}_{dim}"
            if label not in dataset.variables or dataset[label].dims != (sensor,):
                fail(f"{variable}: sensor data needs a coordinate {label!r} along {sensor!r}")
            c = np.asarray(dataset[label].values, float)
            bad = np.flatnonzero(~np.isfinite(c) | (c < 0) | (c > length))
            if bad.size:
                fail(f"{label}[{bad[0]}] = {c[bad[0]]} is outside the domain [0, {length}]")
            coordinates.append(c)
        sensors = np.stack(coordinates, axis=1)
    else:
        fail(
            f"{variable} has dims {dims}; expected ({time}, {', '.join(grid_dims)}) or ({time}, {sensor})"
        )
    times = np.asarray(dataset[time].values, float)
    if times.ndim != 1 or times.size == 0:
        fail(f"{time} must be a non-empty 1-D coordinate")
    bad = np.flatnonzero(~np.isfinite(times) | (times <= 0) | (times > LARGEST))
    if bad.size:
        fail(
            f"{time}[{bad[0]}] = {times[bad[0]]}: snapshot times must be > 0 (the initial "
            f"field {initial!r} is time 0)"
        )
    steps = np.flatnonzero(np.diff(times) <= 0)
    if steps.size:
        i = int(steps[0])
        fail(f"{time} must increase: {time}[{i}] = {times[i]}, {time}[{i + 1}] = {times[i + 1]}")
    for label, array, dim_names in (
        (variable, data, dims),
        (initial, np.asarray(field.values, float), grid_dims),
    ):
        bad = np.argwhere(~np.isfinite(array))
        if bad.size:
            where = ", ".join(f"{d}={i}" for d, i in zip(dim_names, bad[0]))
            fail(f"{label} has a non-finite value ({array[tuple(bad[0])]}) at {where}")
        huge = np.argwhere(np.abs(array) > LARGEST)
        if huge.size:
            where = ", ".join(f"{d}={i}" for d, i in zip(dim_names, huge[0]))
            fail(
                f"{label} = {array[tuple(huge[0])]:g} at {where} is too large to compute with "
                f"(|value| > {LARGEST:g}); rescale the field"
            )
    if np.ptp(data) == 0 and np.ptp(np.asarray(field.values, float)) == 0:
        fail(
            f"{initial} and {variable} are one constant value everywhere: a uniform field "
            "neither moves nor spreads, so it cannot identify a velocity or a diffusivity"
        )
    return Snapshots(
        times=times,
        values=data,
        initial=np.asarray(field.values, float),
        length=tuple(lengths),
        sensors=sensors,
        source=name,
        variable=variable,
    )


class AdvectionDiffusionStatistics(eqx.Module):
    """The data as the likelihood reads them (a pytree of arrays)."""

    times: jax.Array
    values: jax.Array
    initial: jax.Array
    sensors: jax.Array | None
    source: str = eqx.field(static=True, default="")

    def for_compute(self) -> AdvectionDiffusionStatistics:
        return dataclasses.replace(self, source="")


def write_snapshots(path, snapshots: Snapshots, attrs: dict | None = None) -> None:
    """Write snapshots as NetCDF in the layout :func:`read_snapshots` reads (atomically)."""
    import xarray as xr

    names = _AXIS_NAMES[snapshots.initial.ndim]
    coords = {}
    for a, name in enumerate(names):
        n = snapshots.initial.shape[a]
        coords[name] = (np.arange(n) + 0.5) * snapshots.length[a] / n
    data_vars = {"initial": (names, snapshots.initial)}
    if snapshots.sensors is None:
        data_vars[snapshots.variable] = (("time", *names), snapshots.values)
    else:
        data_vars[snapshots.variable] = (("time", "sensor"), snapshots.values)
    dataset = xr.Dataset(data_vars, coords=coords | {"time": snapshots.times}, attrs=attrs or {})
    if snapshots.sensors is not None:
        for a, name in enumerate(names):
            dataset = dataset.assign_coords({f"sensor_{name}": ("sensor", snapshots.sensors[:, a])})
    atomic_write(path, lambda tmp: dataset.to_netcdf(tmp, engine="h5netcdf"))
