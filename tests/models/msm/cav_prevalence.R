# msm 1.7: expected prevalence percentages on cav with normal-approximation intervals.
#
#   Rscript tests/models/msm/cav_prevalence.R > tests/models/msm/cav_prevalence.json
#
# prevalence.msm(fit, times, ci = "normal", B = 10000, seed 1): the "Expected percentages"
# (100 pi0 P(t), pi0 the subjects' first states) and their 2.5% and 97.5% quantiles.
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
cav_q <- rbind(c(0, 0.25, 0, 0.25), c(0.166, 0, 0.166, 0.166), c(0, 0.25, 0, 0.25), c(0, 0, 0, 0))
Q0 <- crudeinits.msm(state ~ years, PTNUM, data = cav, qmatrix = cav_q)
fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = Q0, deathexact = 4)
times <- c(2, 6, 10, 14)
set.seed(1)
p <- prevalence.msm(fit, times = times, ci = "normal", B = 10000)[["Expected percentages"]]
cat(toJSON(list(times = times, estimate = unname(p$estimates), lower = unname(p$ci[, , 1]),
                upper = unname(p$ci[, , 2])), digits = NA, matrix = "rowmajor"))
