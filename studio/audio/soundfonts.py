"""Which soundfont a render uses, and which ones a user can choose from.

Order (DESIGN.md): an explicit path, then $STUDIO_SOUNDFONT, then ``soundfonts/*.sf2`` (drop-in
files), then the system's General MIDI fonts, then the TimGM6mb.sf2 that the pretty_midi package
ships (so a fresh install always has one).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from studio.config import REPO_ROOT

ENV_SOUNDFONT = "STUDIO_SOUNDFONT"
SOUNDFONT_DIR = REPO_ROOT / "soundfonts"
# General MIDI soundfonts as packaged by Debian/Ubuntu, Fedora/Arch and Homebrew, best first.
SYSTEM_SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/soundfonts/default.sf2"),
    Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/soundfonts/TimGM6mb.sf2"),
    Path("/opt/homebrew/share/soundfonts/default.sf2"),
    Path("/usr/local/share/soundfonts/default.sf2"),
    Path("/opt/homebrew/share/fluid-synth/sf2/VintageDreamsWaves-v2.sf2"),
    Path("/usr/local/share/fluid-synth/sf2/VintageDreamsWaves-v2.sf2"),
)
INSTALL_HINT = (
    "install it with `sudo apt-get install -y libfluidsynth3 fluid-soundfont-gm` "
    "(Debian/Ubuntu) or `brew install fluid-synth` (macOS)"
)


def bundled_soundfont() -> Path | None:
    """TimGM6mb.sf2 shipped inside the pretty_midi package (found without importing it)."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "TimGM6mb.sf2"
    return path if path.is_file() else None


def find_soundfont(explicit: str | Path | None = None) -> Path:
    """Explicit path, else $STUDIO_SOUNDFONT, else soundfonts/*.sf2, else system GM, else TimGM6mb.

    An explicit path (or env value) that does not exist is an error rather than a silent fallback,
    so a typo does not quietly change the sound.
    """
    for given, origin in ((explicit, "soundfont"), (os.environ.get(ENV_SOUNDFONT), ENV_SOUNDFONT)):
        if given is not None and str(given).strip():
            path = Path(given).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{path}: {origin} file not found")
            return path.resolve()
    if SOUNDFONT_DIR.is_dir():
        dropped = sorted(p for p in SOUNDFONT_DIR.iterdir() if p.suffix.lower() == ".sf2" and p.is_file())
        if dropped:
            return dropped[0].resolve()
    for path in SYSTEM_SOUNDFONTS:
        if path.is_file():
            return path.resolve()
    bundled = bundled_soundfont()
    if bundled is not None:
        return bundled.resolve()
    raise FileNotFoundError(
        f"no soundfont found: set {ENV_SOUNDFONT}, drop a .sf2 into {SOUNDFONT_DIR}, "
        f"or {INSTALL_HINT}"
    )


def list_soundfonts() -> list[Path]:
    """Every soundfont a user can pick, in lookup order, each once: drop-ins, system GM, TimGM6mb."""
    found = []
    if SOUNDFONT_DIR.is_dir():
        found += sorted(p for p in SOUNDFONT_DIR.iterdir() if p.suffix.lower() == ".sf2" and p.is_file())
    found += [p for p in SYSTEM_SOUNDFONTS if p.is_file()]
    bundled = bundled_soundfont()
    if bundled is not None:
        found.append(bundled)
    out, seen = [], set()
    for p in found:
        real = p.resolve()
        if real not in seen:
            seen.add(real)
            out.append(real)
    return out
