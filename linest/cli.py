"""The ``linest`` command.

    linest fit SPEC.toml [--covariates sex] [--gradient NAME] [--json out.json]
                         [--plot fit.png]
    linest compare SPEC.toml [--methods exact,eigen,...] [--out DIR]
    linest sample SPEC.toml [--chains 4] [--warmup 1000] [--draws 1000]
                               [--gradient NAME] [--out post.nc [--resume]] [--plots PREFIX]

``--gradient`` takes the engine's method names: ``default`` (one eigendecomposition
shared by all time steps, exact), ``exact``, ``exact-pade``, ``eigen``, ``eigen-fallback``,
``autodiff``, ``surrogate-left``, ``surrogate-right``, ``surrogate-midpoint``,
``surrogate-gauss-K`` (K Gauss-Legendre nodes), ``series``, ``asymptotic``; for grid
models also ``fourier``, ``adjoint``, ``adjoint-backsolve`` and ``coarse-K`` (the
gradient from a grid K times coarser).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from pathlib import Path

from linest._io import OutputError, atomic_write, check_output

#: Exit codes (docs/reference/cli.md's table): 0 done; 1 bad input (spec, data, prior or option: the
#: message names the file and field); 2 a fit ran but did not converge (its optimality
#: check failed); 3 an output cannot be written (or would replace something it must
#: not); 70 an internal error (a traceback, to report); 130 and 143 stopped by SIGINT
#: (Ctrl-C) and SIGTERM, with what was kept said.
EXIT_OK, EXIT_INPUT, EXIT_NOT_CONVERGED, EXIT_OUTPUT = 0, 1, 2, 3
EXIT_INTERNAL, EXIT_SIGINT, EXIT_SIGTERM = 70, 130, 143


class UsageError(ValueError):
    """A command-line option with a value linest cannot use; the message names it."""


def _gradient_option(name: str):
    """``--gradient NAME`` as an engine method (None: the model's default)."""
    import linest

    if name == "default":
        return None
    try:
        return linest.gradient_from_string(name)
    except ValueError as error:
        raise UsageError(f"--gradient {name}: {error}") from None


def _enable_compilation_cache() -> None:
    """Reuse work across processes (most of a run's start-up): XLA's compiled programs
    (JAX's persistent cache, in ``jax/``) and linest's traced ones (``exported/``, see
    ``linest._export``), under ``$LINEST_CACHE_DIR`` (default ``~/.cache/linest``;
    ``off`` turns both off)."""
    import jax

    from linest import _export

    root = os.environ.get("LINEST_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "linest"
    )
    if root.lower() in ("0", "off", "none"):
        return
    try:
        os.makedirs(os.path.join(root, "jax"), exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", os.path.join(root, "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _export.set_directory(os.path.join(root, "exported"))


def _fit(args) -> int:
    import linest
    from linest.fit import FitWarning
    from linest.spec import load_spec

    spec = load_spec(args.spec)
    if args.covariates is not None:
        names = [c for item in args.covariates for c in item.split(",") if c]
        spec = spec.with_covariates(names)
    gradient = _gradient_option(args.gradient)
    outputs = [(option, value) for option, value in (("--json", args.json), ("--plot", args.plot))]
    _check_outputs(outputs, spec, args.overwrite)
    try:
        reports = spec.model.result_class.check_reports([args.report]) if args.report else []
    except ValueError as error:
        raise UsageError(str(error)) from None
    chains = spec.read_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # printed in the summary
        result = linest.fit(
            spec.model,
            chains,
            gradient=gradient,
            intervals=args.intervals,
            hessian=args.hessian,
            progress=not args.quiet,
        )
    print(f"{spec.path}: {chains.source}")
    print(result.summary())
    reported = _print_reports(result, reports, chains)
    if args.json:
        out = Path(args.json)
        payload = result.to_dict() | {"spec": str(spec.path), "data": str(spec.data["source"])}
        atomic_write(out, lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))
        print(f"wrote {out}")
    if args.plot:
        out = Path(args.plot)
        try:
            figure = result.plot(chains)
        except ValueError as error:
            print(f"linest: error: --plot: {error}", file=sys.stderr)
            return EXIT_INPUT
        atomic_write(out, lambda tmp: figure.savefig(tmp, dpi=120, bbox_inches="tight"))
        print(f"wrote {out}")
    if not reported:
        return EXIT_INPUT
    return 0 if result.converged else 2


def _print_reports(result, reports, data=None) -> bool:
    """Print each --report table; one this model cannot give (efpt without an absorbing
    state...) is an error naming it, after which the others and the outputs still come."""
    ok = True
    for name in reports:
        try:
            text = result.report([name], data=data)
        except ValueError as error:
            print(f"linest: error: --report {name}: {error}", file=sys.stderr)
            ok = False
            continue
        print("\n" + text)
    return ok


def _sample(args) -> int:
    from linest.sampling import SamplingWarning, sample, summarize
    from linest.spec import load_spec

    spec = load_spec(args.spec)
    if args.covariates is not None:
        names = [c for item in args.covariates for c in item.split(",") if c]
        spec = spec.with_covariates(names)
    if not spec.priors:
        print(
            f"linest: error: {spec.path}: no [priors] table; sampling needs one, with a prior "
            f"for each kind of parameter ({', '.join(sorted(set(spec.model.param_kinds)))}), "
            "e.g.\n  [priors]\n  log_rate = { normal = [-2.0, 2.0] }",
            file=sys.stderr,
        )
        return 1
    gradient = _gradient_option(args.gradient)
    if args.resume and not args.out:
        raise OutputError("--resume needs --out (the file of the run to continue)")
    outputs = [("--out", args.out)]
    if args.plots:
        from linest.plots import posterior_plot_paths

        outputs += [("--plots", path) for path in posterior_plot_paths(args.plots)]
    _check_outputs(outputs, spec, args.overwrite, resume=args.resume)
    try:
        reports = spec.model.result_class.check_reports([args.report]) if args.report else []
        fit_only = [name for name in reports if name in ("sojourn", "pearson")]
        if fit_only:
            raise ValueError(
                f"--report: {fit_only[0]} is a fit's table (sojourn: delta method; pearson: "
                "at the estimate); for its posterior ask for totlos or efpt"
            )
    except ValueError as error:
        raise UsageError(str(error)) from None
    chains = spec.read_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        tree = sample(
            spec.model,
            chains,
            _prior(spec),
            num_chains=args.chains,
            num_warmup=args.warmup,
            num_samples=args.draws,
            gradient=gradient,
            kernel=args.kernel,
            rng_key=args.seed,
            out=args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            block_size=args.block_size,
            progress=not args.quiet,
            init=args.init,
            surrogate=args.surrogate,
            dense_mass=args.dense_mass,
            exact_every=args.exact_every,
            target_acceptance=args.target_acceptance,
        )
    print(f"{spec.path}: {chains.source}")
    print(summarize(tree))
    # The sampler's warnings, and those of what it ran first (the fit of --init mle, the
    # start search of a multimodal model, the data), once each; others pass through.
    from linest.data import DataWarning
    from linest.fit import FitWarning

    said = set()
    for warning in caught:
        if not issubclass(warning.category, (SamplingWarning, FitWarning, DataWarning)):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        elif str(warning.message) not in said:
            said.add(str(warning.message))
            print(f"WARNING: {warning.message}")
    reported = True
    if reports:
        result = spec.model.result_class.from_posterior(
            spec.model, spec.model.statistics(chains), tree
        )
        reported = _print_reports(result, reports, chains)
    if args.out:
        print(f"wrote {args.out}")
    if args.plots:
        from linest.plots import plot_posterior

        for path in plot_posterior(tree, args.plots):
            print(f"wrote {path}")
    return 0 if reported else EXIT_INPUT


def _join(args) -> int:
    import json

    from linest.sampling import join_runs, summarize
    from linest.sampling.checkpoint import _write

    out = check_output(args.out, option="--out", overwrite=args.overwrite, inputs=args.parts)
    tree = join_runs(args.parts)
    _write(tree, out)
    print(f"joined {len(args.parts)} runs: {', '.join(map(str, args.parts))}")
    print(summarize(tree))
    for note in json.loads(tree.attrs.get("linest_warnings", "[]")):
        print(f"WARNING: {note}")
    print(f"wrote {out}")
    return 0


def _compare(args) -> int:
    from linest.compare import CANDIDATES, compare_model, format_report, plot_report
    from linest.spec import load_spec

    spec = load_spec(args.spec)
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out {out}: is a file; compare writes a folder of reports")
        folder = next(p for p in (out, *out.parents) if p.exists() or str(p) in ("", "."))
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"--out {out}: the folder {folder} is not writable")
        if out.is_dir():
            _check_outputs([("--out", out / name) for name in REPORT_FILES], spec, args.overwrite)
    data = spec.read_data()
    methods = CANDIDATES if not args.methods else [m.strip() for m in args.methods.split(",")]
    for method in methods:
        try:
            _gradient_option(method)
        except UsageError as error:
            raise UsageError(f"--methods: {str(error).removeprefix('--gradient ')}") from None
    prior = _prior(spec) if spec.priors else None
    truth = None
    if args.truth:
        from linest.compare import truth_theta

        try:
            truth = truth_theta(spec.model, json.loads(Path(args.truth).read_text()), args.truth)
        except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError too
            raise UsageError(f"--truth {args.truth}: {error}") from None
    report = compare_model(
        spec.model,
        data,
        methods,
        prior=prior,
        truth=truth,
        seed=args.seed,
        optimise=not args.no_fits,
        progress=not args.quiet,
    )
    text = format_report(report, str(spec.path))
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "report.md", lambda tmp: tmp.write_text(text))
        atomic_write(
            out / "report.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n")
        )
        figure = plot_report(report)
        atomic_write(out / "report.png", lambda tmp: figure.savefig(tmp, dpi=120))
        print(f"wrote {out / 'report.md'}, report.json, report.png")
    return 0


QUIET = (
    "no progress display (by default: a bar on a terminal, a plain line every 30 s when "
    "standard error is a pipe or a file)"
)
REPORT_FILES = ("report.md", "report.json", "report.png")


def _check_outputs(outputs, spec, overwrite, resume=False) -> None:
    """Every output path of a run, checked before any work (see linest._io.check_output);
    two outputs of one run may not share a path either."""
    seen: dict[str, str] = {}
    for option, value in outputs:
        if not value:
            continue
        path = check_output(
            value,
            option=option,
            overwrite=overwrite,
            inputs=spec.inputs,
            exists_ok=resume and option == "--out",  # the run --resume continues
        )
        key = os.path.realpath(path)
        if key in seen:
            raise OutputError(f"{option} {path}: also given as {seen[key]}; use two paths")
        seen[key] = option


def _prior(spec):
    from linest.priors import Prior

    return Prior.from_table(spec.model, spec.priors, source=str(spec.path))


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: ``linest fit``, ``sample``, ``join`` and ``compare`` (the
    documentation's command-line reference is generated from it)."""
    parser = argparse.ArgumentParser(
        prog="linest", description="Estimate linear ODE models dx/dt = A(theta) x from data."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="maximum likelihood with 95%% intervals")
    fit.add_argument("spec", help="model specification file (TOML), e.g. models/cav.toml")
    fit.add_argument(
        "--covariates",
        nargs="+",
        metavar="NAME",
        help="covariates acting on every intensity (replaces the spec's list)",
    )
    fit.add_argument(
        "--gradient",
        default="default",
        help="gradient method: default, exact, eigen, autodiff, surrogate-left, "
        "surrogate-gauss-2, ... (see linest.gradient_from_string)",
    )
    fit.add_argument("--json", metavar="PATH", help="write the results as JSON")
    fit.add_argument(
        "--overwrite", action="store_true", help="replace existing --json and --plot files"
    )
    fit.add_argument(
        "--intervals",
        choices=["wald", "profile"],
        default="wald",
        help="wald (default: estimate -/+ 1.96 se) or profile (likelihood ratio); a rate "
        "estimated at 0 always gets a one-sided profile interval",
    )
    fit.add_argument(
        "--hessian",
        choices=["auto", "exact", "differences"],
        default="auto",
        help="observed information: exact (forward over reverse), differences (central "
        "differences of the exact gradient, 1e-10 relative, cheaper for many parameters) or "
        "auto (exact up to 64 parameters)",
    )
    fit.add_argument("--quiet", action="store_true", help=QUIET)
    fit.add_argument(
        "--report",
        metavar="NAMES",
        help="after-fit tables, comma-separated (a CTMC: sojourn, pnext, totlos, envisits, "
        "efpt, pearson; intervals by simulation from the estimate's normal approximation)",
    )
    fit.add_argument(
        "--plot",
        metavar="PNG",
        help="plot the fit against the data (a CTMC: prevalence; a grid model: snapshots "
        "and the velocity field)",
    )
    draw = commands.add_parser("sample", help="Bayesian posterior by NUTS/HMC (blackjax)")
    draw.add_argument("spec", help="model specification file (TOML) with a [priors] table")
    draw.add_argument("--covariates", nargs="+", metavar="NAME")
    draw.add_argument("--chains", type=int, default=4)
    draw.add_argument("--warmup", type=int, default=1000, help="adaptation steps per chain")
    draw.add_argument("--draws", type=int, default=1000, help="kept draws per chain")
    draw.add_argument("--gradient", default="default", help="as for `linest fit`")
    draw.add_argument(
        "--report",
        metavar="NAMES",
        help="after-fit tables over the posterior, comma-separated (a CTMC: pnext, totlos, "
        "envisits, efpt): posterior medians and equal-tailed credible intervals",
    )
    draw.add_argument(
        "--kernel",
        default="nuts",
        choices=["nuts", "hmc", "chees", "meads"],
        help="nuts (default), hmc, or chees / meads (for many chains: adapted across them; "
        "meads needs a multiple of 4, at least 32)",
    )
    draw.add_argument(
        "--init",
        choices=["mle"],
        help="mle: fit first, start from the fit's normal approximation and sample in its "
        "whitened coordinates (the warm-up starts from the fit's covariance)",
    )
    draw.add_argument(
        "--surrogate",
        metavar="NAME",
        help="run the trajectories on a cheap density, accept with the exact one (NUTS: "
        "delayed acceptance; --kernel hmc: exact energy at the ends): gaussian, learned, "
        "laplace (these need --init mle), coarse:K (grid models), affine:NAME",
    )
    draw.add_argument(
        "--dense-mass", action="store_true", help="adapt a dense mass matrix (nuts, hmc)"
    )
    draw.add_argument(
        "--exact-every",
        type=int,
        default=0,
        metavar="K",
        help="with --surrogate: every K-th draw an exact NUTS transition (for "
        "surrogates lighter-tailed than the posterior; see the tail warning)",
    )
    draw.add_argument(
        "--target-acceptance",
        type=float,
        metavar="A",
        help="the warm-up's target acceptance (default 0.8 for nuts and hmc); raise it (0.9, "
        "0.95) when the summary reports divergent transitions",
    )
    draw.add_argument("--seed", type=int, default=0)
    draw.add_argument("--out", metavar="PATH.nc", help="netCDF output, written after every block")
    draw.add_argument("--resume", action="store_true", help="continue the run in --out")
    draw.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out and --plots files"
    )
    draw.add_argument("--block-size", type=int, help="draws per block (progress and writes)")
    draw.add_argument("--plots", metavar="PREFIX", help="write PREFIX-trace.png, PREFIX-pair.png")
    draw.add_argument("--quiet", action="store_true", help=QUIET)
    joiner = commands.add_parser(
        "join",
        help="join the files of runs that sampled parts of the same chains (processes)",
    )
    joiner.add_argument("parts", nargs="+", help="the parts' netCDF files (linest sample --out)")
    joiner.add_argument("--out", required=True, metavar="PATH.nc", help="the joined file")
    joiner.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    versus = commands.add_parser(
        "compare", help="every gradient method on a model: error, cost, what an optimiser reaches"
    )
    versus.add_argument("spec", help="model specification file (TOML)")
    versus.add_argument(
        "--methods",
        help="comma-separated method names (default: every one the model accepts among "
        "default, exact, eigen, autodiff, adjoint, surrogate-left, surrogate-gauss-2/4/8)",
    )
    versus.add_argument("--out", metavar="DIR", help="write report.md, report.json, report.png")
    versus.add_argument(
        "--overwrite", action="store_true", help="replace the reports in an existing --out"
    )
    versus.add_argument("--no-fits", action="store_true", help="skip the optimiser runs")
    versus.add_argument(
        "--truth",
        metavar="JSON",
        help='the true parameters of simulated data, as one more point: {"theta": [...]} or '
        "a value per parameter name (e.g. data/compartment/truth.json)",
    )
    versus.add_argument("--seed", type=int, default=0)
    versus.add_argument("--quiet", action="store_true", help=QUIET)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    _enable_compilation_cache()
    from linest.data import DataError
    from linest.priors import PriorError
    from linest.sampling import SamplingError
    from linest.spec import SpecError

    previous = _terminate_cleanly()
    try:
        if args.command == "compare":
            return _compare(args)
        if args.command == "join":
            return _join(args)
        return _fit(args) if args.command == "fit" else _sample(args)
    except OutputError as error:
        print(f"linest: error: {error}", file=sys.stderr)
        return EXIT_OUTPUT
    except (DataError, SpecError, PriorError, SamplingError, UsageError) as error:
        print(f"linest: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except (KeyboardInterrupt, Terminated) as stop:
        name = "SIGTERM" if isinstance(stop, Terminated) else "SIGINT (Ctrl-C)"
        print(f"\nlinest: stopped by {name}; {_kept(args)}", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(stop, Terminated) else EXIT_SIGINT
    except FloatingPointError as error:  # the fit's start or a check of its numerics
        print(
            f"linest: error: {error} (the data may hold values linest cannot compute with, "
            "or the model may not suit them)",
            file=sys.stderr,
        )
        return EXIT_INPUT
    except MemoryError:
        print(
            "linest: error: out of memory; use fewer chains (--chains), a coarser grid, or a "
            "machine with more memory",
            file=sys.stderr,
        )
        return EXIT_INPUT
    except OSError as error:  # a file the command had checked, changed under it
        where = f"{error.filename}: " if error.filename else ""
        print(f"linest: error: {where}{error.strerror or error}", file=sys.stderr)
        return EXIT_OUTPUT
    except Exception:
        import traceback

        traceback.print_exc()
        print(
            "linest: internal error (a defect in linest, not in your input): please report it "
            "with the command line and the traceback above",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` clauses (the removal of a
    half-written temporary file) run, as they do for Ctrl-C."""


def _terminate_cleanly():
    """Turn SIGTERM into :class:`Terminated`; returns the previous handler (None off the
    main thread, where Python cannot install one)."""

    def handler(signum, frame):
        raise Terminated(signum)

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _kept(args) -> str:
    """What an interrupted command leaves, in words."""
    if args.command == "sample" and args.out and Path(args.out).exists():
        return (
            f"the draws written so far are in {args.out}; the same command with --resume "
            "continues the run"
        )
    return "nothing was written"


def console() -> None:
    """The ``linest`` command. ``linest fit`` leaves by ``os._exit`` once its output is
    written and flushed: the interpreter's own shutdown (JAX's backends, the module
    graph) took 0.3 s of a 2 s run. The other commands exit normally (``sample`` may hold
    JAX's distributed runtime, whose exit hook must run)."""
    argv = sys.argv[1:]
    code = main(argv)
    if argv[:1] == ["fit"]:
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:  # a closed pipe (`linest fit ... | head`): nothing to save
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console()
