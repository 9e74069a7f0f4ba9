"""The result of an advection-diffusion fit: diffusivity, velocity field, fitted snapshots."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from linest.models.result import Z95, FitResult, exp_interval


class AdvectionDiffusionFit(FitResult):
    """An advection-diffusion fit: diffusivity, velocity field with intervals, fitted snapshots."""

    def kappa(self) -> pd.DataFrame:
        """The diffusivity with its 95% interval (Wald on the log scale)."""
        table = exp_interval(self.theta[:1], self.se[:1])
        return pd.DataFrame(table | {"se_log": self.se[:1]}, index=pd.Index(["kappa"]))

    def velocity(self) -> pd.DataFrame:
        """The velocity at its coarse-grid nodes, with delta-method standard errors and 95%
        intervals: one row per node (one row in all for a constant velocity)."""
        m = self.model
        theta = jnp.asarray(self.theta)
        values = np.asarray(m.node_velocity(theta)).reshape(m.ndim, -1)
        J = np.asarray(jax.jacobian(lambda t: m.node_velocity(t).reshape(m.ndim, -1))(theta))
        se = np.sqrt(np.einsum("anp,pq,anq->an", J, self.covariance, J))
        coarse = m.coarse or (1,) * m.ndim
        positions = [
            (np.asarray(index) + 0.5) * np.asarray(m.length) / np.asarray(coarse)
            for index in np.ndindex(*coarse)
        ]
        frame = {}
        for a, name in enumerate(m.axis_names):
            frame[name] = [float(p[a]) for p in positions]
        for a, name in enumerate(m.axis_names):
            frame[f"u_{name}"] = values[a]
            frame[f"se_{name}"] = se[a]
            frame[f"lower_{name}"] = values[a] - Z95 * se[a]
            frame[f"upper_{name}"] = values[a] + Z95 * se[a]
        return pd.DataFrame(frame)

    def fitted(self, data=None) -> np.ndarray:
        """The fitted fields at the snapshot times, ``(K, *grid)``."""
        st = self.statistics if data is None else self.model.statistics(data)
        return np.asarray(self.model.snapshots(jnp.asarray(self.theta), st))

    def _body(self) -> list[str]:
        m = self.model
        k = self.kappa().iloc[0]
        lines = [
            f"Diffusivity with 95% interval ({self.information} information):",
            f"  kappa  {k.estimate:.6g}  ({k.lower:.6g}, {k.upper:.6g})",
        ]
        if m.sigma is None:
            s = exp_interval(self.theta[-1], self.se[-1])
            lines.append(
                f"  sigma  {float(s['estimate']):.6g}  ({float(s['lower']):.6g}, {float(s['upper']):.6g})"
            )
        table = self.velocity()
        lines += ["", f"Velocity at {len(table)} node(s) with 95% intervals:"]
        shown = table if len(table) <= 12 else table.iloc[:8]
        for _, row in shown.iterrows():
            where = ", ".join(f"{a}={row[a]:.3g}" for a in m.axis_names)
            parts = [
                f"u_{a} {row[f'u_{a}']:9.4f} ({row[f'lower_{a}']:.4f}, {row[f'upper_{a}']:.4f})"
                for a in m.axis_names
            ]
            lines.append(f"  ({where})  " + "  ".join(parts))
        if len(table) > len(shown):
            lines.append(f"  ... {len(table) - len(shown)} more rows: result.velocity()")
        if m.scheme != "spectral":  # the finite volumes' positivity condition
            lines.append(f"max cell Peclet number |u| h / kappa: {m.peclet(self.theta):.3g}")
        return lines

    def _tables(self) -> dict[str, pd.DataFrame]:
        return {"kappa": self.kappa(), "velocity": self.velocity()}

    def plot(self, data):
        """Observed vs fitted snapshots and residuals, and the estimated velocity field."""
        from linest.plots import plot_snapshots

        return plot_snapshots(self, data)
