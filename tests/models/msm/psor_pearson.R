# msm 1.7: pearson.msm (Aguirre-Hernandez and Farewell's test for panel data) on psor, the
# progressive 4-state model without covariates and with hieffusn and ollwsdrt on every
# intensity; msm's defaults (3 time groups, 3 interval groups, 3 covariate groups).
#
#   Rscript tests/models/msm/psor_pearson.R > tests/models/msm/psor_pearson.json
#
# Per model: msm's estimates (log rates, then effects), the test row (stat, df.lower,
# p.lower, df.upper, p.upper, and p, msm's "accurate" p-value), and the Observed and
# Expected tables (one row per group, one column per transition).
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
psor.q <- rbind(c(0, 0.1, 0, 0), c(0, 0, 0.1, 0), c(0, 0, 0, 0.1), c(0, 0, 0, 0))
one <- function(fit) {
  p <- pearson.msm(fit)
  list(params = unname(fit$opt$par), minus2loglik = fit$minus2loglik,
       test = as.list(p$test), observed = p$Observed, expected = p$Expected)
}
plain <- msm(state ~ months, subject = ptnum, data = psor, qmatrix = psor.q)
covs <- msm(state ~ months, subject = ptnum, data = psor, qmatrix = psor.q,
            covariates = ~ hieffusn + ollwsdrt)
cat(toJSON(list(plain = one(plain), covariates = one(covs)), digits = NA, auto_unbox = TRUE,
           dataframe = "columns"))
