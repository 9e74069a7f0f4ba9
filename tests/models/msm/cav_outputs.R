# msm 1.7 reference values for linest's CTMC outputs after a fit (tests/models/test_ctmc_outputs.py).
#
#   Rscript tests/models/msm/cav_outputs.R > tests/models/msm/cav_outputs.json
#
# The cav fit of benchmarks/ctmc_msm.R (deathexact = 4, crude initial values), then msm's
# after-fit outputs at its estimates, with msm's normal-approximation intervals
# (ci = "normal": B = 10000 draws from the estimates' normal distribution, seed 1, ten times
# msm's default so that the reference's own Monte Carlo error is about 1%) and, where msm
# offers it, the delta method. totlos and envisits for ever without intervals (msm
# integrates numerically for each draw: hours). Full precision (17 digits).
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
cav_q <- rbind(
  c(0, 0.25, 0, 0.25),
  c(0.166, 0, 0.166, 0.166),
  c(0, 0.25, 0, 0.25),
  c(0, 0, 0, 0)
)
Q0 <- crudeinits.msm(state ~ years, PTNUM, data = cav, qmatrix = cav_q)
fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = Q0, deathexact = 4)
B <- 10000
ci3 <- function(x) list(estimate = unclass(x$estimates), lower = unclass(x$L), upper = unclass(x$U))
rows <- function(m) list(estimate = unname(m[1, ]), lower = unname(m[2, ]), upper = unname(m[3, ]))
set.seed(1); pn <- pnext.msm(fit, ci = "normal", B = B)
pd <- pnext.msm(fit, ci = "delta")
tl <- totlos.msm(fit)
set.seed(1); tl10 <- totlos.msm(fit, tot = 10, ci = "normal", B = B)
tl_from <- totlos.msm(fit, fromt = 2, tot = 10, start = c(0.5, 0.5, 0, 0))
ev <- envisits.msm(fit)
ev10 <- envisits.msm(fit, tot = 10)
set.seed(1); ef <- efpt.msm(fit, tostate = 4, ci = "normal", B = B)
ef3 <- efpt.msm(fit, tostate = 3)
set.seed(1); pp <- ppass.msm(fit, tot = 5, ci = "normal", B = B)
qr <- qratio.msm(fit, ind1 = c(2, 3), ind2 = c(2, 1))
out <- list(
  msm = as.character(packageVersion("msm")),
  minus2loglik = fit$minus2loglik,
  estimates = unname(fit$estimates),
  covariance = unname(fit$covmat),
  qmatrix = unname(qmatrix.msm(fit, ci = "none")),
  pnext_normal = ci3(pn),
  pnext_delta = ci3(pd),
  totlos_inf = unname(tl),
  totlos_10 = rows(tl10),
  totlos_from2_to10_start_half = unname(tl_from),
  envisits_inf = unname(ev),
  envisits_10 = unname(ev10),
  efpt_to4 = rows(ef),
  efpt_to3 = unname(ef3),
  ppass_5 = ci3(pp),
  qratio_23_over_21 = unname(qr)
)
cat(toJSON(out, digits = NA, auto_unbox = TRUE, matrix = "rowmajor"))
