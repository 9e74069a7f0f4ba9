# msm 1.7: the misclassification model of cav (the msm manual's Qm and ematrix, no obstrue)
# with estimated initial-state probabilities (est.initprobs), starting from c(0.9, 0.1, 0, 0).
#
#   Rscript tests/models/msm/cav_misc_initprobs.R > tests/models/msm/cav_misc_initprobs.json
#
# -2 log L at the start (fixedpars = TRUE) and at msm's optimum, with its initial
# probabilities; and -2 log L of the same model with the initial probabilities fixed at
# c(1, 0, 0, 0), the boundary where linest's maximum lies (msm's est.initprobs fit stops
# 7.4 above it, at p2 = 0.004, and reports convergence).
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
Qm <- rbind(c(0, 0.148, 0, 0.0171), c(0, 0, 0.202, 0.081), c(0, 0, 0, 0.126), c(0, 0, 0, 0))
E <- rbind(c(0, 0.1, 0, 0), c(0.1, 0, 0.1, 0), c(0, 0.1, 0, 0), c(0, 0, 0, 0))
args <- list(formula = state ~ years, subject = quote(PTNUM), data = cav, qmatrix = Qm,
             ematrix = E, deathexact = 4, initprobs = c(0.9, 0.1, 0, 0), est.initprobs = TRUE,
             control = list(maxit = 10000, fnscale = 4000))  # the default maxit stops short
start <- do.call(msm, c(args, fixedpars = TRUE))
fit <- do.call(msm, args)
boundary <- do.call(msm, c(args[setdiff(names(args), c("initprobs", "est.initprobs"))]))
cat(toJSON(list(start = start$minus2loglik, optimum = fit$minus2loglik,
                boundary = boundary$minus2loglik,
                initprobs = unname(fit$hmodel$initprobs[, 1])), digits = NA, auto_unbox = TRUE))
