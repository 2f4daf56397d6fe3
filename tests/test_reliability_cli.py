"""The command line under bad values and unlucky machines: out-of-range settings are refused before
anything is written, an unwritable or full disk and a checkpoint that does not fit its config end in
one line, and a seeded sample is the same whatever the number drawn with it (issue 14's seed policy)."""
import errno
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import multidiff
from multidiff import schedules
from multidiff.cli import main
from multidiff.engine import checkpoint
from multidiff.engine.errors import UserError
from multidiff.engine.generate import class_labels, generate, load_run

TINY = ["model.hidden=16", "model.depth=1", "model.time_dim=8", "data.n_train=256", "data.n_test=256",
        "train.batch_size=32", "train.steps=8", "train.ckpt_every=100", "train.sample_every=0", "sample.n=8",
        "sample.steps=3", "sample.batch_size=3"]
SETS = [arg for item in TINY for arg in ("--set", item)]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("train", "toy2d", "--preset", "quick", *SETS, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("setting, words", [
    ("train.steps=0", "train.steps must be at least 1, got 0"),
    ("train.steps=-5", "train.steps must be at least 1"),
    ("sample.guidance=1e30", "sample.guidance must be in [0, 1e+06], got 1e+30"),
    ("sample.guidance=-1", "sample.guidance must be in [0"),
    ("train.lr=0", "train.lr must be in (0, 1], got 0.0"),
    ("train.lr=5", "train.lr must be in (0, 1]"),
    ("train.lr=nan", "train.lr must be in (0, 1], got nan"),
    ("train.seed=-1", "train.seed must be an integer in [0, 2**63 - 1], got -1"),
    ("train.seed=18446744073709551616", "train.seed must be an integer in [0, 2**63 - 1]"),
    ("sample.batch_size=0", "sample.batch_size must be at least 1"),
    ("train.warmup_steps=-1", "train.warmup_steps must be at least 0"),
    ("train.weight_decay=-0.1", "train.weight_decay must be a finite number at least 0"),
    ("model.hidden=0", "model.hidden must be at least 1, got 0"),
    ("model.depth=-2", "model.depth must be at least 1, got -2"),
])
def test_out_of_range_settings_are_refused_before_anything_is_written(setting, words, tmp_path):
    line = one_error_line(invoke("train", "toy2d", "--preset", "quick", "--set", setting, "--out", tmp_path / "r"))
    assert words in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("option, words", [
    (["--guidance", "1e30"], "guidance must be in [0, 1e+06]"),
    (["--guidance", "-0.5"], "guidance must be in [0, 1e+06], got -0.5"),
    (["--seed", "-1"], "seed must be an integer in [0, 2**63 - 1], got -1"),
    (["--seed", str(2**64)], f"seed must be an integer in [0, 2**63 - 1], got {2**64}"),
])
def test_out_of_range_sampling_options_are_refused(option, words, run, tmp_path):
    assert words in one_error_line(invoke("sample", run, "--n", 2, *option, "--out", tmp_path / "s"))
    assert not (tmp_path / "s").exists()


# --- seeds: one policy for the command line and the API -------------------------------------------

def samples(run, tmp_path, *args):
    out = tmp_path / "_".join(map(str, args))
    result = invoke("sample", run, *args, "--out", out)
    assert result.exit_code == 0, result.output
    return np.load(out / "samples.npy")


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddpm"])
def test_a_seeded_sample_does_not_depend_on_how_many_are_drawn(run, tmp_path, sampler):
    four = samples(run, tmp_path, "--seed", 5, "--n", 4, "--sampler", sampler)
    eight = samples(run, tmp_path, "--seed", 5, "--n", 8, "--sampler", sampler)  # chunks of 3: 3 + 3 + 2
    np.testing.assert_allclose(four, eight[:4], atol=1e-5)  # equal on the CPU; a GPU may round differently
    assert not np.allclose(four, samples(run, tmp_path, "--seed", 6, "--n", 4, "--sampler", sampler))


def test_the_command_line_draws_what_multidiff_sample_draws_with_the_same_seed(run, tmp_path):
    from_cli = samples(run, tmp_path, "--seed", 11, "--n", 7, "--sampler", "ddpm", "--guidance", 2.0)
    loaded = load_run(run)
    cfg = loaded.cfg
    diffusion = cfg["diffusion"]
    schedule = schedules.get(diffusion["schedule"], **diffusion["schedule_args"])
    z = multidiff.sample(loaded.model, (7, 2), schedule=schedule, sampler="ddpm", steps=cfg["sample"]["steps"], prediction=diffusion["prediction"],
                         cond=class_labels(7, cfg), guidance_scale=2.0, generator=torch.Generator().manual_seed(11))
    np.testing.assert_allclose(from_cli, loaded.encoder.decode(z).numpy(), atol=1e-5)


def test_sampling_shows_its_progress_on_stderr(run, tmp_path):
    result = invoke("sample", run, "--n", 7, "--out", tmp_path / "s")
    assert result.exit_code == 0
    assert "sampling: 100%" in result.stderr and "9/9" in result.stderr  # 3 chunks of 3 network calls


# --- unwritable and full disks --------------------------------------------------------------------

def mount_tmpfs(folder, options) -> bool:
    folder.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.fixture
def read_only(tmp_path):
    """A read-only folder: a read-only tmpfs as root (permissions do not stop root), else a mode-555 folder."""
    folder = tmp_path / "ro"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    elif mount_tmpfs(folder, "ro,size=1m"):
        yield folder
        subprocess.run(["umount", "-l", str(folder)], check=True)
    else:
        pytest.skip("running as root without permission to mount a read-only tmpfs")


def test_an_unwritable_output_folder_is_one_line(run, read_only):
    assert "cannot write to the run directory" in one_error_line(
        invoke("train", "toy2d", "--preset", "quick", *SETS, "--out", read_only / "run"))
    assert "cannot create the output folder" in one_error_line(
        invoke("sample", run, "--n", 2, "--out", read_only / "samples"))
    assert "cannot write to the output folder" in one_error_line(invoke("sample", run, "--n", 2, "--out", read_only))


def test_a_full_disk_while_writing_samples_removes_this_calls_files(run, tmp_path, monkeypatch):
    """Simulated: the modality's writer stops with ENOSPC after one file and part of another."""
    out = tmp_path / "s"
    out.mkdir()
    (out / "0000_old.npy").write_bytes(b"kept")
    loaded = load_run(run)

    def write(x, labels, out_dir, cfg):
        (out_dir / "0001_new.npy").write_bytes(b"complete")
        (out_dir / "0002_new.npy").write_bytes(b"torn")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(type(loaded.modality), "write", lambda self, *args: write(*args))
    with pytest.raises(UserError, match=f"cannot write the samples to {out}: No space left on device"):
        generate(run, 2, out_dir=out, device="cpu")
    assert sorted(p.name for p in out.iterdir()) == ["0000_old.npy"]


def test_a_full_disk_while_sampling_is_one_line_and_leaves_no_partial_file(run, tmp_path):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "size=64k"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        with open(disk / "filler", "wb", buffering=0) as f:
            with pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 4096)
        (disk / "s").mkdir()
        assert "No space left on device" in one_error_line(invoke("sample", run, "--n", 20, "--out", disk / "s"))
        assert list((disk / "s").iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


# --- a checkpoint whose config does not describe its tensors -------------------------------------

def test_a_config_that_does_not_fit_the_tensors_is_one_line_naming_the_checkpoint(run, tmp_path):
    weights = tmp_path / "run" / "checkpoints" / checkpoint.WEIGHTS_NAME
    weights.parent.mkdir(parents=True)
    with open(run / "checkpoints" / checkpoint.WEIGHTS_NAME, "rb") as f:
        metadata = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    cfg = json.loads(metadata["config"])
    cfg["model"]["hidden"] = 32
    save_file(load_file(run / "checkpoints" / checkpoint.WEIGHTS_NAME), weights,
              metadata={**metadata, "config": json.dumps(cfg)})
    for args in (["sample", tmp_path / "run", "--n", 2, "--out", tmp_path / "s"], ["eval", tmp_path / "run"]):
        line = one_error_line(invoke(*args))
        assert f"{weights}: the weights do not fit the network its config describes (size mismatch" in line
