"""Evaluation and what a reader sees of it: protocols and metrics run on a trained model, FID statistics, tables across runs, numbers in words, labelled grids."""
