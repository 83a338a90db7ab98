"""Training: data (split, cache, windows), the shared loop, LoRA training, pocket pretraining, typed events."""
