"""``python -m studio <augment|train|generate|render|eval|pretrain-base|infill>``: the guide's commands.

Flags and defaults follow ../shared/seed/LORA_TRAINING_GUIDE.md; each command fills the same
dataclass the UI fills (studio/config.py). Errors print one line naming the file and the reason.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from studio.config import (AugmentConfig, GenerateConfig, TrainConfig, add_config_flags, add_sampling_flags,
                           config_from_args, sampling_from_args)

EPOCH_SAMPLES = "sample"  # train's --sample-temperature, --sample-top-p, ... fill TrainConfig.sampling


def _augment(args) -> int:
    from studio.ingest.augment import augment_dir

    if not args.input_dir or not args.output_dir:
        raise ValueError("augment needs --input-dir and --output-dir")
    cfg = AugmentConfig(args.input_dir, args.output_dir, args.transpose, args.tempo, args.include_original)
    summary = augment_dir(cfg)
    for name, why in summary.skipped:
        print(f"skipped {name}: {why}")
    for name, why in summary.failed:
        print(f"failed  {name}: {why}")
    print(f"augment: {summary.line()} -> {cfg.output_dir}")
    for line in summary.album.describe().splitlines():  # what the model will not hear (drums, instruments)
        print(f"album: {line}")
    return 0


def _train_config(args) -> TrainConfig:
    if args.config:
        return TrainConfig.load(args.config)
    if not args.data_dir or not args.output_dir:
        raise ValueError("train needs --data-dir and --output-dir (or --config FILE)")
    return config_from_args(TrainConfig, args, sampling=sampling_from_args(args, prefix=EPOCH_SAMPLES))


def _train(args) -> int:
    from studio.training.cli_progress import TrainProgress
    from studio.training.events import describe
    from studio.training.train import done_event, train

    cfg = _train_config(args)
    if args.dry_run:  # the estimate only: nothing is trained and nothing is written to the output folder
        from studio.training.estimate import estimate

        print(estimate(cfg).describe())
        return 0
    if args.run_dir:  # child process of the app: events go to the run folder
        from studio.service.runs import RunWriter

        with RunWriter(args.run_dir) as writer:
            train(cfg, writer.on_event, writer.should_stop)
        return 0
    with TrainProgress() as progress:
        meta = train(cfg, progress.on_event)
    print(describe(done_event(meta, Path(cfg.output_dir))))  # names only the folders that were written
    return 0


def _generate(args) -> int:
    from studio.model.generate import run

    cfg = config_from_args(GenerateConfig, args)
    gen = run(cfg)
    for note in gen.notes:
        print(f"note: {note}")
    info = gen.info()
    print(f"wrote {cfg.output}: {info['notes']} notes, {info['music_seconds']} s of music, "
          f"{info['new_tokens']} tokens in {info['seconds']} s ({info['tokens_per_s']} tok/s), seed {gen.seed}")
    if cfg.audio:
        print(f"wrote {cfg.audio}")
    return 0


def _render(args) -> int:
    from studio.audio.render import render_file

    res = render_file(args.input, args.output, soundfont=args.soundfont, max_seconds=args.max_seconds,
                      program=args.program)
    cut = " (truncated at the duration cap)" if getattr(res, "truncated", False) else ""
    print(f"wrote {res.path}: {res.seconds:.1f} s, peak {res.peak:.3f}{cut}")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a LoRA adapter on a folder of MIDI files")
    p.add_argument("--config", help="a TrainConfig JSON file (instead of the flags)")
    p.add_argument("--run-dir", help=argparse.SUPPRESS)  # used by the app's child process
    # CLI-only, not part of the recipe (TrainConfig): it says how long the recipe would take here
    p.add_argument("--dry-run", action="store_true", help="print the tokens, steps and expected minutes per "
                   "epoch and in all on this machine (a few measured steps, cached), without training")
    add_config_flags(p, TrainConfig, required_later=("data_dir", "output_dir"))
    group = p.add_argument_group("epoch samples", "how the samples after each epoch are drawn "
                                 "(their length: --sample-tokens; their seeds: --seed, --seed + 1, ...)")
    add_sampling_flags(group, skip=("max_new_tokens", "seed"), prefix=EPOCH_SAMPLES)


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="sample a MIDI file from the base model or base + adapter")
    add_config_flags(p, GenerateConfig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m studio", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("augment", help="transpose and tempo-scale a folder of MIDI files")
    add_config_flags(a, AugmentConfig, required_later=("input_dir", "output_dir"))
    _add_train(sub)
    _add_generate(sub)
    r = sub.add_parser("render", help="render a MIDI file to audio with FluidSynth")
    r.add_argument("input")
    r.add_argument("--output", required=True, help=".wav, .ogg or .flac")
    r.add_argument("--soundfont", default=None, help="a .sf2 file (default: soundfonts/, the system's GM font, TimGM6mb)")
    r.add_argument("--program", type=int, default=None,
                   help="General MIDI program for every pitched track (0 piano, 40 violin, 48 strings, 52 choir)")
    r.add_argument("--max-seconds", type=float, default=600.0, help="duration cap")
    for name, mod in EXTRA_COMMANDS.items():
        __import__(mod, fromlist=["add_parser"]).add_parser(sub)
    return parser


# Commands that live in their own modules: each exposes add_parser(sub) setting func=.
EXTRA_COMMANDS: dict[str, str] = {"pretrain-base": "studio.training.pretrain", "eval": "studio.evaluation.evaluate",
                                  "base-report": "studio.evaluation.base_report", "infill": "studio.model.infill"}
HANDLERS = {"augment": _augment, "train": _train, "generate": _generate, "render": _render}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    handler = HANDLERS.get(args.command) or getattr(args, "func", None)
    try:
        return handler(args)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
