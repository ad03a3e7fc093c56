"""Training on several processes at once: torchrun, data parallelism (DDP), and FSDP for big models.

One command starts N copies of the same program, one per GPU (or per CPU process), on one machine
or on several:

    torchrun --nproc_per_node=4 -m minilm train --size small --out runs/ddp        # 4 GPUs, one machine
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
        -m minilm train --size small --out runs/ddp                                # 2 machines × 8 GPUs

torchrun tells each copy where it stands through environment variables: RANK (0 .. WORLD_SIZE-1),
WORLD_SIZE, LOCAL_RANK (which GPU of its machine it drives), MASTER_ADDR and MASTER_PORT (where the
copies meet). `distributed()` reads them, joins the process group (NCCL between GPUs, gloo between
CPU processes) and hands chapter 4's loop a `DistributedProcess`; without them it hands out a lone
`Process()` and nothing changes:

    with distributed() as (process, device):        # under torchrun: DistributedProcess(rank=1, world_size=4)
        with main_process_first(process):           # rank 0 builds the cached corpus, then the others load it
            tokens = prepare_tokens(build_corpus(...), vocab_size=1024)
        model = GPT(config).to(device)
        history = train(model, TokenBatches(tokens.streams, train_config, device), train_config, "runs/x",
                        process=process)             # chapter 4's loop, unchanged

Data parallelism (DDP, `DistributedDataParallel`) is all `DistributedProcess` changes:
- every process holds the whole model; DDP copies rank 0's weights to the others at the start;
- each process takes its own shard of the token stream: batch numbers are dealt out in turn (process
  r of W takes batches r, r + W, r + 2W, ...; `Process.batch_index`), so no two take the same batch,
  and together they take exactly the batches one process takes with W times the accumulation;
- during the backward pass DDP averages every gradient over the processes (an all-reduce, bucket by
  bucket, overlapped with the rest of the backward pass), so every copy takes the same AdamW step;
- losses are averaged over the processes before they are logged; only rank 0 draws progress bars,
  prints and writes checkpoints.

A checkpoint holds the unwrapped model's weights (never DDP's "module." names) and the global data
position (how many micro-batches all processes took together), so it does not depend on how many
processes wrote it: a run saved by N processes resumes on M when accumulation × processes stays the
same (2 processes × 1 micro-batch = 1 process × 2 micro-batches).

FSDP (fully sharded data parallel) is the option for a model that does not fit on one GPU: DDP keeps
weights, gradients and AdamW's two moments (16 bytes per parameter in float32) on every GPU, FSDP
splits each of them across the W GPUs (16/W bytes per parameter) and gathers a block's weights only
while it computes. `shard_model(model)` applies it in place; chapter 4's `train` then runs the
sharded model as it is (its optimizer is built after sharding, and no DDP wrapper is added), but it
cannot write checkpoints from rank 0 alone: train with out_dir=None and gather the weights with
`full_weights(model)` (every process calls it) to save them:

    model = shard_model(GPT(config).to(device))
    history = train(model, batches, train_config, process=process)
    weights = full_weights(model)                    # rank 0: the full tensors on the CPU; others: {}

The tiny model of the course fits anywhere; FSDP pays off from a few billion parameters.
"""
import contextlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel

from minilm.runtime import choose_device
from minilm.train import Process

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """The processes cannot start training together (incomplete environment, missing GPU, ...)."""


@dataclass
class Traffic:
    """What DDP handed to all-reduce: the gradient bytes each process contributed, summed over steps."""

    bytes: int = 0  # gradient bytes, in all buckets of all steps so far
    buckets: int = 0  # all-reduce calls (DDP groups gradients into buckets of about 25 MB)
    backward_passes: int = 0  # one per micro-batch: each averages every gradient once

    def bytes_per_pass(self) -> float:
        """Gradient bytes each backward pass all-reduces: the bytes of every trainable parameter."""
        return self.bytes / max(1, self.backward_passes)


def count_and_all_reduce(traffic: Traffic, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """A DDP communication hook: note the bucket's size, then average it like DDP's default hook."""
    gradients = bucket.buffer()  # (bucket's gradient entries,) flat
    traffic.bytes += gradients.numel() * gradients.element_size()
    traffic.buckets += 1
    traffic.backward_passes += bucket.is_last()
    return allreduce_hook(None, bucket)


@dataclass(frozen=True)
class DistributedProcess(Process):
    """One of `world_size` processes training one model with DDP (chapter 4's Process, made distributed)."""

    local_rank: int = 0  # this process's number on its own machine: the GPU it drives
    backend: str = "gloo"  # "nccl" between GPUs, "gloo" between CPU processes
    traffic: Traffic = field(default_factory=Traffic, compare=False)  # what its all-reduces carried

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The DDP wrapper: it copies rank 0's weights to every process, then averages gradients."""
        if is_sharded(model):
            return model  # FSDP averages (reduce-scatters) the gradients itself
        device = next(model.parameters()).device
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        ddp.register_comm_hook(self.traffic, count_and_all_reduce)
        return ddp

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """`value` averaged over the processes (an all-reduce; gloo has no average, so sum and divide)."""
        total = value.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.world_size


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher that sets WORLD_SIZE) started this process."""
    return "WORLD_SIZE" in os.environ


def process_device(local_rank: int, requested: str | None = None) -> torch.device:
    """The device this process trains on: GPU number `local_rank` with CUDA, else the CPU."""
    device = choose_device(requested)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DistributedError(f"this is process LOCAL_RANK={local_rank} but the machine has {count} GPU(s); "
                                   f"start at most {count} processes per machine (torchrun --nproc_per_node={count}).")
        return torch.device("cuda", local_rank)
    if device.type == "mps":
        raise DistributedError("several processes cannot share Apple's mps device; set MINILM_DEVICE=cpu to "
                               "practise with CPU processes, or train with one process.")
    return device


def start(requested_device: str | None = None) -> tuple[Process, torch.device]:
    """Join the process group torchrun describes in the environment; alone, return Process()."""
    if not launched_by_torchrun():
        return Process(), choose_device(requested_device)
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise DistributedError(f"WORLD_SIZE is set but {', '.join(missing)} are not: start the processes with "
                               f"torchrun (torchrun --nproc_per_node=2 -m minilm train ...), which sets them all.")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    device = process_device(local_rank, requested_device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=rank, world_size=world_size,
                            device_id=device if device.type == "cuda" else None)
    return DistributedProcess(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend), device


@contextlib.contextmanager
def distributed(requested_device: str | None = None):
    """`with distributed() as (process, device):` start(), and leave the process group at the end.

    On the way out every process waits for the others (rank 0 may still be writing its last
    checkpoint). After an error it leaves at once: torchrun then stops the other processes.
    """
    process, device = start(requested_device)
    try:
        yield process, device
        if dist.is_initialized():
            dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def main_process_first(process: Process):
    """Run the block on rank 0 first and on the others after it: cached work is then built only once."""
    if process.world_size > 1 and not process.is_main:
        dist.barrier()  # wait until rank 0 has built it
    yield
    if process.world_size > 1 and process.is_main:
        dist.barrier()  # let the others load what it built


def ring_all_reduce_bytes(payload_bytes: float, world_size: int) -> float:
    """Bytes each process sends (and receives) to all-reduce `payload_bytes` over a ring of processes.

    A ring all-reduce cuts the payload into W pieces and passes them around the ring twice: W − 1
    hops to add the pieces up (reduce-scatter), W − 1 hops to hand the sums out (all-gather); each
    hop carries one piece, payload / W. Total: 2 (W − 1) / W × payload, almost twice the payload
    however many processes there are.
    """
    return 2 * (world_size - 1) / world_size * payload_bytes


def shard_model(model: torch.nn.Module) -> torch.nn.Module:
    """FSDP: split each block's weights, and then the remaining ones, across the processes, in place.

    Afterwards every parameter is a DTensor holding 1/W of its rows on each process; a block
    gathers its full weights just before it computes and frees them after. Build the optimizer
    after sharding (it then keeps 1/W of AdamW's moments per process).
    """
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A sharded model's whole weights, on the CPU of rank 0 (the others get {}): every process calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def pipeline_schedule(stages: int, micro_batches: int) -> list[list[str]]:
    """GPipe's schedule: for each stage (GPU) a row of time slots, "F3" (forward of micro-batch 3), "B3", or "".

    Micro-batch i reaches stage s at time s + i; backward passes run in reverse once the last
    forward is done. The empty slots are the bubble: a share (P − 1) / (m + P − 1) of the time.
    """
    span = 2 * (micro_batches + stages - 1)
    rows = [[""] * span for _ in range(stages)]
    for stage in range(stages):
        for micro in range(micro_batches):
            rows[stage][stage + micro] = f"F{micro + 1}"
            backward = micro_batches + stages - 1 + (stages - 1 - stage) + (micro_batches - 1 - micro)
            rows[stage][backward] = f"B{micro + 1}"
    return rows


def draw_parallelism(gpus: int = 3, micro_batches: int = 4):
    """A figure of data, tensor and pipeline parallelism across `gpus` GPUs; returns it."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    colors = plt.get_cmap("tab10").colors[:gpus]
    figure, (data, tensor, pipeline) = plt.subplots(1, 3, figsize=(15, 4.2), width_ratios=[1, 1, 1.5])
    for gpu, color in enumerate(colors):  # data: whole copies, different batches, gradients averaged
        data.add_patch(Rectangle((gpu * 1.3, 1), 1, 2, facecolor="white", edgecolor="black"))
        data.text(gpu * 1.3 + 0.5, 2, f"GPU {gpu}\nwhole\nmodel", ha="center", va="center")
        data.add_patch(Rectangle((gpu * 1.3 + 0.1, 0.2), 0.8, 0.5, color=color))
        data.text(gpu * 1.3 + 0.5, 0.45, f"batch {gpu}", ha="center", va="center", color="white")
    data.add_patch(FancyArrowPatch((0.5, 3.1), (gpus * 1.3 - 0.8, 3.1), arrowstyle="<->", mutation_scale=15,
                                   connectionstyle="arc3,rad=-0.3"))
    data.text(gpus * 0.65 - 0.15, 3.75, "all-reduce: average the gradients", ha="center")
    data.set(xlim=(-0.2, gpus * 1.3), ylim=(0, 4.2), title="data parallel (DDP): split the batch")
    tensor.add_patch(Rectangle((0, 1), 0.5, 2, facecolor="lightgrey", edgecolor="black"))
    tensor.text(0.25, 2, "X", ha="center", va="center")
    tensor.text(0.75, 2, "×", ha="center", va="center", fontsize=14)
    for gpu, color in enumerate(colors):  # tensor: each GPU holds a slice of the weight matrix's columns
        tensor.add_patch(Rectangle((1 + gpu * 0.6, 1), 0.6, 2, facecolor=color, edgecolor="black", alpha=0.8))
        tensor.text(1.3 + gpu * 0.6, 2, f"A{gpu}\nGPU {gpu}", ha="center", va="center", color="white", fontsize=8)
        tensor.add_patch(Rectangle((3.2 + gpu * 0.35, 1), 0.35, 2, facecolor=color, edgecolor="black", alpha=0.8))
    tensor.text(2.95, 2, "=", ha="center", va="center", fontsize=14)
    tensor.text(2.2, 0.4, "Y = [X·A0, X·A1, X·A2]: each GPU computes its slice,\nthen the slices are gathered",
                ha="center", fontsize=9)
    tensor.set(xlim=(-0.2, 4.4), ylim=(0, 4.2), title="tensor parallel: split each matrix")
    schedule = pipeline_schedule(gpus, micro_batches)
    for stage, row in enumerate(schedule):  # pipeline: each GPU holds some layers; micro-batches flow through
        for time, slot in enumerate(row):
            face = colors[stage] if slot else "white"
            pipeline.add_patch(Rectangle((time, gpus - 1 - stage), 1, 1, facecolor=face, edgecolor="grey",
                                         alpha=1.0 if slot.startswith("F") else 0.55, hatch="" if slot else "//"))
            pipeline.text(time + 0.5, gpus - 0.5 - stage, slot, ha="center", va="center", fontsize=8)
    pipeline.set(xlim=(0, len(schedule[0])), ylim=(0, gpus), xlabel="time →", yticks=[g + 0.5 for g in range(gpus)],
                 yticklabels=[f"GPU {gpus - 1 - g}\nstage {gpus - g}" for g in range(gpus)],
                 title="pipeline parallel: split the layers into stages (hatched: idle)")
    for axis in (data, tensor):
        axis.axis("off")
    figure.tight_layout()
    return figure
