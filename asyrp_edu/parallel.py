"""Data-parallel f_t training over images: one process per GPU (or CPU), as `accelerate launch` or `torchrun` start.

The launcher describes the group in the environment (RANK, WORLD_SIZE, MASTER_ADDR, …). Every process holds the same
f_t, takes its share of each batch of images, and averages its gradients with the others before the optimiser step,
so the update equals the single-process update on the whole batch. Without a launcher this is a group of one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the group: rank 0 … size − 1."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints and shows progress."""
        return self.rank == 0

    def shard(self, batch: slice | range, length: int) -> list[int]:
        """This process's indices of a batch: every size-th image, starting at rank."""
        indices = list(range(length))[batch]
        if len(indices) < self.size:
            raise ValueError(f"a batch of {len(indices)} images cannot be split over {self.size} processes; choose "
                             f"--n-images and --batch-size so that every batch, the last one too, holds at least "
                             f"{self.size} images (e.g. --n-images a multiple of --batch-size)")
        return indices[self.rank::self.size]

    def average_gradients(self, module: torch.nn.Module, share: float | None = None) -> None:
        """∇θ ← Σ_r share_r · ∇θ_r over processes (all-reduce), so every process takes the same optimiser step.

        share: this process's part of the batch, len(shard) / len(batch) (None: 1 / size). With a loss that is a
        mean over the process's images, the sum is the gradient of the mean over the whole batch, also when the
        batch does not split evenly (16 images over 3 processes: 6, 5 and 5)."""
        if self.size == 1:
            return
        import torch.distributed as dist

        weight = 1.0 / self.size if share is None else float(share)
        for p in module.parameters():
            if p.grad is not None:
                # share_r · ∇θ_r, summed over r by the all-reduce
                p.grad.mul_(weight)
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def broadcast_from_main(self, module: torch.nn.Module) -> None:
        """θ_r ← θ_0 for every parameter and buffer: all processes start from rank 0's module (one handed in by the
        caller may have been initialised differently in each process)."""
        if self.size == 1:
            return
        import torch.distributed as dist

        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def same_everywhere(self, value: int, device: torch.device | None = None) -> bool:
        """Whether every process holds the same whole number (e.g. the batches a resumed run has done); device: where
        the group's tensors live (a GPU for NCCL)."""
        if self.size == 1:
            return True
        import torch.distributed as dist

        # max(v) = −max(−v) = min(v) only when all are equal
        extremes = torch.tensor([value, -value], dtype=torch.float64, device=device)
        dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
        return bool(extremes[0] == -extremes[1])

    def barrier(self) -> None:
        """Wait until every process gets here (e.g. until rank 0 has written a checkpoint)."""
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()


def process_group(device: torch.device | None = None) -> ProcessGroup:
    """Join the group a launcher set up in the environment (NCCL for tensors on a GPU, gloo for tensors on the CPU,
    whatever the machine has; device None: the GPU where there is one); a group of one otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return ProcessGroup()
    import torch.distributed as dist

    on_gpu = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_gpu else "gloo")
    return ProcessGroup(dist.get_rank(), dist.get_world_size())


def local_device() -> torch.device:
    """This process's device: cuda:LOCAL_RANK when GPUs are present, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
