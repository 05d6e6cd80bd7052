"""`asyrp-edu train` under `accelerate launch` with 2 CPU processes: data-parallel over images, same editor as one."""
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from asyrp_edu.parallel import ProcessGroup

ARGS = ["train", "--world", "toy", "--edit", "smiling", "--n-images", "4", "--batch-size", "4", "--steps", "4",
        "--t-edit", "500", "--epochs", "2", "--no-resume"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _MeanColourClip:
    """A stand-in CLIP: two prompts, images encoded by their mean colour."""

    def encode_text(self, prompts):
        return torch.eye(3)[[("red", "green").index(p) for p in prompts]]

    def encode_image(self, images):
        return torch.nn.functional.normalize(images.mean(dim=(2, 3)) + 1.5, dim=-1)


def test_shards_split_each_batch_and_refuse_too_small_batches():
    two = [ProcessGroup(0, 2), ProcessGroup(1, 2)]
    assert [g.shard(slice(0, 4), 6) for g in two] == [[0, 2], [1, 3]]
    assert [g.shard(slice(4, 8), 6) for g in two] == [[4], [5]]
    with pytest.raises(ValueError, match="batch-size"):
        ProcessGroup(1, 2).shard(slice(4, 5), 5)


def test_two_processes_under_accelerate_launch_train_the_same_editor_as_one(tmp_path):
    pytest.importorskip("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    one = subprocess.run([sys.executable, "-m", "asyrp_edu.cli", *ARGS, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    # --multi_gpu is accelerate's name for "spawn one process per device through torchrun"; without GPUs the processes
    # run on the CPU and join a gloo group (accelerate's --cpu would want mpirun for several processes)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port())]
    two = subprocess.run([*launch, "-m", "asyrp_edu.cli", *ARGS, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_file(str(tmp_path / "one" / "editor.safetensors"))
    b = load_file(str(tmp_path / "two" / "editor.safetensors"))
    assert a.keys() == b.keys()
    assert any(v.abs().sum() > 0 for k, v in a.items() if k.startswith("conv2"))  # training moved f_t
    # the mean gradient over 2 × 2 images equals the gradient over 4, so both take the same Adam steps. Adam divides
    # by sqrt(v), which magnifies float noise of the all-reduce in near-zero gradients: compare relative L2 errors
    # (measured: 1e-4 at most on one 2-core CPU, 1.6e-3 in conv2.weight on an AVX2 EPYC; with no all-reduce, each
    # process stepping on its own 2 images: 0.78 in conv2.weight, 0.43 in norm2.bias)
    for k in a:
        assert float((a[k] - b[k]).norm() / a[k].norm().clamp(min=1e-12)) < 1e-2, k
    # each process inverted only its own images
    assert len(list((tmp_path / "two" / "cache").glob("inversion_*"))) == 2


def test_gradients_are_averaged_not_summed(monkeypatch):
    # all_reduce stands in for a second process whose gradient is g_other (it contributes g_other / 2, its share):
    # the step must use (g + g_other) / 2
    import torch.distributed as dist

    module = torch.nn.Linear(3, 2)
    g, g_other = torch.randn(2, 3), torch.randn(2, 3)
    module.weight.grad = g.clone()  # the bias has no gradient and must be left alone
    calls = []
    monkeypatch.setattr(dist, "all_reduce", lambda t, op=None: calls.append(op) or t.add_(g_other / 2))
    ProcessGroup(rank=0, size=2).average_gradients(module)
    assert torch.allclose(module.weight.grad, (g + g_other) / 2) and module.bias.grad is None
    assert calls == [dist.ReduceOp.SUM]
    ProcessGroup().average_gradients(module)  # a group of one leaves the gradient as it is
    assert torch.allclose(module.weight.grad, (g + g_other) / 2) and len(calls) == 1


def test_uneven_shards_still_give_the_whole_batchs_gradient(monkeypatch):
    """16 images over 3 processes (6, 5, 5): Σ_r share_r · ∇(mean loss over shard r) = ∇(mean loss over all 16)."""
    import torch.distributed as dist

    x = torch.arange(16.0)
    groups = [ProcessGroup(rank, 3) for rank in range(3)]
    modules, shares = [], []
    for group in groups:
        mine = group.shard(slice(0, 16), 16)
        module = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.constant_(module.weight, 0.5)
        (module(x[mine, None]) ** 2).mean().backward()  # this process's mean loss
        modules.append(module)
        shares.append(len(mine) / 16)
    assert sorted(shares) == [5 / 16, 5 / 16, 6 / 16]
    full = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(full.weight, 0.5)
    (full(x[:, None]) ** 2).mean().backward()
    weighted = []  # all_reduce stands in for the group: each process's weighted gradient, then their sum
    monkeypatch.setattr(dist, "all_reduce", lambda t, op=None: weighted.append(t.clone()))
    for group, module, share in zip(groups, modules, shares):
        group.average_gradients(module, share)
    assert torch.allclose(sum(weighted), full.weight.grad)
    # the plain mean over processes counts the images of the smaller shards more: it is not the batch's gradient
    plain_mean = sum(w / s for w, s in zip(weighted, shares)) / 3
    assert not torch.allclose(plain_mean, full.weight.grad)


def test_the_trainer_weights_each_process_by_its_share_of_the_batch(tiny_unet, tmp_path, monkeypatch):
    """train_editor passes its shard's share to the gradient average: rank 0 of 3 holds 6 of a batch of 16."""
    import asyrp_edu.train_asyrp as train_asyrp
    from asyrp_edu.ddim import Schedule
    from asyrp_edu.train_asyrp import EditorConfig, train_editor

    shares, calls = [], []

    class RankZeroOfThree(ProcessGroup):
        def average_gradients(self, module, share=None):
            shares.append(share)
            calls.append("average")

        def broadcast_from_main(self, module):
            calls.append(module)

        def same_everywhere(self, value, device=None):
            return True

        def barrier(self):
            pass

    monkeypatch.setattr(train_asyrp, "process_group", lambda device=None: RankZeroOfThree(0, 3))
    config = EditorConfig("red", "green", t_edit=700, num_steps=4, batch_size=16, lr=1e-2)
    images = torch.rand(16, 3, 16, 16) * 2 - 1
    result = train_editor(tiny_unet.requires_grad_(False), Schedule.linear(), _MeanColourClip(), images, config,
                          tmp_path, progress=False)
    assert shares == [6 / 16]  # one batch, one edited step (t = 750)
    assert calls == [result.editor, "average"]  # every process starts from rank 0's f_t, before the first update


def test_processes_that_resumed_from_different_points_are_stopped(tiny_unet, tmp_path, monkeypatch):
    import asyrp_edu.train_asyrp as train_asyrp
    from asyrp_edu.ddim import Schedule
    from asyrp_edu.train_asyrp import EditorConfig, train_editor

    class DisagreeingGroup(ProcessGroup):
        def same_everywhere(self, value, device=None):
            return False

    monkeypatch.setattr(train_asyrp, "process_group", lambda device=None: DisagreeingGroup(1, 2))
    config = EditorConfig("red", "green", t_edit=700, num_steps=4, batch_size=4)
    with pytest.raises(RuntimeError, match="resumed from different points.*--no-resume"):
        train_editor(tiny_unet.requires_grad_(False), Schedule.linear(), _MeanColourClip(),
                     torch.rand(4, 3, 16, 16) * 2 - 1, config, tmp_path, progress=False)


def test_same_everywhere_compares_the_largest_and_the_smallest_value(monkeypatch):
    import torch.distributed as dist

    others = {"agree": 5.0, "ahead": 9.0}
    for case, expected in (("agree", True), ("ahead", False)):
        # all_reduce(MAX) stands in for a second process holding others[case]
        monkeypatch.setattr(dist, "all_reduce", lambda t, op=None: t.copy_(torch.maximum(
            t, torch.tensor([others[case], -others[case]], dtype=t.dtype))))
        assert ProcessGroup(0, 2).same_everywhere(5) is expected
    assert ProcessGroup().same_everywhere(123)  # a group of one agrees with itself


def test_broadcast_gives_every_process_rank_zeros_parameters_and_buffers(monkeypatch):
    import torch.distributed as dist

    module = torch.nn.BatchNorm1d(2)  # parameters (weight, bias) and buffers (running mean and variance, count)
    sent = []
    monkeypatch.setattr(dist, "broadcast", lambda tensor, src: sent.append((tensor, src)))
    ProcessGroup(rank=1, size=2).broadcast_from_main(module)
    assert len(sent) == 5 and all(src == 0 for _, src in sent)
    assert {t.data_ptr() for t, _ in sent} == {t.data_ptr() for t in [*module.parameters(), *module.buffers()]}
    ProcessGroup().broadcast_from_main(module)  # a group of one sends nothing
    assert len(sent) == 5


@pytest.mark.parametrize("device, cuda_present, backend", [("cpu", True, "gloo"), ("cuda:0", True, "nccl"),
                                                             (None, True, "nccl"), (None, False, "gloo")])
def test_the_backend_follows_the_tensors_device_not_the_machine(monkeypatch, device, cuda_present, backend):
    """`--device cpu` on a machine with GPUs needs gloo: NCCL cannot all-reduce CPU tensors."""
    import torch.distributed as dist

    from asyrp_edu import parallel

    chosen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_present)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda name: chosen.append(name))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    group = parallel.process_group(None if device is None else torch.device(device))
    assert chosen == [backend] and (group.rank, group.size) == (1, 2)
