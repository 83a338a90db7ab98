"""MIDI → audio through libfluidsynth (pyfluidsynth), driven sample-accurately from Python.

We do not use the ``fluidsynth`` command line or FluidSynth's own MIDI player: we turn a symusic
Score (converted to seconds, so tempo changes are already applied) into a sorted list of MIDI
events and pull audio from one long-lived synth per soundfont between events.
That keeps a loaded soundfont in memory across renders (loading FluidR3_GM takes a while), gives
exact control over length (release tail, ``max_seconds`` cap) and returns numpy arrays directly.

Units: event times are seconds (float), positions in the output are frames (one frame = one
stereo sample pair). Audio is pulled as float32 with libfluidsynth's ``fluid_synth_write_float``
(through pyfluidsynth's loaded library) straight into the output array. pyfluidsynth's
``get_samples`` would give int16 with FluidSynth's dither, whose state carries over between
calls, so two renders of the same score would differ by a few steps; float has no dither and no
int16 clipping inside the synth.

Importing this module never needs libfluidsynth; only rendering does (see ``fluidsynth_status``).
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from symusic import Score

from studio.audio.render_events import (BLOCK, DRUM_CHANNEL, EV_BEND, EV_CC, EV_OFF, EV_ON,  # noqa: F401 (re-exported)
                                        channels_for, is_seconds, piece_seconds, synth_events)
from studio.audio.soundfonts import (ENV_SOUNDFONT, INSTALL_HINT, SOUNDFONT_DIR, SYSTEM_SOUNDFONTS,  # noqa: F401
                                     bundled_soundfont, find_soundfont, list_soundfonts)

OUTPUT_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}

DEFAULT_GAIN = 0.5          # FluidSynth's master gain; 0.2 (its default) is quiet for solo parts
TAIL_SECONDS = 1.0          # let the last notes' release and the reverb ring out
SILENCE_PEAK = 1e-4         # below this (≈3 int16 steps) a render counts as silent
CLIP_PEAK = 0.99            # louder renders are scaled down to this peak rather than clipped
DRUM_BANK = 128             # SoundFont bank that holds GM drum kits
MAX_CHUNK = 1 << 16         # frames per write call when nothing happens in between
WRITE_CHUNK = 1 << 16       # frames per soundfile write (see write_audio)


# ---------------------------------------------------------------- library and soundfont lookup

def fluidsynth_status() -> tuple[bool, str]:
    """(True, version text) when libfluidsynth loads, else (False, reason and install command)."""
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth loads the C library at import time)
    except ModuleNotFoundError as e:
        if e.name != "fluidsynth":
            raise
        return False, f"pyfluidsynth is not installed (`pip install pyfluidsynth`), then {INSTALL_HINT}"
    except (ImportError, OSError) as e:  # pyfluidsynth raises these when libfluidsynth is missing
        return False, f"FluidSynth library not available ({e}); {INSTALL_HINT}"
    if not hasattr(fluidsynth, "Synth"):
        return False, f"the 'fluidsynth' module found is not pyfluidsynth; {INSTALL_HINT}"
    return True, f"pyfluidsynth {getattr(fluidsynth, 'api_version', '?')}"


def _fluidsynth():
    """The pyfluidsynth module, or RuntimeError with the install command."""
    ok, message = fluidsynth_status()
    if not ok:
        raise RuntimeError(f"cannot render audio: {message}")
    import fluidsynth
    return fluidsynth


# ---------------------------------------------------------------- long-lived synths

class _Slot:
    """One loaded synth. ``lock`` serialises renders: a FluidSynth synth is one voice pool and
    its C API is driven from one thread at a time here."""

    def __init__(self, fs, soundfont: Path, sample_rate: int):
        self.soundfont, self.sample_rate = soundfont, sample_rate
        self.lock = threading.Lock()
        self.synth = fs.Synth(gain=DEFAULT_GAIN, samplerate=float(sample_rate))
        self.sfid = self.synth.sfload(str(soundfont))
        if self.sfid is None or self.sfid < 0:
            self.synth.delete()
            raise ValueError(f"{soundfont}: FluidSynth cannot load this soundfont (not a valid .sf2?)")
        self._write = _c_function(fs, "fluid_synth_write_float", ctypes.c_int, ctypes.c_void_p,
                                  ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
        if self._write is None:
            self.synth.delete()
            raise RuntimeError(f"cannot render audio: libfluidsynth lacks fluid_synth_write_float; {INSTALL_HINT}")
        self._set_rate = _c_function(fs, "fluid_synth_set_sample_rate", None, ctypes.c_void_p,
                                     ctypes.c_float)
        self.reset(DEFAULT_GAIN)

    def reset(self, gain: float) -> None:
        """Bring the synth to the same state whatever it rendered before, so renders repeat
        bit for bit: silence, default controllers and programs, fresh voices and effects."""
        self._silence()
        self._condition_voices()
        self._silence()
        if self._set_rate is not None:
            # system_reset clears the reverb's delay lines but not its modulation phase, so the
            # reverb would colour each render differently; re-setting the rate rebuilds it.
            self._set_rate(self.synth.synth, float(self.sample_rate))
            self._scratch()
        self.synth.setting("synth.gain", float(gain))

    def _silence(self) -> None:
        """Voices off, controllers and programs to defaults, and one block rendered so the
        mixer hands the stopped voices back (until then a new note would get a spare voice
        object whose state is older)."""
        self.synth.system_reset()
        self._scratch()

    def _scratch(self, blocks: int = 1) -> None:
        """Render and discard a few blocks (applies queued changes inside the synth)."""
        self.pull(np.empty((blocks * BLOCK, 2), np.float32))

    def _condition_voices(self) -> None:
        """Play every voice of the pool once with fixed notes (a few ms, nothing is kept).

        A FluidSynth voice keeps a little state from the last note it played (its click-free
        amplitude ramp starts from the previous note's level), so without this the first
        milliseconds of notes would differ slightly depending on the previous render.
        """
        polyphony = int(self.synth.get_setting("synth.polyphony") or 256)
        keys = ((ch, key) for ch in range(16) for key in range(128))
        for ch, key in keys:
            if self.synth.get_active_voice_count() >= polyphony:
                break  # every voice is taken; more notes would only log allocation warnings
            if key == 0:
                self.synth.program_select(ch, self.sfid, 0, 0)
            self.synth.noteon(ch, key, 100)
        self._scratch(4)

    def pull(self, out: np.ndarray) -> None:
        """Fill a C-contiguous float32 (frames, 2) view with the next frames (interleaved L/R)."""
        ptr = out.ctypes.data
        self._write(self.synth.synth, len(out), ptr, 0, 2, ptr, 1, 2)

    def delete(self) -> None:
        self.synth.delete()


def _c_function(fs, name: str, restype, *argtypes):
    """A libfluidsynth function from the library pyfluidsynth loaded, or None if it lacks it."""
    func = getattr(getattr(fs, "_fl", None), name, None)
    if func is not None:
        func.restype, func.argtypes = restype, list(argtypes)
    return func


_SLOTS: dict[tuple[str, int], _Slot] = {}
_SLOTS_LOCK = threading.Lock()


def _slot(soundfont: Path, sample_rate: int) -> _Slot:
    """The cached synth for (soundfont, sample_rate); created and loaded on first use."""
    key = (str(soundfont), int(sample_rate))
    with _SLOTS_LOCK:
        if key not in _SLOTS:
            _SLOTS[key] = _Slot(_fluidsynth(), soundfont, int(sample_rate))
        return _SLOTS[key]


def close_synths() -> None:
    """Free every cached synth (and its soundfont memory); the next render loads again."""
    with _SLOTS_LOCK:
        for slot in _SLOTS.values():
            with slot.lock:
                slot.delete()
        _SLOTS.clear()


# ---------------------------------------------------------------- rendering

class Renderer:
    """Renders Scores with one soundfont at one sample rate; cheap to create, synth is shared."""

    def __init__(self, soundfont: str | Path | None = None, sample_rate: int = 44100):
        if not 8000 <= int(sample_rate) <= 96000:
            raise ValueError(f"sample_rate={sample_rate}: FluidSynth supports 8000..96000 Hz")
        self.soundfont = find_soundfont(soundfont)
        self.sample_rate = int(sample_rate)
        self._slot = _slot(self.soundfont, self.sample_rate)

    def render(self, score: Score, max_seconds: float = 600.0, gain: float = DEFAULT_GAIN,
               name: str = "score") -> np.ndarray:
        """float32 (frames, 2) in -1..1: the piece up to ``max_seconds`` plus a release tail.

        ValueError when the result is silent, with guesses at why.
        """
        if not max_seconds > 0:
            raise ValueError(f"max_seconds={max_seconds}: must be > 0")
        if not 0.0 < gain <= 10.0:
            raise ValueError(f"gain={gain}: FluidSynth accepts 0 < gain <= 10")
        sec = score if is_seconds(score) else score.to("second")
        sr = self.sample_rate
        end = min(piece_seconds(sec) + TAIL_SECONDS, float(max_seconds))
        # A whole number of blocks: FluidSynth keeps the unread rest of a block for the next
        # call, which would shift the next render by a few frames.
        n_frames = max(int(np.ceil(end * sr / BLOCK)), 1) * BLOCK
        channels = channels_for(sec)
        events = synth_events(sec, channels, sr, n_frames)
        with self._slot.lock:
            missing = self._prepare(sec, channels, gain)
            audio = self._pull(events, n_frames)
            self._slot.synth.system_reset()  # leave no voice ringing (the full reset is next time)
        _check_not_silent(audio, sec, gain, missing, name)
        peak = float(np.abs(audio).max())
        if peak > CLIP_PEAK:  # too loud for -1..1: scale the whole render down instead of clipping
            audio *= np.float32(CLIP_PEAK / peak)
        return audio

    def _prepare(self, score: Score, channels: list[int], gain: float) -> list[str]:
        """Reset the synth, set gain and one preset per track; returns presets it had to replace."""
        self._slot.reset(gain)
        synth, sfid = self._slot.synth, self._slot.sfid
        missing = []
        for track, ch in zip(score.tracks, channels):
            bank = DRUM_BANK if track.is_drum else 0
            program = int(track.program) & 0x7F
            # Fall back to the bank's first preset (piano / standard kit) rather than silence.
            if synth.program_select(ch, sfid, bank, program) != 0:
                missing.append(f"bank {bank} program {program}")
                synth.program_select(ch, sfid, bank, 0)
        return missing

    def _pull(self, events: list[tuple], n_frames: int) -> np.ndarray:
        """float32 (n_frames, 2), sending each event when the audio reaches its frame."""
        synth = self._slot.synth
        out = np.empty((n_frames, 2), dtype=np.float32)
        pos, i = 0, 0
        while pos < n_frames:
            # send everything due now, then render up to the next event (or a chunk limit)
            while i < len(events) and events[i][0] <= pos:
                _send(synth, events[i])
                i += 1
            nxt = events[i][0] if i < len(events) else n_frames
            n = min(nxt - pos, MAX_CHUNK, n_frames - pos)
            self._slot.pull(out[pos:pos + n])
            pos += n
        return out


def _send(synth, event: tuple) -> None:
    _, kind, ch, a, b = event
    if kind == EV_ON:
        synth.noteon(ch, a, b)
    elif kind == EV_OFF:
        synth.noteoff(ch, a)
    elif kind == EV_CC:
        synth.cc(ch, a, b)
    else:
        synth.pitch_bend(ch, a)


def _check_not_silent(audio: np.ndarray, score: Score, gain: float, missing: list[str],
                      name: str) -> None:
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak >= SILENCE_PEAK:
        return
    notes = [n for t in score.tracks for n in t.notes]
    reasons = []
    if not notes:
        reasons.append("the score has no notes")
    elif all(n.velocity <= 0 for n in notes):
        reasons.append("every note has velocity 0")
    else:
        reasons.append("notes may be outside the soundfont's key range")
        if missing:
            reasons.append("soundfont lacks " + ", ".join(missing))
        if gain < 0.05:
            reasons.append(f"gain {gain} is very low")
        if any(c.number == 7 and c.value == 0 for t in score.tracks for c in t.controls):
            reasons.append("a track sets volume (CC7) to 0")
    raise ValueError(f"{name}: render is silent (peak {peak:.1e}; " + "; ".join(reasons) + ")")


@dataclass
class RenderResult:
    path: Path
    seconds: float          # audio length, tail included
    sample_rate: int
    peak: float             # max |sample|, -1..1 scale
    rms: float              # over both channels, -1..1 scale
    truncated: bool = False  # the piece was longer than max_seconds and was cut there
    soundfont: Path | None = None


# General MIDI programs a listener can pick for every pitched track (None: as in the file).
INSTRUMENTS = {"as in the file": None, "Piano": 0, "Harpsichord": 6, "Church organ": 19, "Nylon guitar": 24,
               "Violin": 40, "Cello": 42, "Strings (ensemble)": 48, "Choir": 52, "Trumpet": 56,
               "Clarinet": 71, "Flute": 73}


def with_program(score: Score, program: int | None) -> Score:
    """A copy of ``score`` whose pitched tracks all play General MIDI ``program`` (drums stay)."""
    if program is None:
        return score
    if not 0 <= int(program) <= 127:
        raise ValueError(f"program must be a General MIDI program 0..127, got {program}")
    out = score.copy()
    for track in out.tracks:
        if not track.is_drum:
            track.program = int(program)
    return out


def passage(score: Score, start_s: float, end_s: float) -> Score:
    """Seconds ``start_s``..``end_s`` of ``score``, shifted to start at 0 (a copied passage)."""
    sec = score.to("second") if not is_seconds(score) else score.copy()
    clipped = sec.clip(float(start_s), float(end_s), clip_end=True)
    return clipped.shift_time(-float(start_s))


def render_to_array(score: Score, soundfont: str | Path | None = None, sample_rate: int = 44100,
                    max_seconds: float = 600.0, gain: float = DEFAULT_GAIN,
                    name: str = "score") -> tuple[np.ndarray, int]:
    """(float32 array of shape (frames, 2), sample_rate). See ``Renderer.render``."""
    renderer = Renderer(soundfont, sample_rate)
    return renderer.render(score, max_seconds=max_seconds, gain=gain, name=name), renderer.sample_rate


def render_score(score: Score, out_path: str | Path, soundfont: str | Path | None = None,
                 sample_rate: int = 44100, max_seconds: float = 600.0, gain: float = DEFAULT_GAIN,
                 name: str | None = None, program: int | None = None) -> RenderResult:
    """Render to ``out_path``; the suffix (.wav, .flac, .ogg) picks the format. ``program``: every
    pitched track played by this General MIDI instrument (None: the file's own)."""
    out_path = Path(out_path)
    score = with_program(score, program)
    _audio_format(out_path)  # fail before rendering, not after
    renderer = Renderer(soundfont, sample_rate)
    audio = renderer.render(score, max_seconds, gain, name or out_path.name)
    write_audio(audio, renderer.sample_rate, out_path)
    return RenderResult(
        path=out_path,
        seconds=len(audio) / renderer.sample_rate,
        sample_rate=renderer.sample_rate,
        peak=float(np.abs(audio).max()),
        rms=float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))),
        truncated=piece_seconds(score) > max_seconds,
        soundfont=renderer.soundfont,
    )


def render_file(midi_path: str | Path, out_path: str | Path, soundfont: str | Path | None = None,
                sample_rate: int = 44100, max_seconds: float = 600.0,
                gain: float = DEFAULT_GAIN, program: int | None = None) -> RenderResult:
    """Load a MIDI file and render it; errors name the MIDI file."""
    from studio.ingest.midi import load_score  # ValueError naming the file when it can't be read

    midi_path = Path(midi_path)
    if not midi_path.is_file():
        raise FileNotFoundError(f"{midi_path}: MIDI file not found")
    score = load_score(midi_path)
    return render_score(score, out_path, soundfont, sample_rate, max_seconds, gain, name=midi_path.name,
                        program=program)


def write_audio(audio: np.ndarray, sample_rate: int, out_path: str | Path) -> Path:
    """Write float (frames, 2) audio; written to a temp name then renamed, so a browser or a
    second process never reads a half-written file."""
    import soundfile as sf

    out_path = Path(out_path)
    fmt = _audio_format(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.{os.getpid()}.{threading.get_ident()}{out_path.suffix}")
    try:
        data = audio
        if fmt[1] == "PCM_16":  # rounded, not dithered, so the same render gives the same file
            data = np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)
        with sf.SoundFile(str(tmp), "w", sample_rate, data.shape[1], fmt[1], format=fmt[0]) as f:
            # In pieces: libvorbis allocates its work buffer on the stack per write call, and
            # one call with more than ~90 s of audio crashes the whole process (segfault).
            for start in range(0, len(data), WRITE_CHUNK):
                f.write(data[start:start + WRITE_CHUNK])
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def _audio_format(path: Path) -> tuple[str, str]:
    """(soundfile format, subtype) for the suffix, or ValueError naming the file."""
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported audio suffix (use {', '.join(OUTPUT_FORMATS)})")
    return fmt
