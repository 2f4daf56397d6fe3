"""Seeing a run without a browser: evaluation during training and the best checkpoint, one file per
evaluation, `info`, the TensorBoard events, the report's folder, and the pieces the page is drawn with
(smoothing, chart axes, ceilings, spectrograms)."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from multidiff.engine import evaluations
from multidiff.engine.checkpoint import read_metadata
from multidiff.engine.config import load_recipe
from multidiff.engine.generate import generate, load_run, score
from multidiff.engine.metrics_log import MetricsLog, read_metrics, smoothed
from multidiff.report import write_report
from multidiff.report.ceilings import DECODED, REAL, split_ceilings
from multidiff.report.charts import Series, line_chart, nice_ticks
from multidiff.report.media import log_spectrogram

from cli_helpers import invoke, train_toy2d

TINY = ["model.hidden=16", "model.depth=1", "model.time_dim=8", "data.n_train=256", "data.n_test=256",
        "train.batch_size=32", "train.steps=24", "train.log_every=2", "train.ckpt_every=12", "sample.n=16",
        "sample.steps=3", "train.eval_every=6", "train.eval_n=64", "train.best_metric=frechet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_toy2d(tmp_path_factory.mktemp("report") / "run", TINY)


def test_evaluation_during_training_logs_every_eval_and_keeps_the_best(run):
    rows = evaluations.read_training_evals(run / "evals.csv")
    assert [r["step"] for r in rows] == [6, 12, 18, 24]
    best = min(rows, key=lambda r: r["frechet"])
    cfg, step, _ = read_metadata(run / "checkpoints" / "best.safetensors")
    assert step == best["step"] and cfg["name"] == "toy2d"
    # the best weights re-score as evals.csv says (same samples: seed, sampler and count as in training)
    rescored = score(load_run(run / "checkpoints" / "best.safetensors"), 64, sampler=cfg["sample"]["sampler"],
                     steps=cfg["sample"]["steps"], guidance=cfg["sample"]["guidance"], seed=cfg["train"]["seed"])
    assert rescored["frechet"] == pytest.approx(best["frechet"], rel=1e-6)


def test_resume_continues_evals_csv_without_duplicates(tmp_path):
    sets = [a for s in TINY for a in ("--set", s)]
    out = tmp_path / "run"
    assert invoke("train", "toy2d", "--preset", "quick", *sets, "--set", "train.steps=12", "--out", out).exit_code == 0
    result = invoke("train", "toy2d", "--preset", "quick", *sets, "--set", "train.eval_every=4", "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in evaluations.read_training_evals(out / "evals.csv")] == [6, 12, 16, 20, 24]


def test_best_mode_max_keeps_the_highest(tmp_path):
    from multidiff.engine.trainer import train
    cfg = load_recipe("toy2d", "quick", [*TINY, "train.steps=12", "train.best_metric=class_mean_error",
                                         "train.best_mode=max", "train.eval_every=4"])
    train(cfg, tmp_path / "run", device="cpu")
    rows = evaluations.read_training_evals(tmp_path / "run" / "evals.csv")
    assert read_metadata(tmp_path / "run" / "checkpoints" / "best.safetensors")[1] == \
        max(rows, key=lambda r: r["class_mean_error"])["step"]


def test_unknown_best_metric_names_the_metrics(tmp_path):
    sets = [a for s in [*TINY, "train.steps=6", "train.best_metric=fid"] for a in ("--set", s)]
    result = invoke("train", "toy2d", "--preset", "quick", *sets, "--out", tmp_path / "run")
    assert result.exit_code == 1 and "'fid'" in result.output and "frechet" in result.output


def test_each_eval_gets_its_own_file_and_settings(run, tmp_path):
    first = invoke("eval", run, "--n", 32, "--sampler", "ddim", "--steps", 3, "--seed", 1)
    second = invoke("eval", run, "--n", 32, "--sampler", "ddim", "--steps", 3, "--seed", 2)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    records = evaluations.read_records(run)
    assert [r["file"] for r in records][-2:] == ["eval_step000024_01.json", "eval_step000024_02.json"]
    a, b = records[-2:]
    assert a["settings"] == {"sampler": "ddim", "steps": 3, "guidance": 1.0, "seed": 1, "placement": "default",
                             "t_min": 1e-3} and b["settings"]["seed"] == 2
    assert a["frechet"] != b["frechet"]                                        # another seed, other samples
    assert f"frechet: {a['frechet']:.6g}" in first.output
    latest = json.loads((run / "eval.json").read_text())
    assert latest["frechet"] == b["frechet"] and latest["n"] == 32 and latest["step"] == 24

    out = tmp_path / "mine.json"
    assert invoke("eval", run, "--n", 32, "--out", out).exit_code == 0
    kept = out.read_text()
    again = invoke("eval", run, "--n", 32, "--out", out)
    assert again.exit_code == 1 and "already exists" in again.output and out.read_text() == kept


def test_info_shows_condition_last_loss_and_latest_evaluation(run):
    out = invoke("info", run).output
    last = read_metrics(run / "metrics.csv")[-1]
    assert "--cond component=NAME" in out
    assert f"last loss:  {last['loss']:.5g} at step 24" in out
    found = evaluations.latest(run)[1]
    assert f"  frechet: {found['frechet']:.6g}" in out
    dumped = invoke("info", run, "--json")
    assert json.loads(dumped.output) == {k: v for k, v in read_metadata(run)[0].items() if k != "dataset"}


def test_report_folder_is_self_contained(run, tmp_path):
    index = write_report([run])
    assert index == run / "report" / "index.html"
    html = index.read_text()
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', html):
        assert not re.match(r"[a-z]+:", ref) and (index.parent / ref).is_file(), ref   # relative, present
    previews = sorted((run / "previews").glob("step_*.png"))
    assert len(previews) == len(re.findall(r'<button type="button" data-index', html)) == 1  # sample_every = 0
    assert "drawn for this report" in html                     # no RUN/samples: drawn from the checkpoint
    assert all(f'aria-label="{m}"' in html for m in ("frechet", "class_mean_error"))

    generate(run, 8, seed=3, out_dir=run / "samples")
    html = write_report([run]).read_text()                     # regenerated in place
    assert "the newest files of" in html and (run / "report" / "media" / "0-run" / "samples" / "preview.png").is_file()
    assert not (run / "report" / "media" / "0-run" / "samples" / "samples.csv").exists()  # the old draw is gone

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    refused = invoke("report", run, "--out", tmp_path / "other")
    assert refused.exit_code == 1 and "not empty" in refused.output
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    assert "--out" in invoke("report", run, run).output
    assert "not a multidiff run" in invoke("report", tmp_path / "other").output


def test_tensorboard_events_hold_images_audio_and_clouds(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is an optional extra: pip install -e '.[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from modalities.audio import AudioModality
    from modalities.points import PointsModality
    from modalities.toy2d import Toy2DModality

    cfg = {"name": "tb", "data": {"sample_rate": 8000}, "dataset": {"class_names": ["a", "b"]},
           "train": {"lr": 1e-3, "steps": 4}}
    log = MetricsLog(tmp_path, 0, cfg)
    log.write({"step": 1, "loss": 0.5, "lr": 1e-3, "grad_norm": 1.0, "steps_per_s": 2.0})
    clips = torch.sin(torch.arange(800) * 0.3).expand(2, 1, 800) * 0.5
    clouds = torch.randn(2, 50, 3)
    for step, modality, x in ((1, AudioModality(), clips), (2, PointsModality(), clouds),
                              (3, Toy2DModality(), torch.randn(16, 2))):
        picture = tmp_path / f"preview{step}.png"
        labels = torch.arange(len(x)) % 2
        modality.preview(x, labels, picture, cfg)
        log.samples(step, x, labels, modality, cfg, picture)
    log.scalars("eval", {"frechet": 0.25}, 3)
    log.finish()

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "audio": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "eval/frechet"} <= set(tags["scalars"])
    assert [e.step for e in events.Images("samples/preview")] == [1, 2, 3]
    audio = events.Audio("samples/audio_0")
    assert len(audio) == 1 and audio[0].sample_rate == 8000 and audio[0].length_frames == 800
    vertices = events.Tensors("samples/cloud_1_VERTEX")
    from tensorboard.util import tensor_util
    np.testing.assert_allclose(tensor_util.make_ndarray(vertices[0].tensor_proto)[0], clouds[1].numpy(), rtol=1e-6)
    hparams = EventAccumulator(str(tmp_path / "tensorboard" / "hparams"))
    hparams.Reload()
    assert {"final/loss", "final/frechet"} <= set(hparams.Tags()["scalars"])


def test_smoothing_is_the_normalised_exponential_average():
    rng = np.random.default_rng(0)
    values = rng.random(50).tolist()
    span = 7
    alpha = 2 / (span + 1)
    expected = [sum((1 - alpha) ** (t - i) * values[i] for i in range(t + 1)) /
                sum((1 - alpha) ** (t - i) for i in range(t + 1)) for t in range(len(values))]
    np.testing.assert_allclose(smoothed(values, span), expected, rtol=1e-12)
    assert smoothed([3.0] * 10, 4) == pytest.approx([3.0] * 10)


def test_chart_ticks_and_coordinates():
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(3, 97) == [20, 40, 60, 80]
    svg = line_chart([Series("s", [0, 10], [1.0, 3.0])], title="t", width=400, height=200)
    points = re.search(r'<polyline points="([^"]+)"', svg).group(1).split()
    (x0, y0), (x1, y1) = (map(float, p.split(",")) for p in points)
    assert (x0, x1) == (64, 400 - 16)                        # the x range spans the plot's width
    span = 200 - 40 - 28                                     # y padded by 5 % of the range on each side
    assert y0 == pytest.approx(200 - 40 - span * 0.05 / 1.1, abs=0.06)
    assert y1 == pytest.approx(28 + span * 0.05 / 1.1, abs=0.06)
    assert "nothing logged" in line_chart([Series("s", [1], [math.nan])], title="t")


def test_ceilings_pair_with_their_metrics():
    model, ceilings = split_ceilings({"frechet_distance": 3.0, "real_frechet_distance": 1.0,
                                      "ceiling_decoded_frechet_distance": 2.0, "frechet_cnn": 5.0,
                                      "frechet_cnn_real": 4.0, "mmd_cd": 7.0, "ref_mmd_cd": 6.0,
                                      "ceiling_accuracy": 0.9})
    assert model == {"frechet_distance": 3.0, "frechet_cnn": 5.0, "mmd_cd": 7.0}
    assert ceilings == {"frechet_distance": {REAL: 1.0, DECODED: 2.0}, "frechet_cnn": {REAL: 4.0},
                        "mmd_cd": {REAL: 6.0}, "accuracy": {REAL: 0.9}}


def test_spectrogram_peaks_at_the_tone():
    rate, freq = 8000, 1000.0
    spec = log_spectrogram(np.sin(2 * np.pi * freq * np.arange(4000) / rate), rate)
    n_fft = 2 * (spec.shape[0] - 1)
    assert np.bincount(spec.argmax(0)).argmax() == round(freq * n_fft / rate)
