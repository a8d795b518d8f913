"""Fine-tuning tricks: each a small module with its paper link and the reason to use it."""
