"""MIDI in: safe loading in worker processes, zips, augmentation, the music21 corpus and the evaluation sets."""
