"""A symusic Score → the sorted MIDI events studio.audio.render feeds to FluidSynth, on a frame grid.

Units: event times in the Score are seconds (tempo already applied); positions are frames (one
stereo sample pair), rounded to FluidSynth's 64-frame blocks.
"""

from __future__ import annotations

from symusic import Score

DRUM_CHANNEL = 9            # GM percussion channel (0-based)
BLOCK = 64                  # FluidSynth renders in 64-frame blocks; events land on block edges

# Sort order of events that fall on the same frame: controls first, note-offs before note-ons so
# a repeated pitch is re-struck instead of being cut by its own previous note's off.
EV_CC, EV_BEND, EV_OFF, EV_ON = 0, 1, 2, 3


def piece_seconds(score: Score) -> float:
    """Time of the last note-off in seconds (0.0 without notes)."""
    sec = score if is_seconds(score) else score.to("second")
    ends = [float(n.end) for t in sec.tracks for n in t.notes]
    return max(ends, default=0.0)


def is_seconds(score: Score) -> bool:
    return "second" in str(score.ttype).lower()


_MELODIC_CHANNELS = [c for c in range(256) if c % 16 != DRUM_CHANNEL]
_DRUM_CHANNELS = list(range(DRUM_CHANNEL, 256, 16))


def channels_for(score: Score) -> list[int]:
    """One MIDI channel per track: drums on 9, 25, 41…, melodic tracks on the others.

    pyfluidsynth's Synth has 256 channels, so tracks share one only past 240 melodic (or 16 drum)
    tracks; then later tracks play with the earlier track's preset.
    """
    channels, n_melodic, n_drum = [], 0, 0
    for track in score.tracks:
        if track.is_drum:
            channels.append(_DRUM_CHANNELS[n_drum % len(_DRUM_CHANNELS)])
            n_drum += 1
        else:
            channels.append(_MELODIC_CHANNELS[n_melodic % len(_MELODIC_CHANNELS)])
            n_melodic += 1
    return channels


def synth_events(score: Score, channels: list[int], sample_rate: int, stop_frame: int) -> list[tuple]:
    """(frame, kind, channel, a, b) sorted; events at or after ``stop_frame`` are dropped.

    Frames are rounded to FluidSynth's 64-frame block grid: the synth applies events only on
    block edges anyway, and grouping them there means fewer, larger write calls.
    """
    def frame(t: float) -> int:
        return int(round(t * sample_rate / BLOCK)) * BLOCK

    events = []
    for track, ch in zip(score.tracks, channels):
        has_cc64 = False
        for c in track.controls:
            events.append((frame(c.time), EV_CC, ch, int(c.number), int(c.value)))
            has_cc64 |= c.number == 64
        if not has_cc64:  # a Score built in code (or decoded) may carry only Pedal objects
            for p in track.pedals:
                events.append((frame(p.time), EV_CC, ch, 64, 127))
                events.append((frame(p.time + p.duration), EV_CC, ch, 64, 0))
        for b in track.pitch_bends:
            events.append((frame(b.time), EV_BEND, ch, int(b.value), 0))
        for n in track.notes:
            if n.velocity <= 0:  # velocity 0 is a note-off in MIDI; it never sounds
                continue
            on, off = frame(n.time), frame(n.time + n.duration)
            events.append((on, EV_ON, ch, int(n.pitch), min(int(n.velocity), 127)))
            events.append((max(off, on + BLOCK), EV_OFF, ch, int(n.pitch), 0))
    events = [e for e in events if e[0] < stop_frame]
    events.sort()
    return events
