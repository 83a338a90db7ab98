"""What the Train tab shows of a run, as text: the time estimate before Start, the progress line,
the run log's lines in words, and the latest epoch's sample. Read-only views of a run folder
(studio.service.jobs); the tab (train_tab) wires them."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from studio.config import renders_dir
from studio.service import jobs
from studio.training.events import describe
from studio.ui.common import fmt_seconds, user_message

MEASURING = ("Measuring this machine… A first estimate for a base and window size loads the base and times a "
             "few training steps (seconds); later ones read the measurement and take a moment.")


def estimate_md(est, notes: list[str] = ()) -> str:
    """An Estimate (studio.training.estimate) as the tab shows it: the total in minutes and the
    tokens per epoch first, then the engine's own lines (``describe``), server paths cut down."""
    minutes = est.total_s / 60
    total = f"{minutes:.0f} minutes" if minutes >= 10 else f"{minutes:.1f} minutes"
    limit = est.epochs_in_limit
    epochs = (f"the time limit stops it after about {limit:.1f} of {est.epochs} epochs" if limit is not None
              else f"{est.epochs} epoch{'s' * (est.epochs != 1)}"
              + (f" planned to fill the {est.budget_minutes:g}-minute budget" if est.budget_minutes else ""))
    head = (f"**About {total}** ({epochs}): {est.tokens_per_epoch:,} tokens per epoch, "
            f"{est.steps_per_epoch} optimizer steps per epoch.")
    lines = [line.strip().rstrip(":") for line in est.describe().splitlines()] + [f"prepared: {n}" for n in notes]
    return head + "\n\n" + "\n".join(f"- {html.escape(user_message(line))}" for line in lines)


# --- showing a run -------------------------------------------------------------------------------


def progress_html(view: jobs.RunView | None) -> str:
    if view is None:
        return "<div class='progress-text'>No training yet. Pick a dataset and press <b>Start</b>.</div>"
    run = html.escape(view.run_dir.name)
    step, data = view.last("step"), view.last("data")
    pct = 100.0 * step["step"] / max(step["total_steps"], 1) if step else 0.0
    if view.state in ("finished", "stopped"):
        # the engine's own words for the end: the reason, the best epoch, and the folders it wrote
        # as read from the disk (a run stopped inside epoch 1 says what adapter-best holds)
        end = view.last("done") or view.last("stopped")
        said = user_message(describe(end).split(": ", 1)[-1]) if end else "see the log"
        text = f"<span class='state-{view.state}'>{view.state.capitalize()}</span>: {html.escape(said)}"
        pct = 100.0 if view.state == "finished" else pct
    elif view.state == "interrupted":
        name = html.escape(Path(view.config.get("output_dir") or "").name)
        how = (f"tick <b>Resume</b> with the adapter name <b>{name}</b> and press Start to continue from its "
               "last checkpoint" if view.resumable else "no checkpoint was saved yet, so start it again")
        text = (f"<span class='state-interrupted'>Interrupted</span>: the training process stopped without "
                f"finishing (killed, out of memory or a restart); {how}.")
    elif view.state == "failed":
        text = f"<span class='state-failed'>Failed</span>: {html.escape(user_message(view.error or 'see the log'))}"
    elif step:
        text = (f"Epoch {step['epoch']}/{step['epochs']} · step {step['step']}/{step['total_steps']} · "
                f"loss {step['loss']:.3f} · ETA {fmt_seconds(step['eta_s'])} · {step['tokens_per_s']:,.0f} tokens/s")
    elif data:
        text = (f"Data ready: {data['pieces']['train']} training / {data['pieces']['val']} validation pieces, "
                f"{data['tokens']['train']:,} tokens, {data['steps_per_epoch']} steps per epoch on {data['device']}. "
                "Training…")
    else:
        text = "Starting: loading the base model and tokenizing the dataset…"
    return (f"<div><b>{run}</b></div><div class='progress-outer'><div class='progress-inner' "
            f"style='width:{pct:.1f}%'></div></div><div class='progress-text'>{text}</div>")


def pretty_line(line: str) -> str:
    """A log line of the run folder (``HH:MM:SS {event json}``) in words."""
    stamp, _, rest = line.partition(" ")
    try:
        e = json.loads(rest)
    except ValueError:
        return line
    if not isinstance(e, dict) or "type" not in e:
        return line
    return f"{stamp} {describe(e)}"


def epoch_sample(view: jobs.RunView, audio: bool) -> tuple[str | None, str | None, str]:
    """(ogg, mid, label) of the newest epoch that wrote a sample, rendered once per run."""
    from studio.audio.ogg import render_ogg
    from studio.ingest.midi import load_score

    for e in reversed(view.of_type("epoch")):
        samples = [Path(p) for p in e.get("samples") or [] if Path(p).is_file()]
        if not samples:
            continue
        out = renders_dir() / "runs" / view.run_dir.name / f"epoch{e['epoch']:02d}"
        mid = out.with_suffix(".mid")
        if not mid.is_file():  # served files must live under renders/
            mid.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(samples[0], mid)
        ogg, why = None, ""
        if audio:
            ogg = out.with_suffix(".ogg")
            if not ogg.is_file():
                ogg, why = render_ogg(load_score(mid), ogg)
        label = f"Sample after epoch {e['epoch']}" + (f" ({why})" if why else "")
        return (str(ogg) if ogg else None), str(mid), label
    return None, None, "Epoch samples appear here after each epoch."
