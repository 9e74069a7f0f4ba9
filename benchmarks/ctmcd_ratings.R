# ctmcd on the rating-migration table (data/ratings.csv = ctmcd::tm_abs), for
# benchmarks/ctmc_fit.py: the EM algorithm (Bladt and Soerensen 2005) with ctmcd's default
# stop (relative change of the log-likelihood < 1e-6) and run much further (< 1e-12), and
# the Gibbs sampler. Prints one JSON object: seconds and the generator of each.
#   Rscript benchmarks/ctmcd_ratings.R data/ratings.csv [gibbs-iterations]
suppressPackageStartupMessages(library(ctmcd))
args <- commandArgs(trailingOnly = TRUE)
path <- if (length(args) >= 1) args[1] else "data/ratings.csv"
gibbs_n <- if (length(args) >= 2) as.integer(args[2]) else 1000L
table <- read.csv(path, check.names = FALSE)
tm <- as.matrix(table[, -1])
rownames(tm) <- table[[1]]
n <- nrow(tm)
gm0 <- matrix(1, n, n)
diag(gm0) <- 0
diag(gm0) <- -rowSums(gm0)
gm0[n, ] <- 0
timed <- function(expr) {
  start <- proc.time()[["elapsed"]]
  value <- force(expr)
  list(value = value, seconds = proc.time()[["elapsed"]] - start)
}
em <- timed(gm(tm, te = 1, method = "EM", gmguess = gm0))
em_tight <- timed(gm(tm, te = 1, method = "EM", gmguess = gm0, eps = 1e-12, niter = 100000))
set.seed(1)
prior <- list(matrix(1, n, n), rep(1, n))  # Gamma(1, 1) on every rate
gs <- timed(gm(tm, te = 1, method = "GS", prior = prior, burnin = 200, niter = gibbs_n,
               conv_pvalue = 0, conv_freq = gibbs_n + 1))
flat <- function(g) as.vector(t(g$par))
cat(sprintf(
  '{"em_seconds": %.4f, "em": [%s], "em_tight_seconds": %.4f, "em_tight": [%s], "gibbs_seconds": %.4f, "gibbs_iterations": %d, "gibbs_mean": [%s], "states": [%s]}\n',
  em$seconds, paste(sprintf("%.17g", flat(em$value)), collapse = ","),
  em_tight$seconds, paste(sprintf("%.17g", flat(em_tight$value)), collapse = ","),
  gs$seconds, gibbs_n, paste(sprintf("%.17g", flat(gs$value)), collapse = ","),
  paste(sprintf('"%s"', rownames(tm)), collapse = ",")
))
