# msm 1.7: after-fit outputs of the msm manual's misclassification model of cav (a hidden
# Markov model; the outputs are functions of the latent chain's Q).
#
#   Rscript tests/models/msm/cav_misc_outputs.R > tests/models/msm/cav_misc_outputs.json
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
Qm <- rbind(c(0, 0.148, 0, 0.0171), c(0, 0, 0.202, 0.081), c(0, 0, 0, 0.126), c(0, 0, 0, 0))
E <- rbind(c(0, 0.1, 0, 0), c(0.1, 0, 0.1, 0), c(0, 0.1, 0, 0), c(0, 0, 0, 0))
fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = Qm, ematrix = E,
           deathexact = 4, obstrue = firstobs)
q <- qmatrix.msm(fit, ci = "none")
cat(toJSON(list(
  minus2loglik = fit$minus2loglik,
  log_rates = log(q[Qm > 0][order(row(q)[Qm > 0], col(q)[Qm > 0])]),
  pnext = unname(unclass(pnext.msm(fit, ci = "none")$estimates)),
  totlos = unname(totlos.msm(fit)),
  efpt = unname(efpt.msm(fit, tostate = 4)),
  ppass = unname(unclass(ppass.msm(fit, tot = 5)))
), digits = NA, matrix = "rowmajor"))
