"""Evaluation: copy rate, style distance, texture, held-out loss; adapter and base reports."""
