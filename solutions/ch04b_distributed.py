"""Chapter 4b exercises, solved: the bookkeeping of training on several processes, by hand."""
from __future__ import annotations

import torch


def batch_indices(rank: int, world_size: int, steps: int, accumulation: int) -> list[list[int]]:
    """The batch numbers process `rank` of `world_size` draws: one list per step, one number per micro-batch.

    Processes deal the batch numbers out in turn, so that together they take, at every step, exactly
    the batches one process would take with world_size × accumulation micro-batches: micro-batch
    `micro` of step `step` on process `rank` is batch (step · accumulation + micro) · world_size + rank.
    Example: batch_indices(1, 2, 3, 1) == [[1], [3], [5]]; batch_indices(0, 1, 2, 2) == [[0, 1], [2, 3]].
    """
    return [[(step * accumulation + micro) * world_size + rank for micro in range(accumulation)]
            for step in range(steps)]


def ring_all_reduce(tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
    """Simulate a ring all-reduce among W = len(tensors) processes; process r holds tensors[r] (1-D, same length).

    Cut every tensor into W chunks with torch.tensor_split(t, W). Process r sends only to process
    (r + 1) % W, one chunk per hop:
    - reduce-scatter, hops k = 0 .. W-2: process r sends its chunk (r − k) % W; the receiver adds it
      to its own chunk of that number. After these hops process r holds the full sum of chunk (r + 1) % W.
    - all-gather, hops k = 0 .. W-2: process r sends its chunk (r + 1 − k) % W; the receiver replaces
      its chunk of that number with it.
    Within a hop, every process sends what it held before the hop. Return every process's result
    (the chunks joined again: each equals the sum of all the tensors) and the bytes each process
    sent (a chunk's numel · element_size). Leave the inputs unchanged. Example with W = 2:
    ring_all_reduce([tensor([1., 2.]), tensor([10., 20.])]) gives two copies of tensor([11., 22.]) and
    [8, 8] bytes sent (two hops of one 4-byte float each).
    """
    world = len(tensors)
    chunks = [[c.clone() for c in torch.tensor_split(t, world)] for t in tensors]  # chunks[rank][number]
    sent = [0] * world
    for phase in ("reduce-scatter", "all-gather"):
        for hop in range(world - 1):
            offset = 0 if phase == "reduce-scatter" else 1
            messages = [(rank, (rank + offset - hop) % world) for rank in range(world)]
            outgoing = [chunks[rank][number].clone() for rank, number in messages]  # what each held before the hop
            for (rank, number), chunk in zip(messages, outgoing):
                receiver = (rank + 1) % world
                if phase == "reduce-scatter":
                    chunks[receiver][number] += chunk
                else:
                    chunks[receiver][number] = chunk
                sent[rank] += chunk.numel() * chunk.element_size()
    return [torch.cat(row) for row in chunks], sent


def gpipe_schedule(stages: int, micro_batches: int) -> list[list[str]]:
    """GPipe's pipeline schedule: one row per stage (GPU), one entry per time slot: "F3", "B3" or "" (idle).

    The slots run from 0 to 2 (micro_batches + stages − 1) − 1. Forward passes: micro-batch i
    (numbered from 1) runs on stage s (from 0) at slot s + i − 1, right after it left stage s − 1.
    Backward passes start once the last forward pass is done, from the last stage back to the first,
    micro-batches in reverse order: "Bi" runs on stage s at slot
    (micro_batches + stages − 1) + (stages − 1 − s) + (micro_batches − i).
    Every other slot is idle: a share (stages − 1) / (micro_batches + stages − 1) of them, the bubble.
    Example: gpipe_schedule(2, 1) == [["F1", "", "", "B1"], ["", "F1", "B1", ""]].
    """
    forward_span = micro_batches + stages - 1
    rows = [[""] * (2 * forward_span) for _ in range(stages)]
    for stage in range(stages):
        for micro in range(1, micro_batches + 1):
            rows[stage][stage + micro - 1] = f"F{micro}"
            rows[stage][forward_span + (stages - 1 - stage) + (micro_batches - micro)] = f"B{micro}"
    return rows
