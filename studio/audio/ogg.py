"""A side's audio as the Compare tab, the Data tab and the API play it: optional, capped in length."""

from __future__ import annotations

from pathlib import Path

RENDER_MAX_SECONDS = 180.0  # cap on rendered audio per side


def render_ogg(score, out_path: Path, soundfont: str | Path | None = None,
               program: int | None = None) -> tuple[Path | None, str]:
    """(path, "") or (None, why): audio is optional, a failed render never fails a comparison."""
    from studio.audio.render import fluidsynth_status, render_score

    ok, why = fluidsynth_status()
    if not ok:
        return None, why
    try:
        return render_score(score, out_path, soundfont, max_seconds=RENDER_MAX_SECONDS, program=program).path, ""
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        return None, f"no audio: {e}"
