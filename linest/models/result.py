"""The result of a maximum-likelihood fit, shared by every model.

:class:`FitResult` holds the estimates, the covariance (inverse information) and the
diagnostics, and gives the views every model has: the parameters on their fitting
scale, positive parameters on their natural scale, a printed summary and JSON. A model
with views of its own (a CTMC's intensities, a grid model's velocity field) subclasses
it and names the subclass as its ``result_class``.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd

__all__ = ["MODEL_ERROR_SHARE", "Z95", "FitResult", "ModelError", "exp_interval"]

Z95 = 1.959963984540054  # standard normal 97.5% quantile


def exp_interval(estimate, se) -> dict[str, np.ndarray]:
    """exp(estimate) with the 95% interval exp(estimate -/+ 1.96 se) (Wald on the log scale).

    An unbounded parameter's upper end is reported as inf, without a numpy warning.
    """
    with np.errstate(over="ignore"):
        return {
            "estimate": np.exp(estimate),
            "lower": np.exp(estimate - Z95 * se),
            "upper": np.exp(estimate + Z95 * se),
        }


def format_estimate(name, row) -> str:
    """One summary line: a rate at 0 says so, with its one-sided interval."""
    if row.get("at_boundary", False):
        return f"  {name:>24}  {'0 (at the boundary)':>12}  (0, {row.upper:.6g}] one-sided"
    return f"  {name:>24}  {row.estimate:12.6g}  ({row.lower:.6g}, {row.upper:.6g})"


def records(frame: pd.DataFrame) -> list[dict]:
    """A table as JSON-ready records (tuple labels as strings)."""
    out = frame.reset_index()
    for column in out.columns:
        if isinstance(out[column].iloc[0] if len(out) else None, tuple):
            out[column] = out[column].map(str)
    return json.loads(out.to_json(orient="records") or "[]")


#: A model error (discretisation, truncation) larger than this share of a standard error
#: is reported as a warning: the interval is then visibly shifted (at a third of a
#: standard error, the 95% interval's coverage falls from 0.95 to 0.94; at one, to 0.83).
MODEL_ERROR_SHARE = 1 / 3


@dataclasses.dataclass(eq=False)
class ModelError:
    """What the model's own approximation (a grid, a truncation) does to each estimate.

    Attributes
    ----------
    kind : what is approximated ("discretisation")
    description : how the error was estimated (e.g. against a grid twice as fine)
    error : (p,) estimated ``theta_hat - theta_hat(exact model)`` on the fitting scale
    advice : what to do when it matters
    """

    kind: str
    description: str
    error: np.ndarray
    advice: str

    def table(self, names, se) -> pd.DataFrame:
        """Per parameter: the estimated error, the standard error and their ratio."""
        error = np.asarray(self.error, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(error) / np.asarray(se, float)
        return pd.DataFrame(
            {"model_error": error, "se": se, "ratio": ratio},
            index=pd.Index(list(names), name="parameter"),
        )

    def concerns(self, names, se, share: float = MODEL_ERROR_SHARE) -> list[str]:
        """The parameters whose model error exceeds ``share`` of their standard error."""
        ratio = self.table(names, se)["ratio"].to_numpy()
        return [str(name) for name, r in zip(names, ratio) if r > share]

    def warning(self, names, se, share: float = MODEL_ERROR_SHARE) -> str | None:
        """One warning naming the parameters whose error matters, or None."""
        bad = self.concerns(names, se, share)
        if not bad:
            return None
        table = self.table(names, se).loc[bad].sort_values("ratio", ascending=False)
        shown = ", ".join(f"{n} ({r:.2g} se)" for n, r in table["ratio"].iloc[:6].items())
        more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
        return (
            f"the {self.kind} moves {len(bad)} estimate(s) by more than "
            f"{share:.2g} of a standard error: {shown}{more} ({self.description}); the "
            f"intervals are shifted by that much; {self.advice}"
        )

    def to_dict(self, names, se) -> dict:
        return {
            "kind": self.kind,
            "description": self.description,
            "advice": self.advice,
            "parameters": records(self.table(names, se)),
        }


@dataclasses.dataclass(eq=False)
class FitResult:
    """The maximum-likelihood fit of a model: estimates, uncertainty and diagnostics.

    Attributes
    ----------
    theta : (p,) estimates on the unconstrained scale (log-rates, effects, log kappa...)
    covariance : (p, p) inverse information (NaN if it is not positive definite)
    loglik : maximised log-likelihood; ``minus2loglik`` is -2 times it
    converged : an optimality check passed (see :func:`linest.fit`)
    iterations, evaluations : optimiser counts
    gradient_norm : max |d loglik / d theta| at the estimate, by an exact method
    information_condition : condition number of the information matrix
    information : ``"observed"`` (-Hessian), ``"observed (differences of the gradient)"``
        (``fit(hessian=...)``) or ``"expected"`` (Fisher), as the model gives it
    model_error : what the model's approximation (a grid) does to each estimate, where
        the model estimates it (:class:`ModelError`), else None
    """

    model: object
    statistics: object
    theta: np.ndarray
    covariance: np.ndarray
    loglik: float
    converged: bool
    iterations: int
    evaluations: int
    gradient_norm: float
    information_condition: float
    message: str
    gradient: str
    optimizer: str
    seconds: float
    warnings: list[str] = dataclasses.field(default_factory=list)
    information: str = "observed"
    at_boundary: np.ndarray | None = None  # bool per parameter: a rate estimated at 0
    profile: pd.DataFrame | None = None  # profile-likelihood intervals (theta scale)
    level: float = 0.95
    model_error: ModelError | None = None

    def theta_intervals(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(lower, upper, method) per parameter on the fitting scale: the profile
        interval where one was computed, else Wald (estimate -/+ z se). A rate at 0 has
        lower = -inf (its natural value 0)."""
        # scipy.special, not scipy.stats: the latter's import costs 0.4 s of start-up.
        from scipy.special import ndtri

        z = float(ndtri(0.5 + self.level / 2))
        se = self.se
        with np.errstate(invalid="ignore"):
            lower, upper = self.theta - z * se, self.theta + z * se
        method = ["wald"] * len(self.theta)
        if self.profile is not None:
            for i, name in enumerate(self.param_names):
                if name in self.profile.index:
                    row = self.profile.loc[name]
                    lower[i], upper[i], method[i] = row.lower, row.upper, row.method
        return lower, upper, method

    @property
    def boundary(self) -> np.ndarray:
        """bool per parameter: estimated at the boundary (a rate at 0)."""
        if self.at_boundary is None:
            return np.zeros(len(self.theta), bool)
        return np.asarray(self.at_boundary, bool)

    @property
    def minus2loglik(self) -> float:
        return -2.0 * self.loglik

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.model.param_names

    # ------------------------------------------------------------------ tables

    def parameters(self) -> pd.DataFrame:
        """theta with standard errors and intervals (Wald, or profile where computed) on
        the fitting scale; a rate at 0 has estimate -inf and ``at_boundary`` True."""
        lower, upper, method = self.theta_intervals()
        return pd.DataFrame(
            {
                "estimate": self.theta,
                "se": self.se,
                "lower": lower,
                "upper": upper,
                "interval": method,
                "at_boundary": self.boundary,
            },
            index=pd.Index(self.param_names, name="parameter"),
        )

    def natural(self) -> pd.DataFrame:
        """Every parameter on its natural scale: ``exp`` of log-parameters (interval
        ``exp`` of the fitting-scale one), the others as they are."""
        rows = {}
        se = self.se
        lower, upper, method = self.theta_intervals()
        for i, (name, positive) in enumerate(zip(self.param_names, self.model.param_positive)):
            if positive:
                label = name[4:] if name.startswith("log ") else f"exp({name})"
                with np.errstate(over="ignore"):
                    row = {
                        "estimate": float(np.exp(self.theta[i])),
                        "lower": float(np.exp(lower[i])),
                        "upper": float(np.exp(upper[i])),
                    }
            else:
                label = name
                row = {"estimate": self.theta[i], "lower": lower[i], "upper": upper[i]}
            rows[label] = row | {
                "se_theta": se[i],
                "interval": method[i],
                "at_boundary": bool(self.boundary[i]),
            }
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.name = "parameter"
        return frame

    # ------------------------------------------------------------------ report

    def _status(self) -> str:
        return (
            f"gradient {self.gradient}, optimiser {self.optimizer}: "
            f"{'converged' if self.converged else 'NOT CONVERGED'} in {self.iterations} "
            f"iterations ({self.evaluations} evaluations, {self.seconds:.3f} s), "
            f"max |gradient| {self.gradient_norm:.2e}"
        )

    def _body(self) -> list[str]:
        """The model's tables in the summary (natural-scale parameters by default)."""
        kind = (
            "profile likelihood"
            if self.profile is not None and len(self.profile) == len(self.theta)
            else f"{self.information} information"
        )
        lines = [f"Parameters with {100 * self.level:g}% intervals ({kind}):"]
        for name, row in self.natural().iterrows():
            lines.append(format_estimate(name, row))
        return lines

    def summary(self) -> str:
        """A report: the data, the optimiser's verdict, the estimates, -2LL, warnings."""
        describe = getattr(self.model, "describe_fit", None)
        head = describe(self.statistics) if describe else type(self.model).__name__
        lines = [head, self._status(), "", *self._body()]
        lines += self._model_error_lines()
        lines += ["", f"-2 log-likelihood: {self.minus2loglik:.6f}"]
        for text in self.warnings:
            lines.append(f"WARNING: {text}")
        return "\n".join(lines)

    def model_error_table(self) -> pd.DataFrame | None:
        """Per parameter: the model error (e.g. of the grid), the standard error, their ratio."""
        if self.model_error is None:
            return None
        return self.model_error.table(self.param_names, self.se)

    def _model_error_lines(self, rows: int = 8) -> list[str]:
        table = self.model_error_table()
        if table is None or self.model_error is None:
            return []
        worst = table.sort_values("ratio", ascending=False, na_position="last")
        lines = [
            "",
            f"{self.model_error.kind.capitalize()} error of the estimates "
            f"({self.model_error.description}); largest against the standard error:",
        ]
        for name, row in worst.iloc[:rows].iterrows():
            lines.append(
                f"  {name:>24}  error {row.model_error:+.3g}  se {row.se:.3g}  ({row.ratio:.2g} se)"
            )
        if len(worst) > rows:
            lines.append(f"  ... {len(worst) - rows} more: result.model_error_table()")
        return lines

    def __str__(self) -> str:
        return self.summary()

    def _tables(self) -> dict[str, pd.DataFrame]:
        """Extra named tables for :meth:`to_dict` (a model's own views)."""
        return {"natural": self.natural()}

    def to_dict(self) -> dict:
        """Plain-Python view for JSON output."""
        result = {
            "minus2loglik": self.minus2loglik,
            "loglik": self.loglik,
            "converged": self.converged,
            "iterations": self.iterations,
            "evaluations": self.evaluations,
            "gradient_norm": self.gradient_norm,
            "information_condition": self.information_condition,
            "information": self.information,
            "message": self.message,
            "gradient": self.gradient,
            "optimizer": self.optimizer,
            "seconds": self.seconds,
            "warnings": list(self.warnings),
            "parameters": records(self.parameters()),
            "level": self.level,
        }
        for name, frame in self._tables().items():
            result[name] = records(frame)
        if self.model_error is not None:
            result["model_error"] = self.model_error.to_dict(self.param_names, self.se)
        return result

    def plot(self, data):
        """A figure of the fit against ``data`` (each model draws its own)."""
        raise NotImplementedError(f"{type(self.model).__name__} fits have no plot")
