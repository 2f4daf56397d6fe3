"""Checkpoints and resume: exact continuation after SIGKILL and SIGTERM, and clear errors (with
nothing overwritten) for truncated, foreign or mismatched checkpoint files."""
import functools
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modalities.toy2d import Toy2DModality
from multidiff import modality as registry
from multidiff.engine import checkpoint, trainer
from multidiff.engine.config import load_recipe
from multidiff.engine.errors import UserError
from multidiff.engine.generate import load_run

train = functools.partial(trainer.train, device="cpu")  # exact comparisons and forks need the CPU
torch.set_num_threads(1)
# A constant learning rate makes the run's total length irrelevant to its first steps, so a run
# planned for many steps and killed can be compared with a short uninterrupted one.
TINY = ["model.hidden=16", "model.depth=1", "model.time_dim=8", "data.n_train=256", "data.n_test=256",
        "train.batch_size=32", "train.warmup_steps=2", "train.lr_schedule=constant", "train.log_every=1",
        "train.sample_every=0", "train.ema_warmup=2", "train.ema_decay=0.9", "sample.n=8", "sample.steps=2"]


def tiny(*overrides, modality="toy2d"):
    return load_recipe("toy2d", "quick", [*TINY, f"modality={modality}", *overrides])


def assert_same_weights(run_a: Path, run_b: Path):
    (a, _, step_a), (b, _, step_b) = checkpoint.load_weights(run_a), checkpoint.load_weights(run_b)
    assert step_a == step_b
    for part in ("model", "ema", "encoder"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name} differs"


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def train_with_one_thread(cfg, run_dir):
    torch.set_num_threads(1)  # as in this process: the same arithmetic
    train(cfg, run_dir)


def test_sigkill_then_resume_matches_an_uninterrupted_run_bit_for_bit(tmp_path):
    run = tmp_path / "killed"
    # A child process trains "forever" and is killed with SIGKILL as soon as its first checkpoint
    # is on disk. It is forked from a server that already imported torch (see test_ddp.forkserver).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["multidiff.engine.trainer", "modalities.toy2d"])
    child = ctx.Process(
        target=train_with_one_thread, args=(tiny("train.steps=1000000", "train.ckpt_every=3"), run), daemon=True)
    child.start()
    weights = run / "checkpoints" / checkpoint.WEIGHTS_NAME
    deadline = time.monotonic() + 120
    while not weights.exists() and child.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert child.exitcode == -signal.SIGKILL and weights.exists()
    end = checkpoint.read_metadata(run)[1] + 5
    train(tiny(f"train.steps={end}", "train.ckpt_every=3"), run, resume=True)
    train(tiny(f"train.steps={end}", "train.ckpt_every=3"), tmp_path / "straight")
    assert_same_weights(run, tmp_path / "straight")


class TermAtFifthCall(Toy2DModality):
    """Toy modality whose first network sends its own process SIGTERM during the fifth training step."""
    networks = 0

    def backbone(self, cfg, shape, num_classes):
        net = super().backbone(cfg, shape, num_classes)
        TermAtFifthCall.networks += 1
        first, calls = TermAtFifthCall.networks == 1, [0]

        def hook(module, args, out):
            calls[0] += 1
            if first and calls[0] == 5:
                signal.raise_signal(signal.SIGTERM)

        net.register_forward_hook(hook)
        return net


def test_sigterm_saves_a_checkpoint_and_resume_continues_exactly(tmp_path):
    registry.register("toy2d_term", TermAtFifthCall)
    with pytest.raises(UserError, match="stopped by SIGTERM at step 5"):
        train(tiny("train.steps=9", "train.ckpt_every=100", modality="toy2d_term"), tmp_path / "run")
    assert checkpoint.read_metadata(tmp_path / "run")[1] == 5
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5"]
    train(tiny("train.steps=9", "train.ckpt_every=100", modality="toy2d_term"), tmp_path / "run", resume=True)
    train(tiny("train.steps=9", "train.ckpt_every=100"), tmp_path / "straight")
    assert_same_weights(tmp_path / "run", tmp_path / "straight")
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(s) for s in range(1, 10)]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    train(tiny("train.steps=4", "train.ckpt_every=2"), run)
    return run


def copy_run(run: Path, to: Path) -> Path:
    (to / "checkpoints").mkdir(parents=True)
    for p in (run / "checkpoints").iterdir():
        (to / "checkpoints" / p.name).write_bytes(p.read_bytes())
    return to


def test_truncated_weights_give_a_clear_error_and_nothing_is_overwritten(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    weights = run / "checkpoints" / checkpoint.WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    before = snapshot(run / "checkpoints")
    with pytest.raises(UserError, match="truncated"):
        train(tiny("train.steps=6"), run, resume=True)
    with pytest.raises(UserError, match="truncated"):
        load_run(weights)
    assert snapshot(run / "checkpoints") == before


def test_truncated_or_mismatched_training_state_is_refused(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    state = run / "checkpoints" / checkpoint.STATE_NAME
    state.write_bytes(state.read_bytes()[:100])
    before = snapshot(run / "checkpoints")
    with pytest.raises(UserError, match="unreadable"):
        train(tiny("train.steps=6"), run, resume=True)
    assert snapshot(run / "checkpoints") == before
    # The state saved with the step-2 checkpoint (kept as prev.state.pt) matches no weights of step 4.
    (run / "checkpoints" / checkpoint.STATE_NAME).unlink()
    with pytest.raises(UserError, match="from step 2"):
        train(tiny("train.steps=6"), run, resume=True)


def test_state_of_the_weights_on_disk_is_found_after_a_kill_between_renames(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    folder = run / "checkpoints"
    # As if killed after the new state replaced last.state.pt but before the new weights landed:
    # last.state.pt is a step ahead, prev.state.pt matches the weights; a torn .tmp lies around.
    state = torch.load(folder / checkpoint.STATE_NAME, weights_only=True)
    (folder / checkpoint.PREVIOUS_STATE_NAME).write_bytes((folder / checkpoint.STATE_NAME).read_bytes())
    torch.save({**state, "step": state["step"] + 2}, folder / checkpoint.STATE_NAME)
    (folder / (checkpoint.WEIGHTS_NAME + ".tmp")).write_bytes(b"torn")
    train(tiny("train.steps=6", "train.ckpt_every=2"), run, resume=True)
    train(tiny("train.steps=6", "train.ckpt_every=2"), tmp_path / "straight")
    assert_same_weights(run, tmp_path / "straight")


def test_foreign_files_are_not_checkpoints(tmp_path):
    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors", metadata={"format": "pt"})
    (tmp_path / "noise.safetensors").write_bytes(os.urandom(256))
    for name in ("other.safetensors", "noise.safetensors"):
        with pytest.raises(UserError, match="not a (readable safetensors file|multidiff checkpoint)"):
            load_run(tmp_path / name)
        with pytest.raises(UserError, match="not a multidiff checkpoint"):
            checkpoint.read_metadata(tmp_path / name)


def test_existing_run_is_never_trained_over_and_resume_needs_the_same_config(finished_run):
    before = snapshot(finished_run / "checkpoints")
    with pytest.raises(UserError, match="--resume"):
        train(tiny("train.steps=4"), finished_run)
    with pytest.raises(UserError, match="train.lr"):
        train(tiny("train.steps=6", "train.lr=0.5"), finished_run, resume=True)
    assert snapshot(finished_run / "checkpoints") == before


def test_resume_accepts_other_eval_settings(finished_run, tmp_path):
    """How a run is judged does not change how it trains: a recipe whose [eval] changed since still resumes."""
    run = copy_run(finished_run, tmp_path / "run")
    step = checkpoint.load_weights(run)[2]
    train(tiny(f"train.steps={step + 2}", "eval.n=7"), run, resume=True)
    assert checkpoint.load_weights(run)[2] == step + 2
