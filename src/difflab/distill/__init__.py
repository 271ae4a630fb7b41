"""Few-step generation from a trained run (seed 000, 003): progressive distillation, consistency models, reflow."""
