# msm 1.7: the misclassification model of cav (the msm manual's Qm and ematrix, no obstrue)
# with estimated initial-state probabilities (est.initprobs, starting from c(0.9, 0.1, 0,
# 0)) that depend on sex (initcovariates = ~ sex: a logit effect for state 2 against 1).
#
#   Rscript tests/models/msm/cav_misc_initcovariates.R > tests/models/msm/cav_misc_initcovariates.json
#
# -2 log L at the start (fixedpars = TRUE, effect 0) and at msm's optimum, with msm's
# parameter vector and labels.
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
Qm <- rbind(c(0, 0.148, 0, 0.0171), c(0, 0, 0.202, 0.081), c(0, 0, 0, 0.126), c(0, 0, 0, 0))
E <- rbind(c(0, 0.1, 0, 0), c(0.1, 0, 0.1, 0), c(0, 0.1, 0, 0), c(0, 0, 0, 0))
args <- list(formula = state ~ years, subject = quote(PTNUM), data = cav, qmatrix = Qm,
             ematrix = E, deathexact = 4, initprobs = c(0.9, 0.1, 0, 0), est.initprobs = TRUE,
             initcovariates = ~ sex, control = list(maxit = 10000, fnscale = 4000))
start <- do.call(msm, c(args, fixedpars = TRUE))
fit <- do.call(msm, args)
cat(toJSON(list(start = start$minus2loglik, optimum = fit$minus2loglik,
                params = unname(fit$paramdata$params), labels = fit$paramdata$plabs),
           digits = NA, auto_unbox = TRUE))
