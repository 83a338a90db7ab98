"""``python -m studio <augment|train|generate|render|eval|pretrain-base>``: the guide's commands.

Flags and defaults follow ../shared/seed/LORA_TRAINING_GUIDE.md; each command fills the same
dataclass the UI fills (studio/config.py). Errors print one line naming the file and the reason.
"""

from __future__ import annotations

import argparse
import logging
import sys

from studio.config import DEFAULT_BASE, AugmentConfig, GenerateConfig, TrainConfig


def _augment(args) -> int:
    from studio.ingest.augment import augment_dir

    cfg = AugmentConfig(args.input_dir, args.output_dir, args.transpose, args.tempo, args.include_original)
    summary = augment_dir(cfg)
    for name, why in summary.skipped:
        print(f"skipped {name}: {why}")
    for name, why in summary.failed:
        print(f"failed  {name}: {why}")
    print(f"augment: {summary.line()} -> {cfg.output_dir}")
    return 0


def _train_config(args) -> TrainConfig:
    if args.config:
        return TrainConfig.load(args.config)
    if not args.data_dir or not args.output_dir:
        raise ValueError("train needs --data-dir and --output-dir (or --config FILE)")
    names = [f for f in TrainConfig.__dataclass_fields__ if hasattr(args, f) and getattr(args, f) is not None]
    return TrainConfig(**{n: getattr(args, n) for n in names})


def _train(args) -> int:
    from studio.training.cli_progress import TrainProgress
    from studio.training.train import train

    cfg = _train_config(args)
    if args.run_dir:  # child process of the app: events go to the run folder
        from studio.service.runs import RunWriter

        with RunWriter(args.run_dir) as writer:
            train(cfg, writer.on_event, writer.should_stop)
        return 0
    with TrainProgress() as progress:
        meta = train(cfg, progress.on_event)
    best = meta.get("best_val_loss")
    if best is None:
        print(f"done: {meta['stop_reason']}; no epoch qualified as best, adapter-best holds epoch "
              f"{meta.get('fallback_best_epoch')} -> {cfg.output_dir}/adapter-best, adapter-last")
    else:
        print(f"done: {meta['stop_reason']}; best val loss {best:.4f} at epoch {meta['best_epoch']} "
              f"-> {cfg.output_dir}/adapter-best, adapter-last")
    return 0


def _generate(args) -> int:
    from studio.model.generate import run

    fields = GenerateConfig.__dataclass_fields__
    cfg = GenerateConfig(**{k: v for k, v in vars(args).items() if k in fields})
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

    res = render_file(args.input, args.output, soundfont=args.soundfont, max_seconds=args.max_seconds)
    cut = " (truncated at the duration cap)" if getattr(res, "truncated", False) else ""
    print(f"wrote {res.path}: {res.seconds:.1f} s, peak {res.peak:.3f}{cut}")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a LoRA adapter on a folder of MIDI files")
    p.add_argument("--config", help="a TrainConfig JSON file (instead of the flags)")
    p.add_argument("--run-dir", help=argparse.SUPPRESS)  # used by the app's child process
    p.add_argument("--data-dir")
    p.add_argument("--output-dir")
    d = TrainConfig("", "")
    p.add_argument("--model-name", default=DEFAULT_BASE, help="hub id, local folder or 'pocket'")
    p.add_argument("--tokenizer-name", default=None, help="tokenizer.json, a folder holding one, or a hub id")
    for flag, typ in [("max-seq-len", int), ("batch-size", int), ("grad-accum-steps", int), ("epochs", int),
                      ("num-workers", int), ("lr", float), ("weight-decay", float), ("warmup-steps", int),
                      ("val-split", float), ("lora-r", int), ("lora-alpha", int), ("lora-dropout", float),
                      ("max-grad-norm", float), ("seed", int), ("patience", int), ("copy-threshold", float),
                      ("samples-per-epoch", int), ("sample-tokens", int), ("max-minutes", float)]:
        p.add_argument(f"--{flag}", type=typ, default=getattr(d, flag.replace("-", "_")))
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--extra-data-dirs", nargs="*", default=[], help="blend these folders into training")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    p.add_argument("--base-dropout", action="store_true",
                   help="keep the frozen base's own dropout while training (slower; LoRA dropout always applies)")
    p.add_argument("--variants", default=d.variants, choices=["all", "rotate"],
                   help="augmented variants: all every epoch (the guide's), or rotate: each piece once per epoch "
                        "in a variant drawn anew each epoch")
    p.add_argument("--precision", default=d.precision, choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 autocast where the processor has bf16 instructions")
    p.add_argument("--use-rslora", action=argparse.BooleanOptionalAction, default=d.use_rslora,
                   help="rank-stabilised LoRA scaling (alpha/sqrt(r))")


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="sample a MIDI file from the base model or base + adapter")
    add_config_flags(p, GenerateConfig, {"device": ["auto", "cpu", "cuda", "mps"]})


def add_config_flags(p, cls, choices: dict | None = None) -> None:
    """One ``--flag`` per dataclass field, its default and help read from the field (one place)."""
    import dataclasses

    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        typ = {"int | None": int, "str | None": str}.get(str(f.type), {"int": int, "float": float, "str": str}.get(str(f.type), str))
        p.add_argument(f"--{f.name.replace('_', '-')}", type=typ, default=default,
                       choices=(choices or {}).get(f.name), help=f.metadata.get("help"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m studio", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("augment", help="transpose and tempo-scale a folder of MIDI files")
    a.add_argument("--input-dir", required=True)
    a.add_argument("--output-dir", required=True)
    a.add_argument("--transpose", type=int, nargs="*", default=[-2, -1, 1, 2], help="semitones")
    a.add_argument("--tempo", type=float, nargs="*", default=[0.9, 1.0, 1.1], help="speed factors")
    a.add_argument("--include-original", action="store_true", help="also write each piece unchanged")
    _add_train(sub)
    _add_generate(sub)
    r = sub.add_parser("render", help="render a MIDI file to audio with FluidSynth")
    r.add_argument("input")
    r.add_argument("--output", required=True, help=".wav, .ogg or .flac")
    r.add_argument("--soundfont", default=None)
    r.add_argument("--max-seconds", type=float, default=600.0, help="duration cap")
    for name, mod in EXTRA_COMMANDS.items():
        __import__(mod, fromlist=["add_parser"]).add_parser(sub)
    return parser


# Commands that live in their own modules: each exposes add_parser(sub) setting func=.
EXTRA_COMMANDS: dict[str, str] = {"pretrain-base": "studio.training.pretrain", "eval": "studio.evaluation.evaluate",
                                  "base-report": "studio.evaluation.base_report"}
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
