"""Two processes with DistributedDataParallel (gloo on CPU) follow the single-process run with the
same global batch: the same loss at every step and the same weights, to float round-off."""
import functools
import multiprocessing
import os
import socket

import torch

from multidiff.engine import checkpoint, trainer
from multidiff.engine.config import load_recipe
from multidiff.engine.metrics_log import read_metrics

train = functools.partial(trainer.train, device="cpu")  # exact comparisons and forks need the CPU
torch.set_num_threads(1)
CFG = ["model.hidden=16", "model.depth=1", "model.time_dim=8", "data.n_train=256", "data.n_test=256",
       "train.batch_size=32", "train.steps=6", "train.warmup_steps=2", "train.log_every=1",
       "train.ckpt_every=100", "train.sample_every=0", "train.ema_decay=0.9", "diffusion.cond_drop=0.25",
       "sample.n=8", "sample.steps=2"]


def forkserver():
    """Processes forked from a server that imported torch and the engine once but never ran
    autograd (plain fork is refused once this process has run a backward pass next to a GPU)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["multidiff.engine.trainer", "modalities.toy2d"])
    return ctx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_as_rank(rank: int, world: int, port: int, cfg: dict, run_dir) -> None:
    """What torchrun does for each process: set the rendezvous variables, then run the trainer."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    train(cfg, run_dir)


def test_two_gloo_processes_match_one_process(tmp_path):
    cfg = load_recipe("toy2d", "quick", CFG)
    train(cfg, tmp_path / "single")
    port = free_port()
    ctx = forkserver()
    ranks = [ctx.Process(target=train_as_rank, args=(r, 2, port, cfg, tmp_path / "ddp")) for r in range(2)]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(timeout=180)
    assert [p.exitcode for p in ranks] == [0, 0]

    single, ddp = (read_metrics(tmp_path / run / "metrics.csv") for run in ("single", "ddp"))
    assert [r["step"] for r in ddp] == [r["step"] for r in single] == list(range(1, 7))
    for a, b in zip(ddp, single):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(b["loss"]), (a, b)
        assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-4 * b["grad_norm"], (a, b)
    (w_ddp, _, _), (w_single, _, _) = (checkpoint.load_weights(tmp_path / run) for run in ("ddp", "single"))
    for part in ("model", "ema"):
        for name, value in w_single[part].items():
            torch.testing.assert_close(w_ddp[part][name], value, rtol=1e-4, atol=1e-6)
    assert (tmp_path / "ddp" / "summary.json").exists()
