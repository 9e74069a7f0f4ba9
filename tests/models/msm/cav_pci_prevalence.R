# msm 1.7: expected prevalence of cav with piecewise-constant intensities (pci = c(5, 10)),
# from the fit of tests/models/test_hidden_ctmc.py (crude inits, deathexact = 4):
# prevalence.msm at times 0, 3, 5, 7.5, 10, 12, 15 (expected.msm takes P(0, t) piecewise,
# the time period set to each interval's, through pmatrix.piecewise.msm).
#
#   Rscript tests/models/msm/cav_pci_prevalence.R > tests/models/msm/cav_pci_prevalence.json
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
Q <- rbind(c(0, 0.25, 0, 0.25), c(0.166, 0, 0.166, 0.166), c(0, 0.25, 0, 0.25), c(0, 0, 0, 0))
Q0 <- crudeinits.msm(state ~ years, PTNUM, data = cav, qmatrix = Q)
fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = Q0, deathexact = 4,
           pci = c(5, 10))
times <- c(0, 3, 5, 7.5, 10, 12, 15)
prev <- prevalence.msm(fit, times = times)
cat(toJSON(list(minus2loglik = fit$minus2loglik, estimates = unname(fit$estimates),
                times = times, observed = unname(prev$Observed[, 1:4]),
                expected = unname(prev$Expected[, 1:4])),
           digits = NA, auto_unbox = TRUE))
