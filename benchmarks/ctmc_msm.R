# msm side of benchmarks/ctmc_fit.py (the peer for linest's CTMC fits).
#
#   Rscript benchmarks/ctmc_msm.R cav-fit
#       one msm fit of cav (4 states, deathexact = 4) printed as msm prints it: the
#       whole-process peer of `linest fit models/cav.toml`
#   Rscript benchmarks/ctmc_msm.R cav-bench FITS EVALS THETA
#       FITS timed fits after one warm-up fit, then EVALS timed calls each of msm's own
#       likelihood (msm:::lik.msm) and gradient (msm:::deriv.msm) at THETA (log-rates,
#       comma-separated, in the order 1-2,1-4,2-1,2-3,2-4,3-2,3-4); JSON on the last line
#   Rscript benchmarks/ctmc_msm.R cav-misc-bench FITS
#       FITS timed fits each (after a warm-up fit) of cav with misclassification (the msm
#       manual's example), with pci = c(5, 10), and with survivors' last state censored
#   Rscript benchmarks/ctmc_msm.R csv PATH NSTATES FITS
#       birth-death chain on NSTATES states (i -> i+1, i+1 -> i, last state absorbing),
#       panel data in PATH (columns subject, time, state); FITS timed fits; JSON
#
# Fits use crude initial values from crudeinits.msm and msm's defaults otherwise (optim
# BFGS with msm's analytic gradient, then the covariance from the Hessian).

suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
mode <- if (length(args)) args[[1]] else "cav-fit"

cav_q <- rbind(
  c(0, 0.25, 0, 0.25),
  c(0.166, 0, 0.166, 0.166),
  c(0, 0.25, 0, 0.25),
  c(0, 0, 0, 0)
)

fit_cav <- function() {
  Q0 <- crudeinits.msm(state ~ years, PTNUM, data = cav, qmatrix = cav_q)
  msm(state ~ years, subject = PTNUM, data = cav, qmatrix = Q0, deathexact = 4)
}

elapsed <- function(expr) unname(system.time(expr)[["elapsed"]])

emit <- function(x) cat(toJSON(x, auto_unbox = TRUE, digits = NA), "\n", sep = "")

versions <- function() {
  list(R = R.version.string, msm = as.character(packageVersion("msm")))
}

if (mode == "cav-fit") {
  x <- fit_cav()
  print(x)
  cat("-2 log-likelihood:", format(x$minus2loglik, digits = 10), "\n")
} else if (mode == "cav-bench") {
  fits <- as.integer(args[[2]])
  evals <- as.integer(args[[3]])
  theta <- as.numeric(strsplit(args[[4]], ",")[[1]])
  x <- fit_cav() # warm-up (byte-compilation, first-touch allocations)
  seconds <- numeric(fits)
  for (i in seq_len(fits)) seconds[i] <- elapsed(x <- fit_cav())

  lik <- function() {
    msm:::lik.msm(theta, msmdata = x$data, qmodel = x$qmodel, qcmodel = x$qcmodel,
                  cmodel = x$cmodel, hmodel = x$hmodel, paramdata = x$paramdata)
  }
  grad <- function() {
    msm:::deriv.msm(theta, msmdata = x$data, qmodel = x$qmodel, qcmodel = x$qcmodel,
                    cmodel = x$cmodel, hmodel = x$hmodel, paramdata = x$paramdata)
  }
  both <- function() list(lik(), grad())
  timed <- bench::mark(lik = lik(), deriv = grad(), both = both(),
                       iterations = evals, check = FALSE, filter_gc = FALSE)
  emit(c(versions(), list(
    fit_seconds = seconds,
    minus2loglik = x$minus2loglik,
    fn_evaluations = unname(x$opt$counts[["function"]]),
    gr_evaluations = unname(x$opt$counts[["gradient"]]),
    converged = x$opt$convergence == 0,
    estimates = unname(x$estimates),
    lik_value = lik(), # -2 log-likelihood at theta
    lik_gradient = grad(), # its gradient
    lik_seconds = as.numeric(timed$median[[1]]),
    deriv_seconds = as.numeric(timed$median[[2]]),
    both_seconds = as.numeric(timed$median[[3]])
  )))
} else if (mode == "cav-misc-bench") {
  # The msm manual's misclassification model, then pci = c(5, 10), survivors' last visit
  # censored (99 = state 1, 2 or 3), the manual's fev hmodel example, a two-phase state
  # 1 on cav and measurement error on aneur (tests/models/msm/aneur_misc.R), each fitted
  # FITS times after a warm-up fit.
  fits <- as.integer(args[[2]])
  Qm <- rbind(c(0, 0.148, 0, 0.0171), c(0, 0, 0.202, 0.081), c(0, 0, 0, 0.126), c(0, 0, 0, 0))
  E <- rbind(c(0, 0.1, 0, 0), c(0.1, 0, 0.1, 0), c(0, 0.1, 0, 0), c(0, 0, 0, 0))
  cav2 <- cav
  last <- !duplicated(cav2$PTNUM, fromLast = TRUE) & cav2$state != 4
  cav2$state[last] <- 99
  Q0 <- crudeinits.msm(state ~ years, PTNUM, data = cav, qmatrix = cav_q)
  runs <- list(
    misclassification = function() msm(state ~ years, subject = PTNUM, data = cav,
      qmatrix = Qm, ematrix = E, deathexact = 4, obstrue = firstobs),
    pci = function() msm(state ~ years, subject = PTNUM, data = cav, qmatrix = Q0,
      deathexact = 4, pci = c(5, 10)),
    censor = function() msm(state ~ years, subject = PTNUM, data = cav2, qmatrix = Q0,
      deathexact = 4, censor = 99, censor.states = c(1, 2, 3)),
    `fev outcomes` = function() msm(fev ~ days, subject = ptnum, data = fev,
      qmatrix = rbind(c(0, exp(-6), exp(-9)), c(0, 0, exp(-6)), c(0, 0, 0)), deathexact = 3,
      hmodel = list(hmmNorm(mean = 100, sd = 16), hmmNorm(mean = 54, sd = 18), hmmIdent(999)),
      hcovariates = list(~acute, ~acute, NULL), hcovinits = list(-8, -8, NULL),
      hconstraint = list(acute = c(1, 1))),
    `phase-type` = function() msm(state ~ years, subject = PTNUM, data = cav, qmatrix = cav_q,
      deathexact = 5, phase.states = 1, control = list(maxit = 10000, fnscale = 4000)),
    aneurysm = function() msm(state ~ age, subject = ptnum, data = aneur,
      qmatrix = rbind(c(0, 0.05, 0, 0), c(0, 0, 0.05, 0), c(0, 0, 0, 0.05), c(0, 0, 0, 0)),
      ematrix = rbind(c(0, 0.1, 0, 0), c(0.1, 0, 0.1, 0), c(0, 0.1, 0, 0.1), c(0, 0, 0.1, 0)),
      control = list(maxit = 10000, fnscale = 4000, reltol = 1e-12))
  )
  out <- list()
  for (name in names(runs)) {
    x <- runs[[name]]()
    seconds <- numeric(fits)
    for (i in seq_len(fits)) seconds[i] <- elapsed(x <- runs[[name]]())
    out[[name]] <- list(fit_seconds = seconds, minus2loglik = x$minus2loglik,
                        converged = x$opt$convergence == 0)
  }
  emit(c(versions(), out))
} else if (mode == "csv") {
  path <- args[[2]]
  n <- as.integer(args[[3]])
  fits <- as.integer(args[[4]])
  read_seconds <- elapsed(data <- read.csv(path))
  Q <- matrix(0, n, n)
  for (i in seq_len(n - 1)) Q[i, i + 1] <- 1
  for (i in seq_len(n - 2)) Q[i + 1, i] <- 1
  Q0 <- crudeinits.msm(state ~ time, subject, data = data, qmatrix = Q)
  # With -2LL in the 1e5 range the default optim settings overflow on the first line
  # search ("numerical overflow in calculating likelihood"); msm's documented remedy is
  # control = list(fnscale = <size of -2LL>). Take it from one evaluation at the inits
  # (not timed).
  x0 <- msm(state ~ time, subject = subject, data = data, qmatrix = Q0, fixedpars = TRUE)
  scale <- x0$minus2loglik
  seconds <- numeric(fits)
  for (i in seq_len(fits)) {
    seconds[i] <- elapsed(
      x <- msm(state ~ time, subject = subject, data = data, qmatrix = Q0,
               control = list(fnscale = scale, maxit = 10000))
    )
  }
  emit(c(versions(), list(
    fit_seconds = seconds,
    read_seconds = read_seconds,
    fnscale = scale,
    estimates = unname(x$estimates),
    minus2loglik = x$minus2loglik,
    fn_evaluations = unname(x$opt$counts[["function"]]),
    gr_evaluations = unname(x$opt$counts[["gradient"]]),
    converged = x$opt$convergence == 0,
    foundse = isTRUE(x$foundse)
  )))
} else {
  stop("unknown mode ", mode)
}
