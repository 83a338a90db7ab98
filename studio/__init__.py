"""MIDI LoRA Studio engine: importable and testable without gradio."""

__version__ = "0.1.0"
