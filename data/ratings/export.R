# Exports data/ratings.csv from R's ctmcd package (run from the repo root):
#   Rscript data/ratings/export.R
# ctmcd 1.4.2 (GPL-3), data(tm_abs): "Single Year Corporate Credit Rating Transitions:
# Matrix of Standard and Poor's Global Corporate Rating Transition Frequencies 2000
# (NR Removed)", source European Securities and Markets Authority (CEREP), 2016.
library(ctmcd)
data(tm_abs)
out <- data.frame(from = rownames(tm_abs), tm_abs, check.names = FALSE)
write.csv(out, "data/ratings.csv", row.names = FALSE, quote = FALSE)
