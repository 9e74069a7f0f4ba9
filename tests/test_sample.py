"""linest.sample: closed-form posteriors, sharding, resume after SIGKILL, bad input."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import arviz as az
import jax
import numpy as np
import pytest
import scipy.stats
import xarray as xr

import linest
from linest.priors import Prior, PriorError
from linest.sampling import SamplingError, SamplingWarning
from linest.simulate import simulate_paths

ROOT = Path(__file__).resolve().parents[1]
THREE = linest.CTMC(["a", "b", "c"], ["a-b", "b-a", "b-c", "c-a"])
THREE_RATES = np.array([0.5, 0.3, 0.4, 0.2])
GAMMA = (2.0, 1.0)  # shape, rate of the prior on every q


@pytest.fixture(scope="module")
def paths():
    frame = simulate_paths(THREE, np.log(THREE_RATES), 40, 5.0, np.random.default_rng(8))
    return frame, linest.read_chains(frame, kind="paths")


def _closed_form(frame):
    """Posterior Gamma(a + N_rs, b + R_r) of each q_rs for fully observed paths."""
    code = frame["state"].map({s: i for i, s in enumerate(THREE.states)}).to_numpy()
    same = frame["subject"].to_numpy()[1:] == frame["subject"].to_numpy()[:-1]
    a, b = code[:-1][same], code[1:][same]
    dt = np.diff(frame["time"].to_numpy())[same]
    R = np.bincount(a, weights=dt, minlength=3)
    N = np.array([np.sum((a == r) & (b == s)) for r, s in THREE.transitions])
    return [
        scipy.stats.gamma(GAMMA[0] + N[k], scale=1 / (GAMMA[1] + R[r]))
        for k, (r, _) in enumerate(THREE.transitions)
    ]


def test_conjugate_gamma_posterior_within_mcse(paths):
    """A gamma prior on the rates (Jacobian included) gives the closed-form posterior."""
    frame, chains = paths
    tree = linest.sample(
        THREE, chains, {"rate": {"gamma": list(GAMMA)}}, num_chains=4, num_warmup=300,
        num_samples=1000, rng_key=3, progress=False,
    )  # fmt: skip
    rate = tree["posterior"]["rate"]
    mean_mcse = az.mcse(tree, var_names=["rate"], method="mean")["rate"].values
    for k, exact in enumerate(_closed_form(frame)):
        draws = rate.isel(transition=k).values
        z = (draws.mean() - exact.mean()) / mean_mcse[k]
        assert abs(z) < 4, (k, draws.mean(), exact.mean(), mean_mcse[k])
        for q in (0.05, 0.5, 0.95):
            mcse = float(
                az.mcse(tree, var_names=["rate"], method="quantile", prob=q)["rate"].values[k]
            )
            assert abs(np.quantile(draws, q) - exact.ppf(q)) < 4 * mcse, (k, q)
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    # The Jacobian matters: without it (a gamma density on theta's scale) the posterior
    # of q would be Gamma(a - 1 + N, b + R), whose mean differs by ~1/(b + R) >> MCSE.
    wrong = [scipy.stats.gamma(e.args[0] - 1, scale=e.kwds["scale"]) for e in _closed_form(frame)]
    misses = [
        abs(rate.isel(transition=k).values.mean() - w.mean()) / mean_mcse[k]
        for k, w in enumerate(wrong)
    ]
    assert max(misses) > 4


SHORT_RUN = pytest.mark.filterwarnings("ignore::linest.sample.SamplingWarning")


@SHORT_RUN
@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_sharded_chains_equal_vmapped_chains(paths):
    _, chains = paths
    # CPU devices whatever the default backend (a GPU machine has one GPU device; linest
    # splits the CPU into several there too).
    devices = jax.devices("cpu")
    assert len(devices) >= 2, "linest should start JAX with several CPU devices"
    kwargs = dict(
        num_chains=2, num_warmup=30, num_samples=20, rng_key=5, progress=False,
        log_likelihood=False,
    )  # fmt: skip
    prior = {"log_rate": {"normal": [-1.0, 1.0]}}
    sharded = linest.sample(THREE, chains, prior, devices=devices[:2], **kwargs)
    vmapped = linest.sample(THREE, chains, prior, devices=devices[:1], **kwargs)
    np.testing.assert_allclose(
        sharded["posterior"]["theta"].values, vmapped["posterior"]["theta"].values, rtol=1e-9
    )


@pytest.mark.slow
@SHORT_RUN
def test_block_size_does_not_change_the_draws(paths, tmp_path):
    _, chains = paths
    prior = {"log_rate": {"normal": [-1.0, 1.0]}}
    kwargs = dict(num_chains=2, num_warmup=30, num_samples=30, rng_key=2, progress=False)
    one = linest.sample(THREE, chains, prior, block_size=30, **kwargs)
    out = tmp_path / "blocks.nc"
    three = linest.sample(THREE, chains, prior, block_size=10, out=out, **kwargs)
    np.testing.assert_array_equal(
        one["posterior"]["theta"].values, three["posterior"]["theta"].values
    )
    saved = xr.open_datatree(out, engine="h5netcdf")
    np.testing.assert_array_equal(
        saved["posterior"]["theta"].values, three["posterior"]["theta"].values
    )
    assert saved["linest_checkpoint"].attrs["next_draw"] == 30


@pytest.mark.parametrize(
    "kernel, num_chains, num_samples",
    [("chees", 16, 250), pytest.param("meads", 32, 400, marks=pytest.mark.slow)],
)
def test_cross_chain_kernels_match_the_conjugate_posterior(paths, kernel, num_chains, num_samples):
    """ChEES (jittered HMC) and MEADS (generalized HMC, one leapfrog step per draw), both
    adapted across chains, on the closed-form gamma posterior: means, sds (within 10%) and
    5/50/95% quantiles within 4 MCSE, no divergences, and every chain taking the same
    number of leapfrog steps at each draw (what keeps vmapped chains in step)."""
    frame, chains = paths
    tree = linest.sample(
        THREE, chains, {"rate": {"gamma": list(GAMMA)}}, num_chains=num_chains,
        num_warmup=300, num_samples=num_samples, rng_key=4, progress=False, kernel=kernel,
        log_likelihood=False,
    )  # fmt: skip
    assert tree.attrs["linest_kernel"] == kernel
    rate = tree["posterior"]["rate"]
    mean_mcse = az.mcse(tree, var_names=["rate"], method="mean")["rate"].values
    for k, exact in enumerate(_closed_form(frame)):
        draws = rate.isel(transition=k).values
        assert abs(draws.mean() - exact.mean()) < 4 * mean_mcse[k], (k, draws.mean())
        assert abs(draws.std() / exact.std() - 1) < 0.1, (k, draws.std(), exact.std())
        for q in (0.05, 0.5, 0.95):
            mcse = float(
                az.mcse(tree, var_names=["rate"], method="quantile", prob=q)["rate"].values[k]
            )
            assert abs(np.quantile(draws, q) - exact.ppf(q)) < 4 * mcse, (k, q)
    stats = tree["sample_stats"]
    assert int(stats["diverging"].sum()) == 0
    assert np.all(stats["n_steps"].values == stats["n_steps"].values[:1])
    if kernel == "meads":
        assert np.all(stats["n_steps"].values == 1)


@SHORT_RUN
# Each kernel keeps one default test: ChEES its posterior above, MEADS its resume here.
@pytest.mark.parametrize("kernel", [pytest.param("chees", marks=pytest.mark.slow), "meads"])
def test_cross_chain_run_killed_after_a_block_resumes_to_the_same_draws(
    paths, tmp_path, monkeypatch, kernel
):
    """The state of a kernel adapted across chains goes through the checkpoint (ChEES:
    step size, mass matrix, trajectory length, the jitter sequence's position; MEADS:
    step size, scales, damping, slice shift, the persistent momentum and slice variable):
    a run stopped after its first block and resumed equals one run straight through."""
    from linest.sampling import run as sample_module

    _, chains = paths
    prior = {"log_rate": {"normal": [-1.0, 1.0]}}
    kwargs = dict(
        num_chains=4 if kernel == "chees" else 32, num_warmup=30, num_samples=30, rng_key=6,
        progress=False, kernel=kernel, block_size=10, log_likelihood=False,
    )  # fmt: skip
    straight = linest.sample(THREE, chains, prior, **kwargs)
    out = tmp_path / f"{kernel}.nc"
    real, writes = sample_module._write, []

    def dying(tree, path):
        real(tree, path)
        writes.append(path)
        if len(writes) == 2:  # after warm-up and the first block
            raise KeyboardInterrupt

    monkeypatch.setattr(sample_module, "_write", dying)
    with pytest.raises(KeyboardInterrupt):
        linest.sample(THREE, chains, prior, out=out, **kwargs)
    monkeypatch.undo()
    assert xr.open_datatree(out, engine="h5netcdf")["linest_checkpoint"].attrs["next_draw"] == 10
    resumed = linest.sample(THREE, chains, prior, out=out, resume=True, **kwargs)
    np.testing.assert_array_equal(
        resumed["posterior"]["theta"].values, straight["posterior"]["theta"].values
    )
    with pytest.raises(SamplingError, match="kernel"):
        linest.sample(THREE, chains, prior, out=out, resume=True, **(kwargs | {"kernel": "nuts"}))
    if kernel == "chees":
        with pytest.raises(SamplingError, match="num_chains >= 2"):
            linest.sample(THREE, chains, prior, **(kwargs | {"num_chains": 1}))
        with pytest.warns(SamplingWarning, match="noisy below 16"):
            linest.sample(THREE, chains, prior, **(kwargs | {"num_warmup": 10, "num_samples": 2}))
    else:
        for bad in (16, 34):
            with pytest.raises(SamplingError, match="multiple of 4 and at least 32"):
                linest.sample(THREE, chains, prior, **(kwargs | {"num_chains": bad}))
        with pytest.raises(SamplingError, match="no target_acceptance"):
            linest.sample(THREE, chains, prior, **(kwargs | {"target_acceptance": 0.8}))
        with pytest.raises(SamplingError, match=r"same log q\(a-b\), log q\(b-a\)"):
            linest.sample(THREE, chains, prior, **(kwargs | {"init": np.full(4, -1.0)}))


def _spec(tmp_path, frame) -> Path:
    frame.to_csv(tmp_path / "paths.csv", index=False)
    spec = tmp_path / "three.toml"
    spec.write_text(
        '[model]\nstates = ["a", "b", "c"]\ntransitions = ["a-b", "b-a", "b-c", "c-a"]\n'
        '[data]\nfile = "paths.csv"\nkind = "paths"\nsubject = "subject"\ntime = "time"\n'
        'state = "state"\n[priors]\nrate = { gamma = [2.0, 1.0] }\n'
    )
    return spec


def _cli(*args):
    env = dict(os.environ, LINEST_CACHE_DIR=os.environ.get("LINEST_CACHE_DIR", "off"))
    return [sys.executable, "-m", "linest.cli", *map(str, args)], env


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_resume_after_sigkill_loses_and_duplicates_nothing(paths, tmp_path):
    frame, _ = paths
    spec = _spec(tmp_path, frame)
    common = ["sample", spec, "--chains", "2", "--warmup", "50", "--draws", "400",
              "--block-size", "20", "--seed", "11", "--quiet"]  # fmt: skip
    full = tmp_path / "full.nc"
    command, env = _cli(*common, "--out", full)
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)

    killed = tmp_path / "killed.nc"
    command, env = _cli(*common, "--out", killed)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and process.poll() is None:
        if killed.exists():
            try:
                with xr.open_datatree(killed, engine="h5netcdf") as tree:
                    done = int(tree["linest_checkpoint"].attrs["next_draw"])
            except (OSError, KeyError):
                done = 0
            if done >= 40:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < done < 400, f"the kill came too late to test anything (draws done: {done})"

    command, env = _cli(*common, "--out", killed, "--resume")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with (
        xr.open_datatree(full, engine="h5netcdf") as a,
        xr.open_datatree(killed, engine="h5netcdf") as b,
    ):
        assert b["posterior"].sizes["draw"] == 400
        np.testing.assert_array_equal(
            a["posterior"]["theta"].values, b["posterior"]["theta"].values
        )
        np.testing.assert_array_equal(
            a["sample_stats"]["acceptance_rate"].values, b["sample_stats"]["acceptance_rate"].values
        )


@SHORT_RUN
def test_resume_with_other_settings_is_refused(paths, tmp_path):
    _, chains = paths
    prior = {"log_rate": {"normal": [-1.0, 1.0]}}
    out = tmp_path / "run.nc"
    kwargs = dict(num_chains=2, num_warmup=20, rng_key=1, progress=False, out=out)
    linest.sample(THREE, chains, prior, num_samples=10, **kwargs)
    with pytest.raises(SamplingError, match=r"run.nc: cannot resume.*num_samples: file 10, now 20"):
        linest.sample(THREE, chains, prior, num_samples=20, resume=True, **kwargs)
    with pytest.raises(SamplingError, match=r"run.nc exists: resume=True"):
        linest.sample(THREE, chains, prior, num_samples=10, **kwargs)  # never lost by accident


@pytest.mark.parametrize(
    "table, message",
    [
        (
            {"log_rate": {"normal": [0.0, -1.0]}},
            r"priors.log_rate: normal argument sigma must be > 0",
        ),
        (
            {"log_rate": {"gamma": [1.0, 1.0]}},
            r"priors.log_rate: gamma is a distribution on positive",
        ),
        ({"rate": {"normal": [0.0, 1.0]}}, r"priors.rate: normal allows negative values"),
        ({"log_rate": {"normal": [0.0]}}, r"normal takes 2 argument"),
        ({"log_rate": {"normal": ["a", 1]}}, r"argument mu must be a number"),
        ({"log_rate": {"cauchy": [0.0, 1.0]}}, r"unknown distribution 'cauchy'"),
        ({"log_rates": {"normal": [0.0, 1.0]}}, r"unknown target 'log_rates'"),
        ({"q(a-b)": {"gamma": [1.0, 1.0]}}, r"no prior for parameter 'log q\(b-a\)'"),
        ({"log_rate": [0.0, 1.0]}, r"expected one distribution"),
    ],
)
def test_bad_priors_are_named(table, message):
    with pytest.raises(PriorError, match=message):
        Prior.from_table(THREE, table, source="spec.toml")


def test_prior_density_includes_the_jacobian():
    prior = Prior.from_table(
        THREE, {"log_rate": {"normal": [-1.0, 2.0]}, "q(b-c)": {"gamma": [3.0, 2.0]}}
    )
    theta = np.log(np.array([0.5, 0.3, 0.4, 0.2]))
    expected = sum(scipy.stats.norm(-1, 2).logpdf(theta[k]) for k in (0, 1, 3))
    expected += scipy.stats.gamma(3.0, scale=0.5).logpdf(0.4) + np.log(0.4)
    assert abs(float(prior.logpdf(theta)) - expected) < 1e-12


def test_sampler_settings_and_missing_prior_are_clear_errors(paths):
    _, chains = paths
    with pytest.raises(PriorError, match="a prior is required"):
        linest.sample(THREE, chains, None)
    with pytest.raises(SamplingError, match="num_warmup must be an integer >= 10"):
        linest.sample(THREE, chains, {"rate": {"gamma": [1, 1]}}, num_warmup=0)
    with pytest.raises(SamplingError, match="kernel='mala'"):
        linest.sample(THREE, chains, {"rate": {"gamma": [1, 1]}}, kernel="mala")
    with pytest.raises(SamplingError, match="resume=True needs out="):
        linest.sample(THREE, chains, {"rate": {"gamma": [1, 1]}}, resume=True)


def test_cli_sample_bad_prior_names_file_and_field(tmp_path, paths):
    frame, _ = paths
    spec = _spec(tmp_path, frame)
    spec.write_text(spec.read_text().replace("gamma = [2.0, 1.0]", "gamma = [2.0, 0.0]"))
    command, env = _cli("sample", spec, "--draws", "10", "--warmup", "10")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "three.toml: priors.rate: gamma argument rate must be > 0" in result.stderr
    assert "Traceback" not in result.stderr


def _moments(tree):
    """Posterior means and sds of theta, with their Monte Carlo standard errors."""
    theta = tree["posterior"]["theta"]
    return (
        theta.mean(("chain", "draw")).values,
        theta.std(("chain", "draw")).values,
        az.mcse(tree, var_names=["theta"], method="mean")["theta"].values,
        az.mcse(tree, var_names=["theta"], method="sd")["theta"].values,
    )


def _agree_within_mcse(reference, tree, label):
    m0, s0, mcse_m0, mcse_s0 = _moments(reference)
    m, s, mcse_m, mcse_s = _moments(tree)
    z_mean = (m - m0) / np.hypot(mcse_m, mcse_m0)
    z_sd = (s - s0) / np.hypot(mcse_s, mcse_s0)
    stats = tree["sample_stats"]
    print(
        f"{label}: acceptance {float(stats['acceptance_rate'].mean()):.2f}, step size "
        f"{float(stats['step_size'].mean()):.3g}, leapfrog/draw {float(stats['n_steps'].mean()):.1f}, "
        f"max |z| mean {np.abs(z_mean).max():.2f}, sd {np.abs(z_sd).max():.2f}"
    )
    assert np.all(np.abs(z_mean) < 4), (label, z_mean)
    assert np.all(np.abs(z_sd) < 4), (label, z_sd)


@pytest.mark.slow
def test_left_surrogate_trajectories_target_the_exact_posterior():
    """Short panel gaps (t ||Q|| <= 0.15): the left-point force is rough (the adapted step
    halves, trajectories double; at t ||Q|| ~ 0.45 the step fell 25x), and the exact accept
    step keeps the exact posterior: means and sds agree within MCSE."""
    from linest.simulate import simulate_panel

    frame = simulate_panel(THREE, np.log(THREE_RATES), 150, 3.0, np.random.default_rng(4),
                           mean_gap=0.1, resolution=0.01)  # fmt: skip
    chains = linest.read_chains(frame)
    prior = {"log_rate": {"normal": [-1.0, 1.0]}}
    kwargs = dict(num_chains=4, num_warmup=500, num_samples=1500, progress=False,
                  log_likelihood=False)  # fmt: skip
    exact = linest.sample(THREE, chains, prior, rng_key=1, **kwargs)
    left = linest.sample(
        THREE, chains, prior, gradient=linest.Surrogate("left"), rng_key=2, **kwargs
    )
    _agree_within_mcse(exact, left, "panel, Surrogate(left)")


@pytest.mark.slow
def test_surrogate_trajectories_on_cav():
    """On cav, Surrogate(gauss, 2) NUTS matches exact NUTS within MCSE; the left-point
    force (errors of order 1 at t ||Q|| ~ 10) collapses the step size, which is reported."""
    from linest.sampling import SamplingWarning
    from linest.spec import load_spec

    spec = load_spec(ROOT / "models" / "cav.toml")
    chains = spec.read_data()
    kwargs = dict(num_chains=4, num_warmup=500, num_samples=1000, progress=False,
                  log_likelihood=False)  # fmt: skip
    reference = linest.sample(spec.model, chains, spec.priors, rng_key=1, **kwargs)
    gauss = linest.sample(spec.model, chains, spec.priors, gradient=linest.Surrogate("gauss", 2),
                          rng_key=2, **kwargs)  # fmt: skip
    _agree_within_mcse(reference, gauss, "cav, Surrogate(gauss, 2)")
    # benchmarks/hmc_ess.py: 4 x (50 + 50) at depth 10 took 347 s, step size ~1e-4, every
    # draw at the maximum depth, min ESS_bulk 5. Here: depth 5, 100 + 50 draws.
    with pytest.warns(SamplingWarning, match="hit the maximum tree depth 5"):
        left = linest.sample(spec.model, chains, spec.priors, gradient=linest.Surrogate("left"),
                             rng_key=2, num_chains=4, num_warmup=100, num_samples=50,
                             max_tree_depth=5, progress=False, log_likelihood=False)  # fmt: skip
    assert float(left["sample_stats"]["step_size"].mean()) < 0.1 * float(
        reference["sample_stats"]["step_size"].mean()
    )


def test_summary_groups_a_prior_shared_by_many_parameters():
    from linest.sampling.diagnostics import _short_prior

    text = "; ".join(f"q({i}-{i + 1}) ~ gamma(0.5, 1)" for i in range(1, 8)) + "; b ~ normal(0, 1)"
    assert (
        _short_prior(text) == "q(1-2) ... q(7-8) (7 parameters) ~ gamma(0.5, 1); b ~ normal(0, 1)"
    )
    assert _short_prior("a ~ normal(0, 1); c ~ normal(0, 1)") == "a, c ~ normal(0, 1)"


def test_divergence_warning_says_where_the_divergent_draws_sit():
    """The parameter whose mean over the divergent draws is farthest from its posterior
    mean, and the side: the steep side of a skewed posterior (a skewed log-rate's draws,
    divergent at its top)."""
    from linest.sampling.diagnostics import diagnose

    rng = np.random.default_rng(1)
    theta = rng.standard_normal((4, 300, 3))
    theta[..., 2] = -rng.gamma(2.0, 1.0, (4, 300))  # a long lower tail, a wall above
    diverging = np.zeros((4, 300), bool)
    top = np.argsort(theta[..., 2].ravel())[-3:]  # the three highest draws of c
    diverging.ravel()[top] = True
    tree = az.from_dict(
        {
            "posterior": {"theta": theta},
            "sample_stats": {"diverging": diverging, "tree_depth": np.ones((4, 300), int)},
        },
        dims={"theta": ["param"]},
        coords={"param": ["a", "b", "c"]},
    )
    (note,) = [n for n in diagnose(tree) if "divergent" in n]
    assert note.startswith("3 divergent transition(s)")
    assert re.search(r"sit 1\.\d sd above the posterior mean of c on average", note), note
    assert "--target-acceptance 0.9" in note


def test_cli_sample_report_refuses_a_fit_only_table(tmp_path, paths):
    frame, _ = paths
    command, env = _cli("sample", _spec(tmp_path, frame), "--report", "sojourn,nosuch")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "nosuch" in result.stderr and "Traceback" not in result.stderr
    command, env = _cli("sample", _spec(tmp_path, frame), "--report", "sojourn")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "for its posterior ask for totlos" in result.stderr


@pytest.mark.slow  # a short posterior through the command line
def test_cli_sample_reports_outputs_over_the_posterior(tmp_path, paths):
    frame, _ = paths
    out = tmp_path / "run.nc"
    command, env = _cli("sample", _spec(tmp_path, frame), "--chains", "2", "--warmup", "100",
                        "--draws", "100", "--seed", "4", "--quiet", "--out", out,
                        "--report", "efpt,pnext")  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    # This chain has no absorbing state: efpt is an error naming it, pnext still prints.
    assert result.returncode == 1, result.stderr
    assert "--report efpt: efpt: the chain has no absorbing state" in result.stderr
    assert "pnext: probability of each next state" in result.stdout
    assert "credible intervals, posterior medians" in result.stdout
    # The printed median of P(next = a | leaving b) is the median over the saved draws.
    tree = az.from_netcdf(out)
    theta = tree["posterior"]["theta"].values.reshape(-1, 4)
    rate = np.exp(theta)  # a-b, b-a, b-c, c-a
    median = np.median(rate[:, 1] / (rate[:, 1] + rate[:, 2]))
    assert f"{median:.6g}" in result.stdout
