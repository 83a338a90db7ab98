"""One music21 corpus file to MIDI: parse, write each tune, verify it loads with notes.

Used by the corpus export (studio.ingest.corpus) and the evaluation sets (studio.ingest.eval_sets).
Each parse and write runs under a time limit, since a few real scores take music21 minutes.
"""

from __future__ import annotations

import contextlib
import copy
import re
import signal
import threading
import time
import warnings
from pathlib import Path

TUNE_TIMEOUT_S = 30  # one tune's MIDI write


def music21():
    """Import music21 quietly (its import warns about optional plotting packages)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import music21
    return music21


def music21_version() -> str:
    return music21().__version__


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``._-``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return name or "untitled"


@contextlib.contextmanager
def _time_limit(seconds: float, what: str):
    """Raise TimeoutError after ``seconds`` (SIGALRM: only in a main thread, else no limit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _alarm(signum, frame):
        raise TimeoutError(f"{what}: gave up after {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _dedupe_context_objects(score) -> None:
    """Give every TimeSignature/KeySignature/MetronomeMark its own object.

    music21's abc reader sometimes puts one TimeSignature object in two measures; its MIDI
    writer then fails ("already found in this Stream") when it moves them to the conductor track.
    """
    seen: set[int] = set()
    for st in list(score.recurse(streamsOnly=True, includeSelf=True)):
        for el in list(st.getElementsByClass(["TimeSignature", "KeySignature", "MetronomeMark"])):
            if id(el) in seen:
                st.replace(el, copy.deepcopy(el))
            else:
                seen.add(id(el))


def _write_verified(score, path: Path) -> int:
    """Write ``score`` as MIDI and return its note count; a file without notes is removed."""
    from symusic import Score

    _dedupe_context_objects(score)
    score.write("midi", fp=str(path))
    try:
        notes = Score(str(path)).note_num()
    except Exception as e:
        path.unlink(missing_ok=True)
        raise ValueError(f"{path.name}: written MIDI does not load in symusic ({e})") from e
    if notes == 0:
        path.unlink(missing_ok=True)
        raise ValueError(f"{path.name}: written MIDI has no notes")
    return notes


def repeats_written_once(score) -> int:
    """Replace every repeat barline, repeat expression (segno, da capo, ...) and volta bracket of
    ``score`` by plain notation, in place, so each written bar plays once; returns how many went.

    music21's MIDI writer expands repeats, and gives up on some real scores ("badly formed
    repeats": Haydn op. 74 no. 1, movements 3 and 4); without their repeats they still write.
    """
    m21 = music21()
    removed = 0
    for measure in score.recurse().getElementsByClass("Measure"):
        for side in ("leftBarline", "rightBarline"):
            if isinstance(getattr(measure, side), m21.bar.Repeat):
                setattr(measure, side, m21.bar.Barline("regular") if side == "rightBarline" else None)
                removed += 1
    for el in list(score.recurse().getElementsByClass(m21.repeat.RepeatExpression)):
        el.activeSite.remove(el)
        removed += 1
    for bracket in list(score.recurse().getElementsByClass(m21.spanner.RepeatBracket)):
        score.remove(bracket, recurse=True)
        removed += 1
    return removed


def _parse_timeout(src: Path) -> float:
    # ~0.35 s per KB of abc on one core, with a wide margin; never under a minute.
    return 60.0 + src.stat().st_size / 1000 * 1.0


def convert_source(src: Path, out_dir: Path, max_tunes: int | None = None, repeats_once: bool = False) -> dict:
    """Convert one corpus file into ``out_dir/<stem>.mid`` or, for an Opus, one file per tune.

    Returns ``{"outputs": [{"file", "notes"}], "failed": [reason, ...], "tunes_attempted",
    "seconds"}``; a file music21 cannot parse gives no outputs and one reason. ``repeats_once``:
    a tune whose repeats music21 cannot expand is written with each bar once
    (``repeats_written_once``; its output says ``"repeats": "written once"``). The evaluation
    sets use it; the pretraining corpus does not, so its recorded pieces stay what they were.
    """
    m21 = music21()
    src, out_dir = Path(src), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    result = {"outputs": [], "failed": [], "tunes_attempted": 0}
    try:
        with warnings.catch_warnings(), _time_limit(_parse_timeout(src), f"{src.name}: parse"):
            warnings.simplefilter("ignore")
            parsed = m21.converter.parse(str(src), forceSource=True)  # forceSource: no pickles
    except Exception as e:
        result["failed"].append(f"{src.name}: music21 cannot parse it ({type(e).__name__}: {e})")
        result["seconds"] = round(time.time() - start, 2)
        return result
    is_opus = isinstance(parsed, m21.stream.Opus)
    scores = list(parsed.scores) if is_opus else [parsed]
    stem = safe_name(src.stem)
    # A tune of an opus (a folk collection) writes in well under a second; one long score (a
    # quartet movement) can take music21 over 30 s on a slow core, so it gets the parse's limit.
    write_limit = TUNE_TIMEOUT_S if is_opus else max(TUNE_TIMEOUT_S, _parse_timeout(src))
    for i, score in enumerate(scores[:max_tunes] if max_tunes is not None else scores):
        name = f"{stem}_{i:04d}.mid" if is_opus else f"{stem}.mid"
        result["tunes_attempted"] += 1
        try:
            with warnings.catch_warnings(), _time_limit(write_limit, f"{src.name} #{i}: MIDI write"):
                warnings.simplefilter("ignore")
                output = _write_tune(score, out_dir / name, repeats_once)
            result["outputs"].append({"file": name, **output})
        except Exception as e:
            (out_dir / name).unlink(missing_ok=True)
            result["failed"].append(f"{src.name} #{i}: {type(e).__name__}: {e}")
    result["seconds"] = round(time.time() - start, 2)
    return result


def _write_tune(score, path: Path, repeats_once: bool) -> dict:
    try:
        return {"notes": _write_verified(score, path)}
    except music21().repeat.ExpanderException:
        if not repeats_once:
            raise
    path.unlink(missing_ok=True)
    repeats_written_once(score)
    return {"notes": _write_verified(score, path), "repeats": "written once"}
