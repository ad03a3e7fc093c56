"""Chapter 4b exercises against the plain sum (float64), minilm's tested code (Process.batch_index,
pipeline_schedule, ring_all_reduce_bytes) and brute-force checks of the schedules they build."""
import pytest
import torch

from minilm.distributed import pipeline_schedule, ring_all_reduce_bytes
from minilm.train import Process
from tests.exercises.harness import load_chapter

ex = load_chapter("ch04b_distributed")


@pytest.mark.parametrize("world_size,accumulation", [(1, 1), (1, 3), (2, 1), (3, 2), (4, 4)])
def test_batch_indices_are_minilm_process_batch_index(world_size, accumulation):
    for rank in range(world_size):
        expected = [[Process(rank, world_size).batch_index(step, micro, accumulation) for micro in range(accumulation)]
                    for step in range(5)]
        assert ex.batch_indices(rank, world_size, 5, accumulation) == expected


@pytest.mark.parametrize("world_size,accumulation", [(2, 1), (3, 2), (4, 3)])
def test_processes_together_take_the_batches_of_one_with_more_accumulation(world_size, accumulation):
    alone = ex.batch_indices(0, 1, 4, world_size * accumulation)
    together = [sorted(sum((ex.batch_indices(rank, world_size, 4, accumulation)[step] for rank in range(world_size)), []))
                for step in range(4)]
    assert together == alone


@pytest.mark.parametrize("world,length", [(1, 5), (2, 6), (3, 9), (4, 10), (5, 3)])
def test_ring_all_reduce_gives_every_process_the_sum(world, length):
    generator = torch.Generator().manual_seed(world * 100 + length)
    tensors = [torch.randn(length, generator=generator, dtype=torch.float64) for _ in range(world)]
    originals = [t.clone() for t in tensors]
    results, sent = ex.ring_all_reduce(tensors)
    expected = torch.stack(tensors).sum(dim=0)
    assert len(results) == world
    for result in results:
        torch.testing.assert_close(result, expected)
    assert all(torch.equal(t, o) for t, o in zip(tensors, originals))  # the inputs are left as they were
    chunk_bytes = [c.numel() * 8 for c in torch.tensor_split(tensors[0], world)]
    assert sum(sent) == 2 * (world - 1) * sum(chunk_bytes)  # every hop carries one chunk from each process


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_ring_all_reduce_sends_what_minilm_counts(world):
    tensors = [torch.full((4 * world,), float(rank + 1)) for rank in range(world)]  # float32, divisible by W
    results, sent = ex.ring_all_reduce(tensors)
    assert sent == [ring_all_reduce_bytes(tensors[0].numel() * tensors[0].element_size(), world)] * world
    assert all(torch.equal(r, torch.full_like(r, world * (world + 1) / 2)) for r in results)


@pytest.mark.parametrize("stages,micro_batches", [(1, 1), (2, 1), (3, 4), (4, 16), (5, 2)])
def test_gpipe_schedule_is_minilm_pipeline_schedule(stages, micro_batches):
    assert ex.gpipe_schedule(stages, micro_batches) == pipeline_schedule(stages, micro_batches)


@pytest.mark.parametrize("stages,micro_batches", [(2, 3), (4, 4), (3, 7)])
def test_gpipe_schedule_respects_every_dependency_and_has_the_bubble_of_the_formula(stages, micro_batches):
    rows = ex.gpipe_schedule(stages, micro_batches)
    when = {(stage, slot): time for stage, row in enumerate(rows) for time, slot in enumerate(row) if slot}
    for micro in range(1, micro_batches + 1):
        for stage in range(stages):
            assert (stage, f"F{micro}") in when and (stage, f"B{micro}") in when
            if stage:  # a forward pass needs the previous stage's output
                assert when[stage, f"F{micro}"] > when[stage - 1, f"F{micro}"]
            if stage < stages - 1:  # a backward pass needs the next stage's gradient
                assert when[stage, f"B{micro}"] > when[stage + 1, f"B{micro}"]
            assert when[stage, f"B{micro}"] > max(when[s, f"F{m}"] for s in range(stages) for m in range(1, micro_batches + 1))
    idle = sum(slot == "" for row in rows for slot in row) / (stages * len(rows[0]))
    assert idle == pytest.approx((stages - 1) / (micro_batches + stages - 1))
