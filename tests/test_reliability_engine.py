"""Faults around training runs: a second writer on a locked run, corrupted and non-finite weights,
a full disk during a checkpoint, a torn metrics row, a pickled state file, and a process group that
never forms. Each leaves the run as it was and ends in one clear error."""
import contextlib
import errno
import functools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.optim.optimizer import register_optimizer_step_post_hook

from multidiff.engine import checkpoint, trainer
from multidiff.engine.config import load_recipe
from multidiff.engine.errors import UserError
from multidiff.engine.generate import load_run
from multidiff.engine.lock import RunLock
from multidiff.engine.metrics_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
train = functools.partial(trainer.train, device="cpu")
TINY = ["model.hidden=16", "model.depth=1", "model.time_dim=8", "data.n_train=256", "data.n_test=256",
        "train.batch_size=32", "train.warmup_steps=2", "train.lr_schedule=constant", "train.log_every=1",
        "train.sample_every=0", "train.ema_warmup=2", "train.ema_decay=0.9", "sample.n=8", "sample.steps=2"]


def tiny(*overrides):
    return load_recipe("toy2d", "quick", [*TINY, *overrides])


def cli(*args, env=None, timeout=120):
    """Run ``python -m multidiff ARGS`` in a new process (this checkout's code)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run([sys.executable, "-m", "multidiff", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@contextlib.contextmanager
def after_optimizer_step(step: int, action):
    """Call ``action(optimizer)`` right after the ``step``-th optimizer step (counted from 1) of any optimizer."""
    count = [0]

    def hook(optimizer, args, kwargs):
        count[0] += 1
        if count[0] == step:
            action(optimizer)

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    train(tiny("train.steps=4", "train.ckpt_every=2"), run)
    return run


def copy_run(run: Path, to: Path) -> Path:
    (to / "checkpoints").mkdir(parents=True)
    for p in run.rglob("*"):
        if p.is_file() and p.parent.name in ("checkpoints", run.name):
            (to / p.relative_to(run)).write_bytes(p.read_bytes())
    return to


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- one writer per run directory ---------------------------------------------------------------

def test_a_second_training_process_on_a_locked_run_is_refused_naming_the_holder(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run / "checkpoints")
    with RunLock(run):
        sets = [arg for item in TINY for arg in ("--set", item)]
        result = cli("train", "toy2d", "--preset", "quick", *sets, "--set", "train.steps=6", "--out", run, "--resume")
        assert result.returncode == 1
        lines = error_lines(result.stderr)
        assert len(lines) == 1 and f"pid {os.getpid()}" in lines[0] and str(run) in lines[0], result.stderr
        # The same refusal in this process (another descriptor of the lock file), without --resume.
        with pytest.raises(UserError, match=f"in use by another training process \\(pid {os.getpid()}\\)"):
            train(tiny("train.steps=6"), run)
    assert snapshot(run / "checkpoints") == before
    train(tiny("train.steps=6", "train.ckpt_every=2"), run, resume=True)  # free again once released
    assert checkpoint.read_metadata(run)[1] == 6


def test_temporary_names_are_unique_per_writer_and_stale_ones_are_removed(finished_run, tmp_path, monkeypatch):
    run = copy_run(finished_run, tmp_path / "run")
    stale = run / "checkpoints" / (checkpoint.WEIGHTS_NAME + ".tmp")  # as a killed writer of today's main leaves it
    stale.write_bytes(b"torn")
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renamed.append(Path(a).name), real_replace(a, b)))
    train(tiny("train.steps=6", "train.ckpt_every=2"), run, resume=True)
    temporaries = [name for name in renamed if name.endswith(".tmp")]
    assert len(temporaries) == len(set(temporaries)) >= 4  # two files per checkpoint, config.json, ...
    assert all(f".{os.getpid()}." in name for name in temporaries)
    assert not list(run.rglob("*.tmp"))


# --- integrity of the weights --------------------------------------------------------------------

def test_corrupted_weight_bytes_are_detected_by_their_checksum(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    weights = run / "checkpoints" / checkpoint.WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[8 + int.from_bytes(data[:8], "little") + 5] ^= 0x01  # one low mantissa bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match=f"{weights} is corrupt: the bytes of tensor .* do not match"):
        load_run(run)
    with pytest.raises(UserError, match="is corrupt"):
        train(tiny("train.steps=6"), run, resume=True)


def test_checkpoints_without_checksums_still_load(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    weights = run / "checkpoints" / checkpoint.WEIGHTS_NAME
    with open(weights, "rb") as f:
        metadata = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    assert set(json.loads(metadata.pop(checkpoint.CHECKSUMS))) == set(load_file(weights))
    save_file(load_file(weights), weights, metadata=metadata)  # as written before checksums
    old, new = load_run(run), load_run(finished_run)
    for name, value in new.model.state_dict().items():
        assert torch.equal(old.model.state_dict()[name], value)


def poison(optimizer):
    with torch.no_grad():
        optimizer.param_groups[0]["params"][0].view(-1)[0] = float("nan")


def test_weights_that_are_not_finite_are_never_saved(tmp_path):
    # The optimizer step after step 4's finite loss makes a weight NaN; the checkpoint due at step 4
    # must not replace step 2's good one (today's main saved it and stopped at step 5's NaN loss).
    with after_optimizer_step(4, poison), pytest.raises(UserError, match="not finite at step 4"):
        train(tiny("train.steps=8", "train.ckpt_every=2"), tmp_path / "run")
    parts, _, step = checkpoint.load_weights(tmp_path / "run")
    assert step == 2
    assert all(torch.isfinite(v).all() for part in parts.values() for v in part.values())


def test_a_non_finite_ema_is_refused_and_the_previous_checkpoint_kept(tmp_path):
    good = {"model": {"w": torch.ones(3)}, "ema": {"w": torch.ones(3)}, "encoder": {}}
    checkpoint.save(tmp_path, step=1, cfg={}, parts=good, train_state={})
    before = snapshot(tmp_path / "checkpoints")
    bad = {**good, "ema": {"w": torch.tensor([1.0, float("inf"), 1.0])}}
    with pytest.raises(UserError, match=r"not finite at step 2 \(ema.w holds NaN or inf\)"):
        checkpoint.save(tmp_path, step=2, cfg={}, parts=bad, train_state={})
    assert snapshot(tmp_path / "checkpoints") == before


# --- a full disk ----------------------------------------------------------------------------------

def test_a_failed_checkpoint_write_removes_its_temporaries_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    parts = {"model": {"w": torch.ones(3)}, "ema": {}, "encoder": {}}
    checkpoint.save(tmp_path, step=1, cfg={}, parts=parts, train_state={})
    before = snapshot(tmp_path / "checkpoints")
    real = checkpoint._write_temporary

    def second_write_fails(path, data, temporaries):  # the state file fits, the weights do not
        if path.name == checkpoint.WEIGHTS_NAME:
            real(path, bytes(data)[:10], temporaries)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data, temporaries)

    monkeypatch.setattr(checkpoint, "_write_temporary", second_write_fails)
    with pytest.raises(UserError, match="cannot save the checkpoint of step 2 .*No space left on device"):
        checkpoint.save(tmp_path, step=2, cfg={}, parts=parts, train_state={})
    assert snapshot(tmp_path / "checkpoints") == before


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (mounting needs root; the simulated full-disk tests cover other machines)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(folder: Path) -> Path:
    """Take every free byte of ``folder``'s file system; return the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
    return filler


def test_disk_full_during_training_keeps_the_last_checkpoint_and_leaves_no_temporaries(small_disk):
    run = small_disk / "run"
    cfg = tiny("train.steps=6", "train.ckpt_every=2", "train.log_every=100")
    with after_optimizer_step(3, lambda _: fill(small_disk)):
        with pytest.raises(UserError, match="cannot save the checkpoint of step 4 .*No space left on device"):
            train(cfg, run)
    assert checkpoint.load_weights(run)[2] == 2
    assert not list(run.rglob("*.tmp"))
    (small_disk / "filler").unlink()
    train(cfg, run, resume=True)
    assert checkpoint.load_weights(run)[2] == 6


# --- the metrics log and the training state --------------------------------------------------------

def test_a_torn_last_metrics_row_does_not_block_resume(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    with open(run / "metrics.csv", "a") as f:
        f.write("5,0.12")  # a kill in the middle of writing row 5
    assert [r["step"] for r in read_metrics(run / "metrics.csv")] == [1, 2, 3, 4]
    train(tiny("train.steps=6", "train.ckpt_every=2"), run, resume=True)
    assert [r["step"] for r in read_metrics(run / "metrics.csv")] == [1, 2, 3, 4, 5, 6]
    assert (run / "metrics.csv").read_text().endswith("\n")


def test_a_pickled_state_file_is_refused_without_suggesting_to_unpickle_it(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    state = run / "checkpoints" / checkpoint.STATE_NAME
    torch.save({"format": checkpoint.FORMAT, "step": 4, "optimizer": Path("/etc")}, state)
    with pytest.raises(UserError, match=f"{state} holds Python objects") as info:
        train(tiny("train.steps=6"), run, resume=True)
    assert "weights_only" not in str(info.value)


# --- a process group that never forms --------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_process_group_that_never_forms_ends_at_a_short_timeout(tmp_path):
    port = free_port()
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "MULTIDIFF_DIST_TIMEOUT": "1", "CUDA_VISIBLE_DEVICES": ""}
    sets = [arg for item in TINY for arg in ("--set", item)]
    result = cli("train", "toy2d", *sets, "--out", tmp_path / "run", env=env, timeout=100)
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert f"joining the process group at 127.0.0.1:{port} (waiting up to 1 s" in lines[0]
    assert lines[-1].startswith("Error: no process group formed at 127.0.0.1:") and "2 processes" in lines[-1]
    assert not (tmp_path / "run").exists()
