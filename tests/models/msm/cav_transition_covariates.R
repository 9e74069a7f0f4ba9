# msm 1.7: cav with sex on some transitions only (msm's covariates = list("1-2" = ~ sex, ...)).
#
#   Rscript tests/models/msm/cav_transition_covariates.R > cav_transition_covariates.json
#   Rscript tests/models/msm/cav_transition_covariates.R age > cav_time_varying.json
#       (age, recorded at each visit, changes between visits: msm takes its value at the
#       start of each interval, as linest does)
#
# Prints -2 log L at the crude initial values (fixedpars = TRUE; the rates in column-major
# order of the allowed pattern) and at the optimum, and the
# estimates (log-rates, then the effects), for tests/models/test_ctmc_outputs.py.
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
cav_q <- rbind(c(0, 0.25, 0, 0.25), c(0.166, 0, 0.166, 0.166), c(0, 0.25, 0, 0.25), c(0, 0, 0, 0))
Q0 <- crudeinits.msm(state ~ years, PTNUM, data = cav, qmatrix = cav_q)
covs <- list("1-2" = ~sex, "2-3" = ~sex, "3-4" = ~sex)
args <- commandArgs(trailingOnly = TRUE)
control <- list()
if (length(args) && args[[1]] == "age") {  # age changes between visits
  covs <- list("1-2" = ~age, "1-4" = ~age, "2-4" = ~age, "3-4" = ~age)
  control <- list(fnscale = 4000, maxit = 10000)
}
start <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = Q0, deathexact = 4,
             covariates = covs, fixedpars = TRUE)
# fnscale (age only): msm's advice against "numerical overflow" in optim (-2LL ~ 4000)
fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = Q0, deathexact = 4,
           control = control, covariates = covs)
cat(toJSON(list(start = start$minus2loglik, optimum = fit$minus2loglik, crude = Q0[cav_q > 0],
                covmeans = unname(fit$qcmodel$covmeans),
                estimates = unname(fit$estimates)), digits = NA, auto_unbox = TRUE))
