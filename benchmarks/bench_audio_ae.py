"""The waveform autoencoder against mel + Griffin-Lim on the same held-out clips, and latent against mel sampling speed.

    python benchmarks/bench_audio_ae.py --ae runs/spoken_digits_ae-quick [--latent runs/spoken_digits_latent-quick
        [--generation-n 300 [--generation-guidance 1 3] [--generation-steps 50]]] [--classifier tcn|cnn]

Reconstruction (issue "Audio autoencoder"): the 300 held-out FSDD clips (whole utterances, up to
8,192 samples, as spoken_digits_ae reads them) through the autoencoder and through the mel recipe's
encoder + Griffin-Lim (spoken_digits.toml's [encoder], at the same length), both cut to each clip's
real length. Each representation is judged by the recipe's own kind of judge (the audio evaluation's
classifier named by the recipe's [eval] (now the temporal "tcn" judge), trained on the real training
clips plus the same clips through that representation,
as ``multidiff eval`` does for a mel run: Griffin-Lim gets a judge that has heard Griffin-Lim), and
by the other's judge. Figures: classifier accuracy on the held-out clips, Frechet distance in the
judge's embedding (300 training clips through the representation against the 300 held-out clips, as
evaluation.py's ceiling_decoded_frechet_distance), multi-resolution STFT distance and SI-SDR (dB)
against the real clips over their real samples.
Speed: clips and seconds of audio per second drawn by the latent run against the spoken_digits quick
mel UNet (untrained: speed does not depend on the weights) + Griffin-Lim, same sampler, steps and
guidance (same NFE), in this one process.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from modalities.audio import data
from modalities.audio.encoders import MelEncoder
from modalities.audio.evaluation import _embed, trained_classifier
from multidiff import modality as modality_registry
from multidiff.cache import cache_dir
from multidiff.engine.config import load_recipe
from multidiff.engine.generate import Run, draw, load_run
from multidiff.engine.lengths import sample_lengths
from multidiff.latent.evaluation import run_autoencoder
from multidiff.metrics import accuracy, frechet_distance, predict
from multidiff.nn.stft_loss import multi_resolution_stft


class Trimmed(torch.nn.Module):
    """An encoder whose round trip is cut to each clip's real length (given with the batch by ``masks``)."""

    def __init__(self, inner, name: str):
        super().__init__()
        self.inner, self.name = inner, name

    @torch.no_grad()
    def round_trip(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = [self.inner.decode(self.inner.encode(x[i:i + 100])[0]) * mask[i:i + 100] for i in range(0, len(x), 100)]
        return torch.cat(out)

    # trained_classifier sends the training clips through encode/decode; they are zero past their end already
    def encode(self, x, mask=None):
        return self.inner.encode(x, mask)

    def decode(self, z):
        return self.inner.decode(z)


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio (dB) per clip over its real samples (Le Roux et al. 2019)."""
    e, r = (estimate * mask).flatten(1).double(), (reference * mask).flatten(1).double()
    target = (e * r).sum(1, keepdim=True) / (r * r).sum(1, keepdim=True).clamp_min(1e-12) * r
    return 10 * torch.log10((target ** 2).sum(1) / ((e - target) ** 2).sum(1).clamp_min(1e-12))


def reconstruction_table(ae_dir: str, latent_dir: str | None = None, generation_n: int = 0,
                         judge: dict | None = None, guidances=(), steps: int | None = None) -> list[str]:
    """judge: the [eval] classifier settings of the judges (default: those of the run's recipe as it is now)."""
    ae_run = load_run(ae_dir, "cpu")
    cfg = copy.deepcopy(ae_run.cfg)
    cfg["eval"].update(judge or {k: v for k, v in load_recipe(cfg["name"])["eval"].items()
                                 if k in ("classifier", "classifier_steps")})
    train, test = data.load(cfg, "train"), data.load(cfg, "test")
    mel_cfg = load_recipe("spoken_digits")
    mel = MelEncoder(cfg["data"]["sample_rate"], cfg["data"]["length"],
                     **{k: v for k, v in mel_cfg["encoder"].items() if k not in ("representation", "f_max")})
    mel.fit(train)
    codecs = {"autoencoder": Trimmed(run_autoencoder(ae_run), "autoencoder"), "mel+griffin_lim": Trimmed(mel, "mel")}
    reference = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:len(test)]
    decoded = {name: (c.round_trip(test.x, test.masks()), c.round_trip(train.x[reference], train.masks()[reference]))
               for name, c in codecs.items()}
    judges = {}
    for name, codec in codecs.items():
        judge_cfg = copy.deepcopy(cfg)  # the judge's cache key names the representation it has heard
        judge_cfg["encoder"] = {"judge_heard": name, "autoencoder_step": ae_run.step, **mel_cfg["encoder"]}
        start = time.perf_counter()
        judges[name] = trained_classifier(judge_cfg, train, codec, cache_dir("audio"))
        print(f"judge that heard {name} ({cfg['eval']['classifier']}, {cfg['eval']['classifier_steps']} steps): "
              f"ready in {time.perf_counter() - start:.0f} s", flush=True)
    rows = [f"{'':34s} {'autoencoder':>14s} {'mel+griffin_lim':>16s}"]

    def row(label, values):
        rows.append(f"{label:34s} {values[0]:14.4f} {values[1]:16.4f}")

    real_rows = []
    for judge_name, judge in judges.items():
        test_emb = _embed(judge, test.x)
        real_rows.append(f"real held-out clips, judge heard {judge_name}: accuracy "
                         f"{accuracy(predict(judge, test.x), test.labels):.4f}, Frechet of real training clips "
                         f"{frechet_distance(_embed(judge, train.x[reference]), test_emb):.4f}")
        row(f"accuracy (judge heard {judge_name})",
            [accuracy(predict(judge, decoded[n][0]), test.labels) for n in codecs])
        row(f"frechet (judge heard {judge_name})",
            [frechet_distance(_embed(judge, decoded[n][1]), test_emb) for n in codecs])
    row("multi-resolution STFT distance", [float(multi_resolution_stft(decoded[n][0], test.x, test.masks()).mean())
                                           for n in codecs])
    row("SI-SDR (dB)", [float(si_sdr(decoded[n][0], test.x, test.masks()).mean()) for n in codecs])
    rows += real_rows + [f"autoencoder: {ae_dir} at step {ae_run.step}; {len(test)} held-out clips; judges: "
                         f"{cfg['eval']['classifier']}, {cfg['eval']['classifier_steps']} steps"]
    if latent_dir and generation_n:
        rows += generation_rows(latent_dir, generation_n, judges["autoencoder"], test, guidances, steps)
    return rows


def generation_rows(latent_dir: str, n: int, judge, test, guidances=(), steps: int | None = None) -> list[str]:
    """``n`` clips (digits in turn, each at its class's length) from the latent run, judged by the judge
    that heard the autoencoder: drawn with the padding kept at silence (the default) and cut, at the
    recipe's guidance; then with the padding at silence at each of ``guidances``."""
    run = load_run(latent_dir, "cpu")
    s = run.cfg["sample"]
    steps = steps or s["steps"]
    labels = torch.arange(n) % 10
    lengths = sample_lengths(run, labels, n)
    test_emb = _embed(judge, test.x)
    rows = [f"generation by {latent_dir} (step {run.step}): {n} clips, {s['sampler']} {steps} steps, "
            f"judge that heard the autoencoder"]
    draws = [(s["guidance"], "silence"), (s["guidance"], "cut")] + [(g, "silence") for g in guidances
                                                                   if g != s["guidance"]]
    for guidance, padding in draws:
        start = time.perf_counter()
        x = draw(run, labels, n, sampler=s["sampler"], steps=steps, guidance=guidance, seed=0,
                 lengths=lengths, padding=padding)
        took = time.perf_counter() - start
        rows.append(f"  guidance {guidance:<4g} padding {padding:8s} accuracy {accuracy(predict(judge, x), labels):.4f}  "
                    f"Frechet {frechet_distance(_embed(judge, x), test_emb):.4f}  ({took:.0f} s)")
    return rows


def mel_run() -> Run:
    """The spoken_digits quick mel UNet (untrained) with its fitted encoder: the mel path's sampling cost."""
    cfg = load_recipe("spoken_digits", "quick")
    modality = modality_registry.get("audio")
    train = data.load(cfg, "train")
    encoder = modality.encoder(cfg)
    encoder.fit(train)
    z, _ = encoder.encode(train.x[:1])
    cfg["dataset"] = {"shape": list(train.x.shape[1:]), "encoded_shape": list(z.shape[1:]),
                      "class_names": train.class_names}
    torch.manual_seed(0)
    model = modality.backbone(cfg, tuple(z.shape[1:]), len(train.class_names)).eval()
    return Run(cfg, 0, modality, model, encoder.eval())


def speed_table(latent_dir: str, n: int) -> list[str]:
    runs = {"latent": load_run(latent_dir, "cpu"), "mel": mel_run()}
    s = runs["latent"].cfg["sample"]
    rows = [f"same sampler for both: {s['sampler']}, {s['steps']} steps, guidance {s['guidance']}; {n} clips each"]
    labels = torch.arange(n) % 10
    for name, run in runs.items():
        lengths = sample_lengths(run, labels, n)
        start = time.perf_counter()
        x = draw(run, labels, n, sampler=s["sampler"], steps=s["steps"], guidance=s["guidance"], seed=0,
                 lengths=lengths)
        took = time.perf_counter() - start
        audio_s = float((lengths if lengths is not None else torch.full((n,), x.shape[-1])).sum()) / \
            run.cfg["data"]["sample_rate"]
        rows.append(f"{name:8s} {n / took:8.3f} clips/s  {audio_s / took:8.3f} s of audio/s  "
                    f"(clips {audio_s / n:.3f} s long on average)")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ae", required=True, help="an autoencoder run (e.g. runs/spoken_digits_ae-quick)")
    parser.add_argument("--latent", help="a latent run for the speed comparison (e.g. runs/spoken_digits_latent-quick)")
    parser.add_argument("--speed-n", type=int, default=20, help="clips drawn per path for the speed figures")
    parser.add_argument("--generation-n", type=int, default=0,
                        help="clips drawn by --latent and judged, with the padding kept at silence and cut")
    parser.add_argument("--classifier", choices=["cnn", "tcn"],
                        help="the judges' network [default: the autoencoder recipe's eval.classifier]")
    parser.add_argument("--classifier-steps", type=int, help="the judges' training steps [default: the recipe's]")
    parser.add_argument("--generation-guidance", type=float, nargs="*", default=[],
                        help="more guidance scales to draw the --generation-n clips at (padding at silence)")
    parser.add_argument("--generation-steps", type=int, help="sampler steps of the generation rows [default: the run's]")
    args = parser.parse_args()
    judge = {k: v for k, v in (("classifier", args.classifier), ("classifier_steps", args.classifier_steps)) if v}
    for line in reconstruction_table(args.ae, args.latent, args.generation_n, judge, args.generation_guidance,
                                     args.generation_steps):
        print(line, flush=True)
    if args.latent:
        for line in speed_table(args.latent, args.speed_n):
            print(line, flush=True)


if __name__ == "__main__":
    main()
