"""Figures: image grids (samples, reconstructions, latent interpolations)."""
