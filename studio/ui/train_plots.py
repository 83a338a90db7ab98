"""The Train tab's live plot: losses over optimizer steps, and per epoch the samples' copy rate,
texture gap and groove distance to the album (beside the artist's own groove distance). Drawn with matplotlib (Agg) from a run folder's events."""

from __future__ import annotations

from studio.service import jobs


def loss_series(view: jobs.RunView | None) -> dict[str, list[tuple[float, float]]]:
    """Train loss per optimizer step, validation loss and samples' copy rate per epoch
    (validation at the epoch's last step, so both losses share the step axis)."""
    if view is None:
        return {"train": [], "validation": [], "copy": [], "texture": [], "groove": [], "artist_groove": None}
    return {
        "train": [(e["step"], e["loss"]) for e in view.of_type("step")],
        "validation": [(e["step"], e["val_loss"]) for e in view.of_type("epoch")],
        "copy": [(e["epoch"], e["copy_rate"]) for e in view.of_type("epoch") if e.get("copy_rate") is not None],
        "texture": [(e["epoch"], e["texture_gap"]) for e in view.of_type("epoch") if e.get("texture_gap") is not None],
        "groove": [(e["epoch"], e["groove_distance"]) for e in view.of_type("epoch")
                   if e.get("groove_distance") is not None],
        # how far the artist's training pieces sit from its held-out ones: the yardstick for "close"
        "artist_groove": next((e["artist_groove_distance"] for e in reversed(view.of_type("epoch"))
                               if e.get("artist_groove_distance") is not None), None),
    }


def loss_figure(view: jobs.RunView | None):
    """The live plot: losses over optimizer steps; beside it, per epoch, the samples' copy rate and
    their texture gap to the album (0 = the artist's notes/s, voices and span)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    data = loss_series(view)
    if not data["train"] and not data["validation"]:
        return None
    fig = Figure(figsize=(7.5, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax, cx = fig.subplots(1, 2, width_ratios=[3, 1])
    if data["train"]:
        ax.plot(*zip(*data["train"]), color="#6366f1", linewidth=1.2, label="train")
    if data["validation"]:
        ax.plot(*zip(*data["validation"]), color="#f59e0b", marker="o", linewidth=1.8, label="validation")
    ax.set(xlabel="optimizer step", ylabel="loss (cross-entropy)", title="Loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    if data["copy"]:
        cx.plot(*zip(*data["copy"]), color="#dc2626", marker="o", label="copy rate")
    if data["texture"]:
        cx.plot(*zip(*data["texture"]), color="#059669", marker="s", label="texture gap")
    if data["groove"]:
        cx.plot(*zip(*data["groove"]), color="#7c3aed", marker="^", label="groove distance")
    if data["artist_groove"] is not None:
        cx.axhline(data["artist_groove"], color="#7c3aed", linestyle=":", linewidth=1, label="artist's own groove")
    threshold = float(view.config.get("copy_threshold") or 0)
    if threshold:
        cx.axhline(threshold, color="0.5", linestyle="--", linewidth=1, label="stop above")
    if threshold or data["copy"] or data["texture"] or data["groove"]:
        cx.legend(loc="upper right", fontsize=7)
    # whole epochs, the planned ones: with one point matplotlib would zoom to ±0.05 around it
    done = [int(e.get("epoch", 1)) for e in view.events if e.get("type") == "epoch"]
    epochs = max(done + [int(view.config.get("epochs") or 1)])
    cx.set(xlabel="epoch", ylabel="copy rate / texture / groove", title="Samples vs album", ylim=(0, 1),
           xlim=(0.5, epochs + 0.5))
    cx.grid(alpha=0.3)
    if not data["copy"]:
        cx.text(0.5, 0.8, "after each epoch", ha="center", va="center", transform=cx.transAxes, color="0.5")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if epochs <= 12:  # MaxNLocator falls back to fractions when the range holds one whole number
        cx.set_xticks(range(1, epochs + 1))
    else:
        cx.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig
