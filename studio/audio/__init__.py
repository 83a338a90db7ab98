"""Audio: score to synthesizer events, FluidSynth rendering, piano rolls."""
