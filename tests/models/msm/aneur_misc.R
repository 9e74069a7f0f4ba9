# msm 1.7: aortic aneurysm progression (msm's aneur, Jackson et al. 2003), the four diameter
# grades progressing 1 -> 2 -> 3 -> 4, each recorded as a neighbouring grade by measurement
# error (ematrix on 1-2, 2-1, 2-3, 3-2, 3-4, 4-3), age as the time scale.
#
#   Rscript tests/models/msm/aneur_misc.R > tests/models/msm/aneur_misc.json
#
# -2 log L at the start (fixedpars = TRUE) and at msm's optimum, with its estimates.
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
Q <- rbind(c(0, 0.05, 0, 0), c(0, 0, 0.05, 0), c(0, 0, 0, 0.05), c(0, 0, 0, 0))
E <- rbind(c(0, 0.1, 0, 0), c(0.1, 0, 0.1, 0), c(0, 0.1, 0, 0.1), c(0, 0, 0.1, 0))
args <- list(formula = state ~ age, subject = quote(ptnum), data = aneur, qmatrix = Q,
             ematrix = E, control = list(maxit = 10000, fnscale = 4000, reltol = 1e-12))
start <- do.call(msm, c(args, fixedpars = TRUE))
fit <- do.call(msm, args)
rates <- fit$Qmatrices$baseline[cbind(c(1, 2, 3), c(2, 3, 4))]
misc <- fit$Ematrices$baseline[cbind(c(1, 2, 2, 3, 3, 4), c(2, 1, 3, 2, 4, 3))]
cat(toJSON(list(start = start$minus2loglik, optimum = fit$minus2loglik,
                rates = rates, misclassification = misc,
                converged = fit$opt$convergence == 0), digits = NA, auto_unbox = TRUE))
