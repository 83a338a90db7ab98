"""The on-disk layout: the file and folder names of adapter folders and run folders, in one place.

Adapter folder (``adapters/NAME/``, written by ``python -m studio train``)::

    adapter-best/  adapter-last/       peft weights (safetensors) + tokenizer.json + studio_adapter.json
    epochs/NN/                         every epoch's adapter, with epoch_metrics.json
    checkpoint/                        optimizer, schedule and position, for --resume
    samples/                           seeded samples per epoch (MIDI)
    training_meta.json  tokenizer.json  generation_config.json

Run folder (``runs/STAMP-NAME/``, written by the app's training child)::

    config.json  status.json  metrics.jsonl  log.txt  stop (a flag file)  launch.json  child.out
"""

from __future__ import annotations

# adapter folders
ADAPTER_BEST = "adapter-best"
ADAPTER_LAST = "adapter-last"
WEIGHT_FOLDERS = (ADAPTER_BEST, ADAPTER_LAST)  # preferred order when an adapter has both
EPOCHS = "epochs"
EPOCH_METRICS = "epoch_metrics.json"
EPOCH_SEP = "@epoch"  # "bach-chorales@epoch03": a kept epoch, named as a side of its own
CHECKPOINT = "checkpoint"
SAMPLES = "samples"
TRAINING_META = "training_meta.json"
TOKENIZER = "tokenizer.json"
GENERATION_CONFIG = "generation_config.json"
ADAPTER_META = "studio_adapter.json"  # base, tokenizer fingerprint, studio version

# run folders
RUN_CONFIG = "config.json"
RUN_STATUS = "status.json"
RUN_METRICS = "metrics.jsonl"
RUN_LOG = "log.txt"
RUN_STOP = "stop"
RUN_LAUNCH = "launch.json"
RUN_CHILD_OUT = "child.out"


def training_meta_path(folder):
    """training_meta.json of an adapter given as its folder, its adapter-best/-last, or epochs/NN;
    None when there is none."""
    from pathlib import Path

    folder = Path(folder)
    for candidate in (folder,
                      folder.parent if folder.name in WEIGHT_FOLDERS else None,
                      folder.parent.parent if folder.parent.name == EPOCHS else None):
        if candidate is not None and (candidate / TRAINING_META).is_file():
            return candidate / TRAINING_META
    return None
