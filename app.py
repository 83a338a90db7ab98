"""MIDI LoRA Studio: ``python app.py [--port N] [--host H] [--base NAME_OR_FOLDER]``.

Opens on http://127.0.0.1:7860 (0.0.0.0 on a Hugging Face Space). The port comes from --port or
GRADIO_SERVER_PORT; the base from --base or STUDIO_BASE, else the hub base when it loads, else
the bundled pocket base. Everything else lives in studio/ (engine) and studio/ui/ (layout).
"""

from __future__ import annotations

from studio.service import zerogpu  # noqa: F401  (first: on ZeroGPU `spaces` must patch torch before anything imports it)

import argparse
import logging
import os

from studio.ui.blocks import build_demo, launch, make_settings, preload


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME")
                   or ("0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1"))
    p.add_argument("--base", default=None, help="hub id, 'pocket' or a local model folder")
    p.add_argument("--no-preload", action="store_true", help="load the base on first use, not at start")
    return p.parse_args(argv)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    settings = make_settings(args.base)
    if not args.no_preload:
        preload(settings)
    launch(build_demo(settings), settings, args.host, args.port)


if __name__ == "__main__":
    main()
