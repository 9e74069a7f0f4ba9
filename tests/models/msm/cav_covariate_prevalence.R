# msm 1.7: expected prevalence of cav with covariates, msm's default covariates =
# "population" (expected.msm: subjects grouped by covariate history, each history's
# P(0, t) piecewise, weighted by the numbers counted at t): sex (constant within a
# subject) and sex + cumrej (cumulative rejections, recorded at each visit).
#
#   Rscript tests/models/msm/cav_covariate_prevalence.R > tests/models/msm/cav_covariate_prevalence.json
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
Q <- rbind(c(0, 0.25, 0, 0.25), c(0.166, 0, 0.166, 0.166), c(0, 0.25, 0, 0.25), c(0, 0, 0, 0))
Q0 <- crudeinits.msm(state ~ years, PTNUM, data = cav, qmatrix = Q)
times <- c(0, 3, 5, 7.5, 10, 12, 15)
one <- function(covariates) {
  fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = Q0, deathexact = 4,
             covariates = covariates, control = list(fnscale = 4000, maxit = 10000))
  prev <- prevalence.msm(fit, times = times)
  list(minus2loglik = fit$minus2loglik, estimates = unname(fit$estimates),
       expected = unname(prev$Expected[, 1:4]))
}
cat(toJSON(list(times = times, sex = one(~sex), sex_cumrej = one(~sex + cumrej)),
           digits = NA, auto_unbox = TRUE))
