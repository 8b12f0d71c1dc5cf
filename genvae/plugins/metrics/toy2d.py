"""2-D metrics (KL, JSD, grid-normalized ELBO): filled in by the 2-D evaluation suite."""
