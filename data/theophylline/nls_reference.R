d <- as.data.frame(datasets::Theoph)
d$Subject <- as.integer(as.character(d$Subject))
d <- d[order(d$Subject, d$Time), ]
write.csv(d[, c("Subject", "Wt", "Dose", "Time", "conc")], "theophylline.csv", row.names = FALSE)  # data/theophylline.csv
cat("R", R.version.string, "\n")
options(digits = 10)
pooled <- nls(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = d)
print(summary(pooled)$coefficients)
cat("pooled RSS", deviance(pooled), "sigma", summary(pooled)$sigma, "df", df.residual(pooled), "\n")
for (s in sort(unique(d$Subject))) {
  fit <- nls(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = d[d$Subject == s, ])
  co <- summary(fit)$coefficients
  cat(sprintf("subject %d lKe %.8f %.8f lKa %.8f %.8f lCl %.8f %.8f RSS %.8f\n", s, co[1,1], co[1,2], co[2,1], co[2,2], co[3,1], co[3,2], deviance(fit)))
}
