"""Training: the one loop on Accelerate and its collaborators (data feeding, checkpointing, logging, stop signals, optimizers)."""
