# msm 1.7: cav (the msm manual's model with recovery, death exact) with a two-phase Coxian
# sojourn in state 1 (phase.states = 1; msm's own starting values, phase.inits unset).
#
#   Rscript tests/models/msm/cav_phase.R > tests/models/msm/cav_phase.json
#
# -2 log L at the start (fixedpars = TRUE) and at msm's optimum, with both generators on
# the expanded states (1 [P1], 1 [P2], 2, 3, 4). msm's optimum leaves q(1 [P1] - 2) at
# 0.0117; the maximum lies on the boundary q = 0, which msm reaches when started from its
# optimum with that rate held at 1e-12 ("boundary").
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})
Q <- rbind(c(0, 0.25, 0, 0.25), c(0.166, 0, 0.166, 0.166), c(0, 0.25, 0, 0.25), c(0, 0, 0, 0))
args <- list(formula = state ~ years, subject = quote(PTNUM), data = cav, qmatrix = Q,
             deathexact = 5, phase.states = 1, control = list(maxit = 10000, fnscale = 4000))
start <- do.call(msm, c(args, fixedpars = TRUE))
seconds <- system.time(fit <- do.call(msm, args))[["elapsed"]]
Qb <- fit$Qmatrices$baseline
Qb[1, 3] <- 1e-12
diag(Qb) <- 0
ident <- list(hmmIdent(1), hmmIdent(1), hmmIdent(2), hmmIdent(3), hmmIdent(4))
boundary <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = Qb, deathexact = 5,
                hmodel = ident, fixedpars = 2, control = list(maxit = 10000, fnscale = 4000))
cat(toJSON(list(start = start$minus2loglik, optimum = fit$minus2loglik,
                boundary = boundary$minus2loglik,
                qmatrix_start = unname(start$Qmatrices$baseline),
                qmatrix = unname(fit$Qmatrices$baseline), seconds = seconds),
           digits = NA, auto_unbox = TRUE))
