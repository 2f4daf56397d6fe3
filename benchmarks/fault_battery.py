"""The fault battery: corrupt inputs, bad settings and unlucky machines, each tried through the real command line.

Every case builds what it needs in a temporary folder, runs ``python -m multidiff ...`` in subprocesses
(toy2d and tiny recipes, a few training steps) and classifies what happened:

    ok              exit 0, and the result checked where there is something to check
    clear error     exit 1 with one "Error: ..." line naming the culprit, no traceback (or click's usage
                    error, exit 2, for a malformed option)
    skipped         exit 0 with one line per skipped file and a count (data.skip_bad_files = true)
    unclear error   exit 1, but the line does not name the culprit (or there is no such line)
    traceback       a Python traceback, or an exit status other than 0 and 1
    hang            no answer within the case's time limit
    silent wrong    garbage accepted or a promise broken with exit 0 (or a bad checkpoint kept)
    data lost       a run's checkpoint or log overwritten, corrupted or mixed with another run's
    debris          temporary or partial files left behind by a failure

Each case lists the outcomes that count as a pass; the table ends with the tally. The "half" column
says which part of issue 15 a case belongs to (data, engine), or "held" for behaviour that already
held when the battery was written. Disk-full and read-only cases mount small tmpfs file systems when
the battery runs as root with the right to mount; otherwise disk full is simulated with RLIMIT_FSIZE
(the write fails with EFBIG instead of ENOSPC) and the read-only case relies on file permissions.

    python benchmarks/fault_battery.py               # all 67 cases: 12 minutes on a loaded 2-core machine
    python benchmarks/fault_battery.py -k off -k idx # the cases whose name contains "off" or "idx"
    python benchmarks/fault_battery.py --list
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gzip
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OK, CLEAR, SKIPPED = "ok", "clear error", "skipped"
UNCLEAR, TRACEBACK, HANG, SILENT, LOST, DEBRIS = ("unclear error", "traceback", "hang", "silent wrong", "data lost",
                                                  "debris")
NOT_RUN = "not run"
CATEGORIES = (OK, CLEAR, SKIPPED, UNCLEAR, TRACEBACK, HANG, SILENT, LOST, DEBRIS, NOT_RUN)


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


QUIET_TRAIN = ("train.warmup_steps=0", "train.ckpt_every=1000", "train.sample_every=0", "train.log_every=1")
TOY = sets("model.hidden=16", "model.depth=1", "model.time_dim=8", "data.n_train=64", "data.n_test=32",
           "train.batch_size=16", "train.steps=4", "sample.n=8", "sample.steps=4", *QUIET_TRAIN)
POINTS = sets("data.n_points=32", "model.width=16", "model.depth=1", "model.heads=2", "train.batch_size=2",
              "train.steps=2", "sample.n=2", "sample.steps=2", "data.train_per_class=0", "data.test_per_class=0",
              *QUIET_TRAIN)
UNET = ("model.channels=8", "model.channel_mult=[1]", "model.num_res_blocks=1", "model.attn_levels=[]",
        "model.dropout=0.0", "train.batch_size=2", "train.steps=2", "sample.n=2", "sample.steps=2", *QUIET_TRAIN)
IMAGES = sets("data.source=folder", "data.resolution=8", "data.channels=1", *UNET)
IDX = sets("data.resolution=8", *UNET)
AUDIO = sets("encoder.griffin_lim_iters=2", "data.trim_db=60.0", *UNET)


@dataclass
class Result:
    rc: int | None
    out: str
    err: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.rc is None

    @property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.err.replace("\r", "\n").splitlines() if line.strip()]


class Lab:
    """A temporary folder, the environment of the subprocesses, and the runs several cases share."""

    def __init__(self, root: Path):
        self.root = root
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
                    "MULTIDIFF_CACHE": str(root / "cache")}
        for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            self.env.pop(key, None)
        self._toy_run: Path | None = None
        self._count = 0

    def dir(self, name: str) -> Path:
        self._count += 1
        path = self.root / f"{self._count:03d}-{name}"
        path.mkdir(parents=True)
        return path

    def start(self, *args, env: dict | None = None, limits=None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "multidiff", *map(str, args)], cwd=self.root,
                                env={**self.env, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True, preexec_fn=limits)

    def finish(self, proc: subprocess.Popen, started: float, timeout: float) -> Result:
        try:
            out, err = proc.communicate(timeout=max(1.0, timeout - (time.perf_counter() - started)))
            return Result(proc.returncode, out, err, time.perf_counter() - started)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return Result(None, out, err, time.perf_counter() - started)

    def cli(self, *args, timeout: float = 240, env: dict | None = None, limits=None) -> Result:
        started = time.perf_counter()
        return self.finish(self.start(*args, env=env, limits=limits), started, timeout)

    def toy_run(self) -> Path:
        """A trained toy2d run (4 steps), made once; copy it before changing it."""
        if self._toy_run is None:
            run = self.dir("toy-run") / "run"
            r = self.cli("train", "toy2d", *TOY, "--out", run)
            if r.rc != 0:
                raise RuntimeError(f"the shared toy2d run failed: {r.err[-500:]}")
            self._toy_run = run
        return self._toy_run

    def toy_copy(self, name: str) -> Path:
        target = self.dir(name) / "run"
        shutil.copytree(self.toy_run(), target)
        return target


# --- judging ------------------------------------------------------------------------------------------

def judge(r: Result, *names: str) -> tuple[str, str]:
    """The outcome of one command; a clear error must name every one of ``names``."""
    lines = r.lines
    if r.timed_out:
        return HANG, f"no answer within {r.seconds:.0f} s" + (f"; last line: {lines[-1][:120]}" if lines else "")
    if "Traceback (most recent call last)" in r.err or r.rc not in (0, 1, 2):
        return TRACEBACK, f"exit {r.rc}: " + (lines[-1][:160] if lines else "no message")
    errors = [line for line in lines if line.startswith("Error:")]
    if r.rc in (1, 2):
        if len(errors) == 1 and all(n.lower() in errors[0].lower() for n in names):
            return CLEAR, errors[0][:200]
        missing = [n for n in names if not errors or n.lower() not in errors[0].lower()]
        return UNCLEAR, (errors[0][:160] if errors else lines[-1][:160] if lines else "no message") + \
            (f" (does not name {', '.join(missing)})" if missing else "")
    skips = [line for line in lines if line.startswith("skipped")]
    if skips:
        return SKIPPED, skips[-1][:200]
    return OK, ""


def refused(r: Result, *names: str) -> tuple[str, str]:
    """For a case whose input must be refused: exit 0 is a silent wrong result."""
    category, note = judge(r, *names)
    if category in (OK, SKIPPED):
        return SILENT, "accepted with exit 0" + (f" ({note})" if note else "")
    return category, note


def skipped(r: Result, *names: str) -> tuple[str, str]:
    """For a case run with skip_bad_files = true: a line per file naming it and a count, as plain lines."""
    category, note = judge(r)
    if category in (OK, SKIPPED) and "UserWarning" in r.err:
        return UNCLEAR, "skips reported as Python warnings"
    if category == OK:
        return SILENT, "exit 0 without a skip line"
    if category != SKIPPED:
        return category, note
    per_file = [line for line in r.lines if line.startswith("skipped:")]
    if not per_file or not all(any(n in line for line in per_file) for n in names):
        return UNCLEAR, f"no per-file skip line naming {', '.join(names)}"
    return SKIPPED, per_file[0][-160:]


def trained(r: Result) -> tuple[str, str]:
    category, note = judge(r)
    return category, note if category != OK else r.out.strip().splitlines()[0][:160] if r.out.strip() else ""


# --- building bad inputs ------------------------------------------------------------------------------

def write_wav(path: Path, seconds: float = 0.3, rate: int = 8000, subtype: str = "PCM_16", nan: bool = False):
    import soundfile as sf

    wave = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)
    if nan:
        wave[100] = np.nan
    sf.write(path, wave.astype(np.float32), rate, subtype=subtype)
    return path


def audio_folder(lab: Lab, name: str) -> Path:
    """FSDD-style names {digit}_{speaker}_{index}.wav: four training clips (index >= 5), two test clips."""
    root = lab.dir(name) / "wavs"
    root.mkdir()
    for stem in ("0_a_5", "1_a_6", "0_b_7", "1_b_8", "0_a_0", "1_b_1"):
        write_wav(root / f"{stem}.wav")
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def idx_folder(lab: Lab, name: str, labels: np.ndarray | None = None, n_images: int | None = None) -> Path:
    root = lab.dir(name) / "mnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    train_labels = np.arange(40) % 10 if labels is None else labels
    for prefix, lab_values in (("train", train_labels), ("t10k", np.arange(20) % 10)):
        count = n_images if (n_images is not None and prefix == "train") else len(lab_values)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 8, 8)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", lab_values)
    return root


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes]) -> bytes:
    """A PNG from raw scan lines (filter byte included), encoded from the PNG specification."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for row in rows) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def png16(pixels: np.ndarray) -> bytes:
    height, width = pixels.shape[:2]
    rows = [b"\x00" + row.astype(">u2").tobytes() for row in pixels.reshape(height, -1)]
    return png_bytes(width, height, 16, 0 if pixels.ndim == 2 else 2, rows)


def bomb_png(side: int = 20000) -> bytes:
    """A 1-bit image of side x side pixels (400 million at 20000): tens of kilobytes on disk."""
    row = b"\x00" * (1 + side // 8)
    return png_bytes(side, side, 1, 0, [row] * side)


def image_folder(lab: Lab, name: str, per_class: int = 2) -> Path:
    from PIL import Image

    root = lab.dir(name) / "images"
    for c, cls in enumerate(("cats", "dogs")):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (8, 8), 40 + 100 * c + i).save(root / cls / f"{cls}{i}.png")
    return root


def box_off_lines() -> list[str]:
    import trimesh

    return trimesh.exchange.off.export_off(trimesh.creation.box()).splitlines()


def points_folder(lab: Lab, name: str, files: dict[str, object] | None = None) -> Path:
    """box/{train,test}/: three training meshes and one test mesh, plus ``files`` (name -> lines,
    bytes or an (M, 3) array) in box/train/."""
    root = lab.dir(name) / "clouds"
    lines = box_off_lines()
    for split, count in (("train", 3), ("test", 1)):
        (root / "box" / split).mkdir(parents=True)
        for i in range(count):
            (root / "box" / split / f"good{i}.off").write_text("\n".join(lines) + "\n")
    for file, content in (files or {}).items():
        target = root / "box" / "train" / file
        if isinstance(content, np.ndarray):
            np.save(target, content.astype(np.float32))
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text("\n".join(content) + "\n")
    return root


def with_point(cloud: np.ndarray, index: int, xyz) -> np.ndarray:
    cloud = cloud.copy()
    cloud[index] = xyz
    return cloud


def cloud_folder(lab: Lab, name: str, file: str, change) -> Path:
    """thing/train/ with six normal clouds of 64 points as .npy, c0.npy ... c5.npy, ``file`` replaced by
    ``change(its cloud)``; thing/test/ with one cloud."""
    root = lab.dir(name) / "clouds"
    (root / "thing" / "train").mkdir(parents=True)
    (root / "thing" / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    clouds = {f"c{i}.npy": rng.normal(size=(64, 3)) for i in range(6)}
    clouds[file] = change(clouds[file])
    for file, cloud in clouds.items():
        np.save(root / "thing" / "train" / file, cloud.astype(np.float32))
    np.save(root / "thing" / "test" / "t0.npy", rng.normal(size=(64, 3)).astype(np.float32))
    return root


def toy_csv(lab: Lab, name: str, bad_row: str | None) -> Path:
    rng = np.random.default_rng(0)
    rows = [f"{x:.4f},{y:.4f},{i % 2}" for i, (x, y) in enumerate(rng.normal(size=(60, 2)))]
    if bad_row is not None:
        rows[23] = bad_row
    path = lab.dir(name) / "points.csv"
    path.write_text("x,y,label\n" + "\n".join(rows) + "\n")
    return path


def ply_points(n: int = 64) -> bytes:
    import trimesh

    return trimesh.PointCloud(np.random.default_rng(0).normal(size=(n, 3))).export(file_type="ply")


def tensors_finite(run: Path) -> tuple[bool, str]:
    from safetensors.numpy import load_file

    weights = run / "checkpoints" / "last.safetensors"
    if not weights.is_file():
        return True, "no checkpoint written"
    bad = [k for k, v in load_file(weights).items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    return not bad, f"{len(bad)} non-finite tensors in the checkpoint, e.g. {bad[0]}" if bad else "checkpoint finite"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Unavailable(Exception):
    """The machine cannot stage this case (e.g. no right to mount a file system)."""


@contextlib.contextmanager
def small_filesystem(path: Path, size_bytes: int, read_only: bool = False):
    """A tmpfs of ``size_bytes`` mounted at ``path`` for the duration (Unavailable when mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_bytes},mode=0777" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        raise Unavailable(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()[:100]}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def file_size_limit(max_bytes: int):
    """A preexec function: writes beyond ``max_bytes`` in any one file fail (EFBIG), a stand-in for a full disk."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return limit


# --- the cases ----------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    half: str
    expect: tuple[str, ...]
    run: object
    what: str


CASES: list[Case] = []


def case(name: str, half: str, expect=(CLEAR,)):
    def register(fn):
        CASES.append(Case(name, half, tuple(expect), fn, (fn.__doc__ or "").strip()))
        return fn
    return register


# audio files

@case("wav_corrupt", "held")
def _(lab):
    """a WAV file of garbage bytes"""
    root = audio_folder(lab, "wav-corrupt")
    (root / "1_c_9.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 8)
    return refused(lab.cli("train", "spoken_digits", *AUDIO, "--data", root, "--out", root.parent / "run"),
                   "1_c_9.wav")


@case("wav_corrupt_skip", "data", expect=(SKIPPED,))
def _(lab):
    """a WAV file of garbage bytes, skip_bad_files = true"""
    root = audio_folder(lab, "wav-corrupt-skip")
    (root / "1_c_9.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 8)
    return skipped(lab.cli("train", "spoken_digits", *AUDIO, *sets("data.skip_bad_files=true"), "--data", root,
                           "--out", root.parent / "run"), "1_c_9.wav")


@case("wav_empty", "held")
def _(lab):
    """a WAV file of 0 bytes"""
    root = audio_folder(lab, "wav-empty")
    (root / "1_c_9.wav").write_bytes(b"")
    return refused(lab.cli("train", "spoken_digits", *AUDIO, "--data", root, "--out", root.parent / "run"),
                   "1_c_9.wav")


@case("wav_truncated", "data")
def _(lab):
    """a WAV file cut to a third of its announced samples"""
    root = audio_folder(lab, "wav-truncated")
    raw = write_wav(root / "1_c_9.wav").read_bytes()
    (root / "1_c_9.wav").write_bytes(raw[:len(raw) // 3])
    return refused(lab.cli("train", "spoken_digits", *AUDIO, "--data", root, "--out", root.parent / "run"),
                   "1_c_9.wav", "truncated")


@case("wav_nan", "held")
def _(lab):
    """a float WAV holding a NaN sample"""
    root = audio_folder(lab, "wav-nan")
    write_wav(root / "1_c_9.wav", subtype="FLOAT", nan=True)
    return refused(lab.cli("train", "spoken_digits", *AUDIO, "--data", root, "--out", root.parent / "run"),
                   "1_c_9.wav")


# IDX files

@case("idx_truncated", "held")
def _(lab):
    """an IDX image file missing its last bytes"""
    root = idx_folder(lab, "idx-truncated")
    images = root / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:-10]))
    return refused(lab.cli("train", "mnist", *IDX, "--data", root, "--out", root.parent / "run"),
                   "train-images-idx3-ubyte")


@case("idx_not_idx", "held")
def _(lab):
    """an IDX label file that is a PNG"""
    root = idx_folder(lab, "idx-not-idx")
    (root / "train-labels-idx1-ubyte.gz").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    return refused(lab.cli("train", "mnist", *IDX, "--data", root, "--out", root.parent / "run"),
                   "train-labels-idx1-ubyte")


@case("idx_count_mismatch", "held")
def _(lab):
    """40 labels for 39 images"""
    root = idx_folder(lab, "idx-count", n_images=39)
    return refused(lab.cli("train", "mnist", *IDX, "--data", root, "--out", root.parent / "run"),
                   "train-labels-idx1-ubyte")


@case("idx_label_255", "data")
def _(lab):
    """one MNIST label byte of 255 among the digits 0-9"""
    labels = np.arange(40) % 10
    labels[13] = 255
    root = idx_folder(lab, "idx-255", labels=labels)
    return refused(lab.cli("train", "mnist", *IDX, "--data", root, "--out", root.parent / "run"),
                   "train-labels-idx1-ubyte", "255", "position 13")


# images

@case("png_corrupt", "held")
def _(lab):
    """a PNG signature followed by garbage"""
    root = image_folder(lab, "png-corrupt")
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return refused(lab.cli("train", "mnist", *IMAGES, "--data", root, "--out", root.parent / "run"), "broken.png")


@case("png_corrupt_skip", "data", expect=(SKIPPED,))
def _(lab):
    """a PNG signature followed by garbage, skip_bad_files = true"""
    root = image_folder(lab, "png-corrupt-skip")
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return skipped(lab.cli("train", "mnist", *IMAGES, *sets("data.skip_bad_files=true"), "--data", root,
                           "--out", root.parent / "run"), "broken.png")


@case("png_truncated", "held")
def _(lab):
    """a valid PNG cut in half"""
    root = image_folder(lab, "png-truncated")
    raw = png16(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    (root / "dogs" / "half.png").write_bytes(raw[:len(raw) // 2])
    return refused(lab.cli("train", "mnist", *IMAGES, "--data", root, "--out", root.parent / "run"), "half.png")


def _png16_case(lab, name: str, pixels: np.ndarray, channels: int, tolerance: float) -> tuple[str, str]:
    root = lab.dir(name) / "images"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            (root / cls / f"{i}.png").write_bytes(png16(pixels))
    r = lab.cli("train", "mnist", *IMAGES, *sets(f"data.channels={channels}"), "--data", root,
                "--out", root.parent / "run")
    category, note = trained(r)
    if category != OK:
        return category, note
    from modalities.image.data import image_dataset

    cfg = json.loads((root.parent / "run" / "config.json").read_text())
    got = image_dataset(cfg, "train").images[0].numpy().astype(float)
    want = pixels / 257.0
    want = np.broadcast_to(want[None] if pixels.ndim == 2 else want.transpose(2, 0, 1), got.shape)
    error = float(np.abs(got - want).max())
    return (OK, f"8-bit pixels within {error:.2f} of v/257") if error <= tolerance else \
        (SILENT, f"8-bit pixels off by up to {error:.0f} levels (clipped?)")


@case("png16_gray", "data", expect=(OK,))
def _(lab):
    """a 16-bit grayscale PNG (values up to 65535)"""
    pixels = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1040).astype(np.uint16)
    return _png16_case(lab, "png16-gray", pixels, 1, 0.5)


@case("png16_rgb", "data", expect=(OK,))
def _(lab):
    """a 16-bit RGB PNG"""
    base = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1040
    pixels = np.stack([base, base[::-1], 65535 - base], axis=-1).astype(np.uint16)
    return _png16_case(lab, "png16-rgb", pixels, 3, 1.0)


@case("png_bomb", "data")
def _(lab):
    """a PNG announcing 20000 x 20000 pixels (a decompression bomb)"""
    root = image_folder(lab, "png-bomb")
    (root / "dogs" / "bomb.png").write_bytes(bomb_png())
    return refused(lab.cli("train", "mnist", *IMAGES, "--data", root, "--out", root.parent / "run"), "bomb.png")


@case("png_bomb_skip", "data", expect=(SKIPPED,))
def _(lab):
    """a decompression-bomb PNG, skip_bad_files = true"""
    root = image_folder(lab, "png-bomb-skip")
    (root / "dogs" / "bomb.png").write_bytes(bomb_png())
    return skipped(lab.cli("train", "mnist", *IMAGES, *sets("data.skip_bad_files=true"), "--data", root,
                           "--out", root.parent / "run"), "bomb.png")


@case("image_empty_class", "data")
def _(lab):
    """an empty class folder among the image classes"""
    root = image_folder(lab, "image-empty-class")
    (root / "zebras").mkdir()
    return refused(lab.cli("train", "mnist", *IMAGES, "--data", root, "--out", root.parent / "run"), "zebras")


# point clouds

@case("ply_corrupt", "held")
def _(lab):
    """a PLY header followed by too few bytes of vertices"""
    root = points_folder(lab, "ply-corrupt", {"bad.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex "
                                                         b"100\nproperty float x\nproperty float y\nproperty float z\n"
                                                         b"end_header\n" + bytes(50)})
    return refused(lab.cli("train", "primitives", *POINTS, "--data", root, "--out", root.parent / "run"), "bad.ply")


@case("ply_truncated", "held")
def _(lab):
    """a binary PLY point cloud cut in half"""
    raw = ply_points()
    root = points_folder(lab, "ply-truncated", {"half.ply": raw[:len(raw) // 2]})
    return refused(lab.cli("train", "primitives", *POINTS, "--data", root, "--out", root.parent / "run"), "half.ply")


@case("off_nan", "data")
def _(lab):
    """an OFF mesh with a NaN vertex"""
    lines = box_off_lines()
    lines[4] = "nan 0.5 -0.5"
    root = points_folder(lab, "off-nan", {"nan.off": lines})
    return refused(lab.cli("train", "primitives", *POINTS, "--data", root, "--out", root.parent / "run"), "nan.off")


@case("off_nan_skip", "data", expect=(SKIPPED,))
def _(lab):
    """an OFF mesh with a NaN vertex, skip_bad_files = true; nothing non-finite may reach the cache"""
    lines = box_off_lines()
    lines[4] = "nan 0.5 -0.5"
    root = points_folder(lab, "off-nan-skip", {"nan.off": lines})
    r = lab.cli("train", "primitives", *POINTS, *sets("data.skip_bad_files=true"), "--data", root,
                "--out", root.parent / "run")
    cached = list((lab.root / "cache").rglob("*.npy"))
    if any(not np.isfinite(np.load(p)).all() for p in cached):
        return SILENT, "a non-finite cloud was written to the mesh cache"
    return skipped(r, "nan.off")


@case("off_truncated", "data")
def _(lab):
    """an OFF mesh missing its last faces"""
    root = points_folder(lab, "off-truncated", {"cut.off": box_off_lines()[:16]})
    return refused(lab.cli("train", "primitives", *POINTS, "--data", root, "--out", root.parent / "run"), "cut.off")


@case("off_half", "held")
def _(lab):
    """an OFF mesh cut in half, mid-vertex"""
    text = "\n".join(box_off_lines())
    root = points_folder(lab, "off-half", {"half.off": text[:len(text) // 3].encode()})
    return refused(lab.cli("train", "primitives", *POINTS, "--data", root, "--out", root.parent / "run"), "half.off")


@case("off_miscounted", "data")
def _(lab):
    """an OFF mesh whose header announces more vertices than it holds"""
    lines = box_off_lines()
    root = points_folder(lab, "off-miscounted", {"count.off": [lines[0], "11 12 0"] + lines[2:]})
    return refused(lab.cli("train", "primitives", *POINTS, "--data", root, "--out", root.parent / "run"),
                   "count.off")


@case("points_empty_category", "data")
def _(lab):
    """a category folder with no training files"""
    root = points_folder(lab, "points-empty-category")
    (root / "vase" / "train").mkdir(parents=True)
    return refused(lab.cli("train", "primitives", *POINTS, "--data", root, "--out", root.parent / "run"), "vase")


@case("points_outlier_point", "data")
def _(lab):
    """one point at 1e30 in one cloud, normalize = global"""
    root = cloud_folder(lab, "points-outlier-point", "c3.npy", lambda c: with_point(c, 5, [1e30, 0, 0]))
    return refused(lab.cli("train", "primitives", *POINTS, *sets("data.normalize=global"), "--data", root,
                           "--out", root.parent / "run"), "c3.npy", "outlier")


@case("points_outlier_cloud", "data")
def _(lab):
    """one cloud a million times larger than the others, normalize = global"""
    root = cloud_folder(lab, "points-outlier-cloud", "c4.npy", lambda c: c * 1e6)
    return refused(lab.cli("train", "primitives", *POINTS, *sets("data.normalize=global"), "--data", root,
                           "--out", root.parent / "run"), "c4.npy", "outlier")


@case("points_coincident", "data")
def _(lab):
    """a cloud whose 64 points all coincide"""
    root = cloud_folder(lab, "points-coincident", "c2.npy", lambda c: np.ones_like(c))
    return refused(lab.cli("train", "primitives", *POINTS, "--data", root, "--out", root.parent / "run"),
                   "c2.npy", "coincide")


@case("points_npy_nan", "data")
def _(lab):
    """a point file with one NaN point that subsampling would not pick"""
    root = cloud_folder(lab, "points-npy-nan", "c1.npy", lambda c: with_point(c, 63, [np.nan, 0, 0]))
    return refused(lab.cli("train", "primitives", *POINTS, "--data", root, "--out", root.parent / "run"), "c1.npy")


# toy2d files and settings

@case("toy_csv_nan", "data")
def _(lab):
    """a toy2d CSV with a NaN row"""
    path = toy_csv(lab, "toy-csv-nan", "nan,0.5,1")
    return refused(lab.cli("train", "toy2d", *TOY, "--data", path, "--out", path.parent / "run"), "points.csv",
                   "line 25")


@case("toy_csv_inf", "data")
def _(lab):
    """a toy2d CSV with an infinite coordinate"""
    path = toy_csv(lab, "toy-csv-inf", "0.5,-inf,1")
    return refused(lab.cli("train", "toy2d", *TOY, "--data", path, "--out", path.parent / "run"), "points.csv")


@case("toy_csv_text", "held")
def _(lab):
    """a toy2d CSV with a word in a number's place"""
    path = toy_csv(lab, "toy-csv-text", "0.5,banana,1")
    return refused(lab.cli("train", "toy2d", *TOY, "--data", path, "--out", path.parent / "run"), "points.csv")


@case("toy_csv_label_255", "data")
def _(lab):
    """a toy2d CSV whose labels are 0, 1 and one 255"""
    path = toy_csv(lab, "toy-csv-255", "0.5,0.5,255")
    return refused(lab.cli("train", "toy2d", *TOY, "--data", path, "--out", path.parent / "run"), "points.csv",
                   "255")


@case("set_components_0", "data")
def _(lab):
    """--set data.components=0"""
    return refused(lab.cli("train", "toy2d", *TOY, *sets("data.components=0"), "--out", lab.dir("c0") / "run"),
                   "data.components")


@case("data_on_generated_recipe", "data")
def _(lab):
    """--data DIR on the shapes recipe, which generates its images"""
    folder = lab.dir("data-on-generated")
    return refused(lab.cli("train", "shapes", "--data", folder, "--out", folder / "run"), "no data path")


# names, paths, settings

@case("missing_data_path", "held")
def _(lab):
    """--data pointing nowhere"""
    return refused(lab.cli("train", "toy2d", *TOY, "--data", lab.root / "nowhere.csv", "--out", lab.dir("m") / "run"),
                   "nowhere.csv")


@case("unknown_recipe", "held")
def _(lab):
    """an unknown recipe name"""
    return refused(lab.cli("train", "toy3d", "--out", lab.dir("u") / "run"), "toy3d")


@case("unknown_key", "held")
def _(lab):
    """--set train.stepz=5"""
    return refused(lab.cli("train", "toy2d", *TOY, *sets("train.stepz=5"), "--out", lab.dir("k") / "run"), "stepz")


@case("wrong_type", "held")
def _(lab):
    """--set train.steps=[1,2]"""
    return refused(lab.cli("train", "toy2d", *TOY, *sets("train.steps=[1,2]"), "--out", lab.dir("t") / "run"),
                   "train.steps")


@case("steps_zero", "engine")
def _(lab):
    """--set train.steps=0"""
    return refused(lab.cli("train", "toy2d", *TOY, *sets("train.steps=0"), "--out", lab.dir("s0") / "run"),
                   "train.steps")


@case("steps_negative", "engine")
def _(lab):
    """--set train.steps=-5"""
    return refused(lab.cli("train", "toy2d", *TOY, *sets("train.steps=-5"), "--out", lab.dir("s-") / "run"),
                   "train.steps")


@case("lr_absurd", "engine")
def _(lab):
    """--set train.lr=1e9"""
    return refused(lab.cli("train", "toy2d", *TOY, *sets("train.lr=1e9"), "--out", lab.dir("lr") / "run"), "train.lr")


@case("lr_negative", "engine")
def _(lab):
    """--set train.lr=-0.001"""
    return refused(lab.cli("train", "toy2d", *TOY, *sets("train.lr=-0.001"), "--out", lab.dir("lr-") / "run"),
                   "train.lr")


@case("model_size_zero", "engine")
def _(lab):
    """--set model.hidden=0"""
    return refused(lab.cli("train", "toy2d", *TOY, *sets("model.hidden=0"), "--out", lab.dir("h0") / "run"),
                   "model.hidden")


@case("batch_size_zero", "held")
def _(lab):
    """--set train.batch_size=0"""
    return refused(lab.cli("train", "toy2d", *TOY, *sets("train.batch_size=0"), "--out", lab.dir("b0") / "run"),
                   "train.batch_size")


@case("guidance_huge", "engine")
def _(lab):
    """sample --guidance 1e30"""
    return refused(lab.cli("sample", lab.toy_run(), "--n", 4, "--guidance", "1e30", "--out", lab.dir("g") / "s"),
                   "guidance")


@case("guidance_negative", "engine")
def _(lab):
    """sample --guidance -2"""
    return refused(lab.cli("sample", lab.toy_run(), "--n", 4, "--guidance", "-2", "--out", lab.dir("g-") / "s"),
                   "guidance")


@case("seed_too_large", "engine")
def _(lab):
    """sample --seed 2**70"""
    return refused(lab.cli("sample", lab.toy_run(), "--n", 4, "--seed", 2 ** 70, "--out", lab.dir("seed") / "s"),
                   "seed")


@case("unknown_sampler", "held")
def _(lab):
    """sample --sampler nosuch"""
    return refused(lab.cli("sample", lab.toy_run(), "--n", 4, "--sampler", "nosuch", "--out", lab.dir("us") / "s"),
                   "nosuch")


@case("unknown_class", "held")
def _(lab):
    """sample --cond component=99"""
    return refused(lab.cli("sample", lab.toy_run(), "--n", 4, "--cond", "component=99", "--out", lab.dir("uc") / "s"),
                   "99")


@case("sample_missing_run", "held")
def _(lab):
    """sample from a run folder that does not exist"""
    return refused(lab.cli("sample", lab.root / "no-run", "--n", 4, "--out", lab.dir("nr") / "s"), "no-run")


@case("eval_missing_run", "held")
def _(lab):
    """eval on a run folder that does not exist"""
    return refused(lab.cli("eval", lab.root / "no-run-either"), "no-run-either")


@case("out_is_a_file", "held")
def _(lab):
    """--out naming an existing file"""
    target = lab.dir("out-file") / "taken"
    target.write_text("not a folder")
    return refused(lab.cli("train", "toy2d", *TOY, "--out", target), "taken")


# faults of the run directory and the machine

@case("read_only_out", "engine")
def _(lab):
    """--out inside a read-only file system"""
    folder = lab.dir("read-only") / "ro"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        return refused(lab.cli("train", "toy2d", *TOY, "--out", folder / "run"), "ro/run")
    with small_filesystem(folder, 1 << 20, read_only=True):
        return refused(lab.cli("train", "toy2d", *TOY, "--out", folder / "run"), "ro/run")


@case("rerun_without_resume", "held")
def _(lab):
    """train again into a finished run without --resume: refused, the checkpoint untouched"""
    run = lab.toy_copy("rerun")
    before = file_digest(run / "checkpoints" / "last.safetensors")
    category, note = refused(lab.cli("train", "toy2d", *TOY, "--out", run), "--resume")
    if file_digest(run / "checkpoints" / "last.safetensors") != before:
        return LOST, "the finished run's checkpoint was overwritten"
    return category, note


@case("concurrent_train", "engine")
def _(lab):
    """a second train on the same --out while the first runs: refused, the first run intact"""
    run = lab.dir("concurrent") / "run"
    args = ["train", "toy2d", *TOY, *sets("train.steps=1500", "train.log_every=10"), "--out", run]
    started = time.perf_counter()
    first = lab.start(*args)
    while not (run / "config.json").exists() and first.poll() is None and time.perf_counter() - started < 120:
        time.sleep(0.2)
    second = lab.cli(*args, timeout=240)
    first_result = lab.finish(first, started, 300)
    if first_result.rc is None or second.rc is None:
        return HANG, "a run did not finish"
    steps = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:] if line]
    if second.rc == 0:
        return LOST, "both runs reported success into one run directory"
    if first_result.rc != 0 or steps != sorted(set(steps)) or steps[-1:] != [1500]:
        return LOST, f"the first run was damaged (exit {first_result.rc}, metrics steps {steps[:3]}...{steps[-3:]})"
    return judge(second, "pid")


@case("sigkill_then_resume", "held", expect=(OK,))
def _(lab):
    """SIGKILL after the first checkpoint, then --resume to the end"""
    run = lab.dir("sigkill") / "run"
    args = ["train", "toy2d", *TOY, *sets("train.steps=600", "train.ckpt_every=100", "train.log_every=50"),
            "--out", run]
    started = time.perf_counter()
    proc = lab.start(*args)
    while not (run / "checkpoints" / "last.safetensors").exists() and proc.poll() is None:
        if time.perf_counter() - started > 120:
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    r = lab.cli(*args, "--resume")
    category, note = trained(r)
    if category == OK and json.loads((run / "summary.json").read_text())["steps"] != 600:
        return SILENT, "the resumed run did not reach step 600"
    return category, note


@case("corrupt_checkpoint", "engine")
def _(lab):
    """sample from a checkpoint whose weight bytes were overwritten"""
    run = lab.toy_copy("corrupt-ckpt")
    weights = run / "checkpoints" / "last.safetensors"
    raw = bytearray(weights.read_bytes())
    header = 8 + int.from_bytes(raw[:8], "little")
    middle = header + (len(raw) - header) // 2
    raw[middle:middle + 64] = b"\x7f" * 64
    weights.write_bytes(bytes(raw))
    return refused(lab.cli("sample", run, "--n", 4, "--out", run.parent / "s"), "last.safetensors")


@case("config_mismatch_at_sample", "engine")
def _(lab):
    """sample from a checkpoint whose config names a wider network than its tensors"""
    run = lab.toy_copy("config-mismatch")
    weights = run / "checkpoints" / "last.safetensors"
    raw = weights.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    cfg = json.loads(header["__metadata__"]["config"])
    cfg["model"]["hidden"] = 32
    header["__metadata__"]["config"] = json.dumps(cfg)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    weights.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + length:])
    return refused(lab.cli("sample", run, "--n", 4, "--out", run.parent / "s"))


@case("pickled_state_refused", "engine")
def _(lab):
    """--resume with a training state holding a pickled object: one line, no advice to pass weights_only=False"""
    import torch

    run = lab.toy_copy("pickled-state")
    state = run / "checkpoints" / "last.state.pt"
    torch.save({"format": "multidiff-checkpoint/1", "step": 4, "when": datetime.datetime(2020, 1, 1)}, state)
    (run / "checkpoints" / "prev.state.pt").unlink(missing_ok=True)
    r = lab.cli("train", "toy2d", *TOY, *sets("train.steps=8"), "--out", run, "--resume")
    category, note = refused(r, "last.state.pt")
    if category == CLEAR and any(advice in r.err for advice in ("weights_only", "can still be loaded")):
        return UNCLEAR, "repeats PyTorch's advice on loading the file anyway"
    return category, note


@case("torn_metrics_resume", "engine", expect=(OK,))
def _(lab):
    """--resume after the last row of metrics.csv was torn by a crash"""
    run = lab.toy_copy("torn-metrics")
    with open(run / "metrics.csv", "a") as f:
        f.write("5,0.3")
    r = lab.cli("train", "toy2d", *TOY, *sets("train.steps=8"), "--out", run, "--resume")
    category, note = trained(r)
    if category != OK:
        return category, note
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()[1:] if line]
    steps = [int(row[0]) for row in rows if len(row) == 5]
    if steps != list(range(1, 9)) or any(len(row) != 5 for row in rows):
        return LOST, f"metrics.csv holds steps {steps} after the resume"
    return OK, note


@case("diverge_inf_loss", "engine")
def _(lab):
    """weight decay that blows the weights up over a few steps: stop, keep a finite checkpoint"""
    run = lab.dir("diverge") / "run"
    r = lab.cli("train", "toy2d", *TOY, *sets("train.steps=60", "train.weight_decay=1000.0", "train.lr=0.01",
                                               "train.lr_schedule=constant", "train.ckpt_every=2"), "--out", run)
    finite, note = tensors_finite(run)
    if not finite:
        return SILENT, note
    if (run / "checkpoints" / "last.safetensors").is_file():
        drawn = lab.cli("sample", run, "--n", 8, "--out", run.parent / "s")
        if drawn.rc == 0 and not np.isfinite(np.load(run.parent / "s" / "samples.npy")).all():
            return SILENT, "the checkpoint kept after the divergence samples non-finite points"
    return refused(r)


@case("weights_overflow_one_step", "engine")
def _(lab):
    """one step whose update overflows the weights to inf while its loss was finite"""
    run = lab.dir("overflow") / "run"
    r = lab.cli("train", "toy2d", *TOY, *sets("train.steps=1", "train.weight_decay=1e45", "train.lr=0.001",
                                               "train.lr_schedule=constant"), "--out", run)
    finite, note = tensors_finite(run)
    if not finite:
        return SILENT, note + f" (exit {r.rc})"
    return refused(r)


@case("seed_invariance", "engine", expect=(OK,))
def _(lab):
    """sample --seed 3 --n 4 and --n 8: the first four samples must agree"""
    folder = lab.dir("seed-invariance")
    results = [lab.cli("sample", lab.toy_run(), "--n", n, "--seed", 3, "--out", folder / f"n{n}") for n in (4, 8)]
    for r in results:
        category, note = judge(r)
        if category != OK:
            return category, note
    small, large = (np.load(folder / f"n{n}" / "samples.npy") for n in (4, 8))
    gap = float(np.abs(small - large[:4]).max())
    return (OK, "first four samples identical") if gap <= 1e-5 else (SILENT, f"first four samples differ by {gap:.3g}")


@case("disk_full_checkpoint", "engine")
def _(lab):
    """the disk fills during a checkpoint write of a resumed run: one line, the old checkpoint intact, no *.tmp"""
    folder = lab.dir("disk-full-ckpt")
    seed_run = folder / "seed-run"
    wide = [*TOY, *sets("model.hidden=256", "model.depth=2")]
    r = lab.cli("train", "toy2d", *wide, "--out", seed_run)
    if r.rc != 0:
        return judge(r)
    used = sum(p.stat().st_size for p in seed_run.rglob("*") if p.is_file())
    weights = (seed_run / "checkpoints" / "last.safetensors").stat().st_size
    before = file_digest(seed_run / "checkpoints" / "last.safetensors")
    args = ["train", "toy2d", *wide, *sets("train.steps=8"), "--resume"]
    try:
        with small_filesystem(folder / "full", used + weights // 2 + (64 << 10)) as mount:
            run = mount / "run"
            shutil.copytree(seed_run, run)
            return _after_disk_full(lab, lab.cli(*args, "--out", run), run, before)
    except Unavailable:
        run = folder / "run"
        shutil.copytree(seed_run, run)
        return _after_disk_full(lab, lab.cli(*args, "--out", run, limits=file_size_limit(weights // 2)), run, before)


def _after_disk_full(lab: Lab, r: Result, run: Path, before: str) -> tuple[str, str]:
    if r.rc == 0:
        raise Unavailable("the staged file system did not fill up")
    leftovers = [p.name for p in run.rglob("*.tmp*")]
    info = lab.cli("info", run)
    if info.rc != 0 or "step:       4 of" not in info.out or \
            file_digest(run / "checkpoints" / "last.safetensors") != before:
        return LOST, "the checkpoint of step 4 was lost or changed by the failed write"
    if leftovers:
        return DEBRIS, f"left {', '.join(sorted(leftovers))} behind"
    return refused(r)


@case("disk_full_sample", "engine")
def _(lab):
    """the disk fills while samples are written: one line, no partial sample file"""
    folder = lab.dir("disk-full-sample")

    def check(r: Result, out: Path) -> tuple[str, str]:
        partial = []
        for path in out.glob("samples.*") if out.is_dir() else []:
            try:
                rows = len(np.load(path)) if path.suffix == ".npy" else len(path.read_text().splitlines()) - 1
            except ValueError:
                rows = -1
            if rows != 4096:
                partial.append(path.name)
        if partial:
            return DEBRIS, f"left partial {', '.join(partial)}"
        return refused(r)

    try:
        with small_filesystem(folder / "full", 48 << 10) as mount:
            r = lab.cli("sample", lab.toy_run(), "--n", 4096, "--out", mount / "s")
            return check(r, mount / "s")
    except Unavailable:
        r = lab.cli("sample", lab.toy_run(), "--n", 4096, "--out", folder / "s", limits=file_size_limit(48 << 10))
        return check(r, folder / "s")


@case("world_size_without_group", "engine")
def _(lab):
    """WORLD_SIZE=2 with no second process: a clear line within a short, configurable timeout"""
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "MULTIDIFF_DIST_TIMEOUT": "5"}
    return refused(lab.cli("train", "toy2d", *TOY, "--out", lab.dir("world") / "run", env=env, timeout=45))


# --- running ------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="only", action="append", default=[], help="run the cases whose name holds this")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    chosen = [c for c in CASES if not args.only or any(k in c.name for k in args.only)]
    if args.list:
        for c in chosen:
            print(f"{c.name:28s} {c.half:7s} {c.what}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="multidiff-faults-"))
    lab = Lab(root)
    print(f"{len(chosen)} cases in {root}\n")
    print(f"{'case':28s} {'half':7s} {'outcome':14s} {'pass':5s} note")
    rows, started = [], time.perf_counter()
    try:
        for c in chosen:
            t0 = time.perf_counter()
            try:
                category, note = c.run(lab)
            except Unavailable as e:
                category, note = NOT_RUN, str(e)
            except Exception as e:  # the battery's own failure to stage a case, reported as such
                category, note = NOT_RUN, f"the battery failed: {type(e).__name__}: {e}"
            passed = category in c.expect
            rows.append((c, category, passed))
            print(f"{c.name:28s} {c.half:7s} {category:14s} {'yes' if passed else 'NO':5s} "
                  f"{note[:150]} [{time.perf_counter() - t0:.0f} s]", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    counts = {k: sum(1 for _, category, _ in rows if category == k) for k in CATEGORIES}
    print(f"\n{len(rows)} cases in {time.perf_counter() - started:.0f} s: " +
          ", ".join(f"{counts[k]} {k}" for k in CATEGORIES if counts[k]))
    failed = [(c, category) for c, category, passed in rows if not passed and category != NOT_RUN]
    print(f"passed {sum(passed for _, _, passed in rows)}, failed {len(failed)}" +
          (": " + ", ".join(f"{c.name} ({c.half}: {category})" for c, category in failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
