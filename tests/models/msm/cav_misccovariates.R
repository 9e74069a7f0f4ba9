# msm 1.7: the msm manual's misclassification model of cav (Qm, ematrix 0.1 on 1-2, 2-1,
# 2-3, 3-2, deathexact = 4, obstrue = firstobs) with covariates on the misclassification
# probabilities (misccovariates = ~ dage + sex: each covariate on every allowed
# misclassification, on the multinomial-logit scale).
#
#   Rscript tests/models/msm/cav_misccovariates.R > tests/models/msm/cav_misccovariates.json
#
# -2 log L at the start (fixedpars = TRUE, effects 0) and at msm's optimum, and msm's
# parameter vector (log rates, logit misclassifications, then the effects: dage on each
# misclassification in ematrix order, then sex).
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
Qm <- rbind(c(0, 0.148, 0, 0.0171), c(0, 0, 0.202, 0.081), c(0, 0, 0, 0.126), c(0, 0, 0, 0))
E <- rbind(c(0, 0.1, 0, 0), c(0.1, 0, 0.1, 0), c(0, 0.1, 0, 0), c(0, 0, 0, 0))
args <- list(formula = state ~ years, subject = quote(PTNUM), data = cav, qmatrix = Qm,
             ematrix = E, deathexact = 4, obstrue = quote(firstobs),
             misccovariates = ~ dage + sex, control = list(maxit = 10000, fnscale = 4000))
start <- do.call(msm, c(args, fixedpars = TRUE))
seconds <- system.time(fit <- do.call(msm, args))[["elapsed"]]
cat(toJSON(list(start = start$minus2loglik, optimum = fit$minus2loglik,
                params = unname(fit$paramdata$params), labels = fit$paramdata$plabs,
                seconds = seconds), digits = NA, auto_unbox = TRUE))
