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
import warnings
from typing import ClassVar

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


def _over_draws(fn, thetas, estimate=None) -> np.ndarray:
    """``fn`` at each row of ``thetas``, compiled once (under ``jit`` a draw that overflows
    gives NaN instead of stopping at the eager input checks). Draws that give NaN where
    the estimate does not are left out of the quantiles (``nanquantile``), with a warning
    saying how many."""
    import jax
    import jax.numpy as jnp

    samples = np.asarray(jax.jit(jax.vmap(fn))(jnp.asarray(thetas)), float)
    defined = ~np.isnan(np.asarray(estimate, float)) if estimate is not None else True
    bad = (np.isnan(samples) & defined).reshape(len(samples), -1).any(axis=1)
    if bad.any():
        warnings.warn(
            f"intervals: {int(bad.sum())} of {len(samples)} draws gave NaN (an overflow far "
            "out along a weakly identified parameter, which the fit's warnings name); the "
            "intervals use the others, so they are unreliable",
            stacklevel=4,
        )
    return samples


def _nan_quantiles(samples, levels) -> list[np.ndarray]:
    """The quantiles of ``samples`` over draws (axis 0) at ``levels``, NaN draws left out;
    an output NaN in every draw (undefined at the estimate too) stays NaN, quietly."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        return [np.nanquantile(samples, q, axis=0) for q in levels]


def _posterior_theta(posterior) -> np.ndarray:
    """theta draws (..., p) from a posterior tree (``linest.sample``) or an array."""
    if isinstance(posterior, np.ndarray):
        return np.asarray(posterior, float)
    try:
        return np.asarray(posterior["posterior"]["theta"].values, float)
    except (KeyError, TypeError, IndexError):
        raise ValueError(
            "ci: expected 'normal', 'delta', 'none', a posterior (the tree linest.sample "
            f"returns) or an array of theta draws; got {type(posterior).__name__}"
        ) from None


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
    posterior: object = None  # the draws behind a result from_posterior, else None

    #: Named after-fit tables (``linest fit --report NAME,...``) and their titles; each is
    #: the method of the same name with its defaults. A model's result class adds its own.
    REPORTS: ClassVar[dict[str, str]] = {}

    @classmethod
    def check_reports(cls, names) -> list[str]:
        """The report names, checked: a ValueError names the unknown ones and the choices."""
        names = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
        unknown = [n for n in names if n not in cls.REPORTS]
        if unknown:
            offered = ", ".join(cls.REPORTS) or "none"
            raise ValueError(f"--report: unknown report(s) {unknown}; this model offers: {offered}")
        return names

    @classmethod
    def from_posterior(cls, model, statistics, posterior, level: float = 0.95):
        """A result that holds a posterior (the tree :func:`linest.sample` returns, or theta
        draws (..., p)) instead of a fit, for the after-fit tables: ``theta`` is the
        posterior median, ``covariance`` the draws' covariance, and every table's
        interval is the equal-tailed credible interval of the output over the draws (its
        estimate the posterior median). There is no optimum: ``loglik`` is NaN and
        ``converged`` False."""
        draws = _posterior_theta(posterior)
        draws = draws.reshape(-1, draws.shape[-1])
        nan = float("nan")
        return cls(
            model=model, statistics=statistics, theta=np.median(draws, axis=0),
            covariance=np.atleast_2d(np.cov(draws.T)) if len(draws) > 1
            else np.zeros((draws.shape[1],) * 2),
            loglik=nan, converged=False,
            iterations=0, evaluations=0, gradient_norm=nan, information_condition=nan,
            message=f"{len(draws)} posterior draws, not a fit", gradient="", optimizer="",
            seconds=0.0, level=level, posterior=posterior,
        )  # fmt: skip

    def report(self, names, data=None) -> str:
        """The named tables (:attr:`REPORTS`) as text, with their titles; for a result
        :meth:`from_posterior`, posterior medians and credible intervals. ``data`` goes to
        the tables that need the observations (a CTMC's ``pearson``)."""
        import inspect

        blocks = []
        kind = (
            "credible intervals, posterior medians" if self.posterior is not None else "intervals"
        )
        for name in self.check_reports(names):
            method = getattr(self, name)
            parameters = inspect.signature(method).parameters
            kwargs = {"ci": self.posterior} if self.posterior is not None else {}
            if self.posterior is not None and not any(
                p.kind is p.VAR_KEYWORD or p.name == "ci" for p in parameters.values()
            ):
                raise ValueError(
                    f"{name} is a fit's table (no interval over a posterior); over a "
                    "posterior ask for the outputs with intervals (totlos, efpt, ...)"
                )
            if "data" in parameters:
                if data is None:
                    raise ValueError(f"{name} needs the data the model was fitted to")
                kwargs = {"data": data}
                blocks.append(f"{name}: {self.REPORTS[name]}:")
            else:
                blocks.append(f"{name}: {self.REPORTS[name]} ({100 * self.level:g}% {kind}):")
            tables = method(**kwargs)
            if isinstance(tables, pd.DataFrame):
                tables = {"": tables}
            with pd.option_context("display.width", 120, "display.max_rows", 200):
                for title, table in tables.items():
                    text = table.to_string(float_format=lambda v: f"{v:.6g}")
                    blocks.append((f"{title}:\n" if title else "") + text + "\n")
        return "\n".join(blocks)

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
    def num_free(self) -> int:
        """Parameters the fit estimated: the rank of the covariance (a parameter held by
        :class:`linest.Constrained` has none, a group held equal counts once: the
        covariance J C J^T of the free parameters' C has exactly their number as rank;
        eigenvalues below 1e-12 of the largest count as 0)."""
        values = np.linalg.eigvalsh((self.covariance + self.covariance.T) / 2)
        if not np.all(np.isfinite(values)):
            return len(self.theta)
        return int(np.sum(values > 1e-12 * max(values.max(), 0.0)))

    @property
    def aic(self) -> float:
        """Akaike's criterion -2 log L + 2 k, k the estimated parameters (R's AIC(msm fit))."""
        return self.minus2loglik + 2 * self.num_free

    def function_interval(self, fn, ci: object = "normal", draws: int = 1000, seed: int = 0):
        """``fn(theta)`` (a JAX function to an array) at the estimate, with intervals.

        ``ci``: ``"normal"`` simulates ``draws`` values of theta from the estimate's normal
        approximation N(theta, covariance) and takes the quantiles of ``fn`` (msm's
        ``ci = "normal"``); ``"delta"`` is the delta method on the log scale of ``|fn|``
        (entries that are 0 or infinite get no interval); ``"none"`` gives NaN bounds; a
        posterior (the ArviZ tree ``linest.sample`` returns, or an array of theta draws
        (..., p)) gives the posterior median of ``fn`` and its equal-tailed credible
        interval. The level is the fit's (``level``, default 0.95). Returns (estimate,
        lower, upper).
        """
        import jax
        import jax.numpy as jnp

        theta = np.asarray(self.theta, float)
        tail = (1 - self.level) / 2
        if not isinstance(ci, str):
            thetas = _posterior_theta(ci)
            if thetas.shape[-1] != len(theta):
                raise ValueError(
                    f"ci: the posterior has {thetas.shape[-1]} parameters, this fit {len(theta)}"
                )
            samples = _over_draws(fn, thetas.reshape(-1, len(theta)))
            return tuple(_nan_quantiles(samples, (0.5, tail, 1 - tail)))
        estimate = np.asarray(fn(jnp.asarray(theta)), float)
        nan = np.full(estimate.shape, np.nan)
        if ci == "none":
            return estimate, nan, nan.copy()
        # A rate at the boundary (estimated at 0) is held there: it has no normal
        # approximation, only its one-sided profile interval.
        held = self.boundary[:, None] | self.boundary[None, :]
        covariance = np.where(held, 0.0, self.covariance)
        if not np.all(np.isfinite(covariance)):
            raise ValueError(
                f"intervals (ci={ci!r}) need the covariance, which this fit does not have "
                "(the information matrix is not positive definite); use ci='none'"
            )
        if ci == "normal":
            values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
            root = vectors * np.sqrt(np.clip(values, 0, None))
            noise = np.random.default_rng(seed).standard_normal((draws, len(theta)))
            finite = np.where(np.isfinite(theta), theta, -745.0)  # a rate at 0: exp -> 0
            samples = _over_draws(fn, finite + noise @ root.T, estimate)
            lower, upper = _nan_quantiles(samples, (tail, 1 - tail))
            return estimate, lower, upper
        if ci == "delta":
            from scipy.special import ndtri

            z = float(ndtri(1 - tail))
            J = np.asarray(
                jax.jacobian(lambda t: jnp.log(jnp.abs(fn(t))))(jnp.asarray(theta)), float
            )
            J = np.where(self.boundary[None, :], 0.0, J.reshape(estimate.size, len(theta)))
            with np.errstate(invalid="ignore"):
                se = np.sqrt(np.einsum("ip,pq,iq->i", J, covariance, J)).reshape(estimate.shape)
                ok = np.isfinite(estimate) & (estimate != 0) & np.isfinite(se)
                lower = np.where(ok, estimate * np.exp(-np.sign(estimate) * z * se), np.nan)
                upper = np.where(ok, estimate * np.exp(np.sign(estimate) * z * se), np.nan)
            return estimate, np.minimum(lower, upper), np.maximum(lower, upper)
        raise ValueError(f"ci={ci!r}: expected 'normal', 'delta' or 'none'")

    def lrtest(self, smaller: FitResult) -> dict:
        """Likelihood-ratio test of ``smaller`` (a fit nested in this one) against this fit.

        Returns ``{"statistic": 2 (log L - log L_smaller), "df", "p_value"}`` (chi-square
        with df the difference in estimated parameters; msm's ``lrtest.msm``). Raises if
        the smaller fit has as many parameters, or a larger likelihood by more than 1e-6
        (then it is not nested, or one fit did not converge).
        """
        from scipy.stats import chi2

        df = self.num_free - smaller.num_free
        if df <= 0:
            raise ValueError(
                f"lrtest: the smaller fit has {smaller.num_free} parameters, this one "
                f"{self.num_free}: call it on the larger fit with the nested one as argument"
            )
        statistic = 2 * (self.loglik - smaller.loglik)
        if statistic < -1e-6:
            raise ValueError(
                f"lrtest: the smaller fit's log-likelihood is larger by {-statistic / 2:.6g}: "
                "the fits are not nested, or one did not converge"
            )
        statistic = max(statistic, 0.0)
        return {"statistic": statistic, "df": df, "p_value": float(chi2.sf(statistic, df))}

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
