"""Training in several processes under Hugging Face Accelerate, and a no-op for one process.

``accelerate launch --multi_gpu --num_processes N -m studio train …`` starts N copies of the CLI
(on a machine without GPUs they run on the CPU and talk over gloo). Each process then:

* trains a DDP-wrapped copy of the model (gradients are averaged at every optimizer step; the
  micro-batches that only accumulate skip that exchange);
* reads its own share of each epoch's shuffled windows (every window once per epoch across
  the processes; the shorter shares are topped up from the start so all take the same steps);
* takes every decision that ends or saves something together with the others (stop flag, time
  limit, checkpoint due), so no process waits at a collective the others never reach;
* leaves writing (adapters, checkpoints, samples, meta) and progress events to the main process.

``--batch-size`` and ``--grad-accum-steps`` are per process: N processes see N× the sequences per
optimizer step and take N× fewer steps per epoch.
With one process (no launcher), ``Dist`` has no Accelerator and every method is the identity.
"""

from __future__ import annotations

import contextlib
import os

import torch


class Dist:
    def __init__(self, accelerator=None):
        self.acc = accelerator
        self.world = accelerator.num_processes if accelerator else 1
        self.rank = accelerator.process_index if accelerator else 0
        self.is_main = self.rank == 0

    @classmethod
    def from_env(cls, device_pref: str) -> "Dist":
        """An Accelerator only when a launcher started several processes (WORLD_SIZE > 1)."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls(None)
        from accelerate import Accelerator

        return cls(Accelerator(cpu=device_pref == "cpu"))

    @property
    def device(self) -> torch.device | None:
        return self.acc.device if self.acc else None

    def describe(self) -> dict:
        return {"num_processes": self.world,
                "backend": str(self.acc.distributed_type) if self.acc else "single process"}

    # --- model -------------------------------------------------------------------------------

    def wrap(self, model):
        """DDP around the model (only its trainable LoRA weights are synchronised)."""
        return self.acc.prepare_model(model) if self.acc else model

    def unwrap(self, model):
        return self.acc.unwrap_model(model) if self.acc else model

    def no_sync(self, model, accumulating: bool):
        """Skip the gradient exchange on micro-batches that only accumulate."""
        if self.acc and accumulating:
            return self.acc.no_sync(model)
        return contextlib.nullcontext()

    # --- data --------------------------------------------------------------------------------

    def shard(self, order: list[int]) -> list[int]:
        """This process's share of an epoch's order; equal lengths, topped up from the start."""
        if self.world == 1:
            return order
        per = -(-len(order) // self.world)
        padded = order + order[: per * self.world - len(order)]
        return padded[self.rank::self.world]

    def main_first(self):
        """Main process first (fills the token cache), the others after (read it)."""
        return self.acc.main_process_first() if self.acc else contextlib.nullcontext()

    # --- agreement ---------------------------------------------------------------------------

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over the processes (one all-reduce for several numbers)."""
        if not self.acc:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.acc.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        return bool(flag) if not self.acc else self.sum([float(bool(flag))])[0] > 0

    def broadcast(self, obj):
        """The main process's ``obj`` on every process."""
        if not self.acc:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def wait(self) -> None:
        if self.acc:
            self.acc.wait_for_everyone()
