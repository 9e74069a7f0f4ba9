# msm 1.7: the msm manual's hidden Markov model with normal outcomes on the fev data (FEV1
# of lung transplant recipients; states 1 and 2 BOS-free and BOS with normal FEV1, 3 death
# recorded as 999 at an exact time), without and with the acute-infection covariate on the
# means (one effect shared by both states: hconstraint).
#
#   Rscript tests/models/msm/fev_hmm.R > tests/models/msm/fev_hmm.json
#
# -2 log L at the start (fixedpars = TRUE) and at msm's optimum, with msm's parameters in
# its order (qbase log rates, then per state mean and log sd, the identity code, the
# covariate effects) and the time of the fit.
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
three.q <- rbind(c(0, exp(-6), exp(-9)), c(0, 0, exp(-6)), c(0, 0, 0))
hmodel1 <- list(hmmNorm(mean = 100, sd = 16), hmmNorm(mean = 54, sd = 18), hmmIdent(999))
base <- list(formula = fev ~ days, subject = quote(ptnum), data = fev, qmatrix = three.q,
             deathexact = 3, hmodel = hmodel1)
acute <- c(base, list(hcovariates = list(~acute, ~acute, NULL), hcovinits = list(-8, -8, NULL),
                      hconstraint = list(acute = c(1, 1))))
summary_of <- function(args) {
  start <- do.call(msm, c(args, fixedpars = TRUE))
  seconds <- system.time(fit <- do.call(msm, args))[["elapsed"]]
  list(start = start$minus2loglik, optimum = fit$minus2loglik,
       params = unname(fit$paramdata$params), labels = fit$paramdata$plabs,
       seconds = seconds)
}
cat(toJSON(list(plain = summary_of(base), acute = summary_of(acute)), digits = NA,
           auto_unbox = TRUE))
