# msm 1.7: hidden Markov models with Poisson, binomial, exponential and lognormal outcomes
# (hmmPois, hmmBinom, hmmExp, hmmLNorm) on data/hmm_outcomes/hmm_outcomes.csv (simulated by
# data/hmm_outcomes/simulate.py): a two-state chain 1 <-> 2, each outcome column fitted on
# its own, from the starting values below.
#
#   Rscript tests/models/msm/outcomes_msm.R > tests/models/msm/outcomes_msm.json
#
# Per model: -2 log L at the start (fixedpars = TRUE) and at msm's optimum, and msm's
# parameters (log rates, then each state's outcome parameters on msm's scales).
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
d <- read.csv("data/hmm_outcomes/hmm_outcomes.csv")
Q <- rbind(c(0, 0.25), c(0.25, 0))
models <- list(
  count = list(hmmPois(rate = 1.5), hmmPois(rate = 6)),
  successes = list(hmmBinom(size = 10, prob = 0.3), hmmBinom(size = 10, prob = 0.5)),
  duration = list(hmmExp(rate = 0.8), hmmExp(rate = 0.3)),
  level = list(hmmLNorm(meanlog = 0.2, sdlog = 0.6), hmmLNorm(meanlog = 1.2, sdlog = 0.5))
)
out <- list()
for (name in names(models)) {
  f <- as.formula(paste(name, "~ time"))
  args <- list(formula = f, subject = quote(subject), data = d, qmatrix = Q,
               hmodel = models[[name]], control = list(maxit = 10000))
  start <- do.call(msm, c(args, fixedpars = TRUE))
  fit <- do.call(msm, args)
  out[[name]] <- list(start = start$minus2loglik, optimum = fit$minus2loglik,
                      params = unname(fit$paramdata$params), labels = fit$paramdata$plabs)
}
cat(toJSON(out, digits = NA, auto_unbox = TRUE))
