"""The ``multidiff`` command line: train, sample, edit, eval, info, report, recipes.

Mistakes a user can fix (an unknown recipe, key, sampler or class; a value of the wrong type or out
of range; a missing, unreadable or unwritable file; a full disk; an empty dataset) end with one line
on stderr and exit status 1.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from multidiff.engine.errors import UserError

#: OSError covers the machine's faults a user can fix too: a read-only or full disk, a missing file.
USER_ERRORS = (UserError, OSError, KeyError, ValueError)


class _Commands(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            raise click.ClickException(_one_line(e)) from None


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return str(message).splitlines()[0] if message else type(error).__name__


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Diffusion models for audio, images and 3D point clouds on one core."""


@main.command()
@click.argument("recipe")
@click.option("--preset", help="A preset of the recipe: quick (minutes on a CPU) or full (a GPU).")
@click.option("--data", "data_path", help="Path of the dataset (overrides data.path).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set train.steps=500 (a TOML literal); repeatable.")
@click.option("--out", "run_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory [default: runs/NAME or runs/NAME-PRESET].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
def train(recipe, preset, data_path, overrides, run_dir, resume):
    """Train RECIPE (a .toml file, or the name of a built-in recipe: see multidiff recipes).

    Runs on every GPU torchrun starts: torchrun --nproc-per-node N -m multidiff train RECIPE ...
    """
    from multidiff.engine.config import load_recipe
    from multidiff.engine.trainer import train as run_training

    cfg = load_recipe(recipe, preset, overrides)
    if data_path is not None:
        from multidiff.modality import get

        if not get(cfg["modality"]).reads_files(cfg):
            raise UserError(f"recipe {cfg['name']!r} generates its data and takes no data path; drop --data")
        cfg = load_recipe(recipe, preset, (*overrides, f"data.path={json.dumps(data_path)}"))
    run_dir = run_dir or Path("runs") / (f"{cfg['name']}-{preset}" if preset else cfg["name"])
    run_training(cfg, run_dir, resume=resume)
    if os.environ.get("RANK", "0") == "0":
        summary = json.loads((run_dir / "summary.json").read_text())
        click.echo(f"trained to step {summary['steps']} in {summary['wall_time_s']:.0f} s "
                   f"({summary['steps_per_s']:.1f} steps/s) -> {run_dir}")
        click.echo(f"sample with: multidiff sample {run_dir} --n 16 --out {run_dir / 'samples'}")
        click.echo(f"see it with: multidiff report {run_dir}")


def _placement_options(command):
    """--placement, --eta and --churn, shared by sample and eval (unset: the recipe's [sample])."""
    command = click.option("--churn", type=click.FloatRange(min=0), help="Heun's s_churn.")(command)
    command = click.option("--eta", type=click.FloatRange(min=0),
                           help="Noise of ddim, euler_ancestral, dpmpp_2m_sde (0: deterministic).")(command)
    return click.option("--placement", metavar="NAME",
                        help="Step placement: linspace, trailing, leading, logsnr, karras, or pilot (fitted to the "
                             "run once, cached in RUN/pilots/).")(command)


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Number of samples.")
@click.option("--steps", type=click.IntRange(min=1), help="Sampler steps [default: the recipe's].")
@click.option("--sampler", help="Sampler name [default: the recipe's].")
@click.option("--guidance", multiple=True, metavar="SCALE|NAME=SCALE",
              help="Classifier-free guidance scale [default: the recipe's]; NAME=SCALE guides one named condition "
                   "(compositional guidance), e.g. --guidance 2 --guidance speaker=1.5.")
@click.option("--cond", multiple=True, metavar="KEY=VALUE", help="Class of every sample, e.g. --cond digit=7 (name "
              "or index; KEY as multidiff info shows it), repeatable for named conditions; default: balanced over "
              "the classes.")
@click.option("--prompt", help="The caption of every sample, for a model with a text condition.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the sample files and preview.png.")
@click.option("--points", type=click.IntRange(min=1), help="Points per sample of a latent point-cloud run, whose "
              "decoder emits any number [default: as many as it was trained on].")
@click.option("--seconds", type=float, help="Audio: length of every sample [default: its class's median length "
              "in the training data, for a waveform or latent-autoencoder run; else the recipe's data.length].")
@_placement_options
def sample(run, n, steps, sampler, guidance, cond, prompt, seed, out_dir, points, seconds, placement, eta, churn):
    """Draw samples from RUN (a run directory or a .safetensors checkpoint)."""
    from multidiff.engine.generate import generate

    result = generate(run, n, sampler=sampler, steps=steps, guidance=guidance or None, cond=cond or None, seed=seed,
                      out_dir=out_dir, placement=placement, eta=eta, churn=churn, prompt=prompt, points=points,
                      seconds=seconds)
    click.echo(f"wrote {len(result['paths'])} files to {out_dir}")


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--input", "inputs", type=click.Path(path_type=Path), help="A file, or a folder of files, to edit.")
@click.option("--mask", help="What to regenerate: a spec (images: left-half, top-half, box=x0,y0,x1,y1; audio: "
              "time=a-b seconds; points: keep=plane:z>0, keep=view:az,el) or a mask file (PNG: white = regenerate).")
@click.option("--strength", type=float, help="Variations (SDEdit): how far to noise the input, in (0, 1].")
@click.option("--resample", type=click.IntRange(min=1), default=1, show_default=True,
              help="RePaint jumps: take each step this many times (mixes the generated part with the kept one).")
@click.option("--known-guidance", type=click.FloatRange(0, 1e6), default=1.0, show_default=True,
              help="Mask-conditioned models: guidance on the kept data (> 1 holds the generated part closer to it).")
@click.option("--continue", "continue_from", type=click.Path(path_type=Path), help="Audio: a clip to continue.")
@click.option("--seconds", type=float, help="Audio: how many seconds --continue adds.")
@click.option("--complete", "partial", type=click.Path(path_type=Path),
              help="Points: a partial cloud (.ply/.npy) to complete to the model's point count.")
@click.option("--points", type=click.IntRange(min=2), help="Completion by a latent point-cloud run: points in each "
              "completed cloud, the partial's included [default: as many as it was trained on].")
@click.option("--best-of", type=click.IntRange(min=1), default=1, show_default=True, help="Completion by a latent "
              "point-cloud run: shape codes drawn per cloud, the one that fits the partial best kept.")
@click.option("--n", "n", type=click.IntRange(min=1), default=1, show_default=True, help="Edits per input.")
@click.option("--steps", type=click.IntRange(min=1), help="Sampler steps [default: the recipe's].")
@click.option("--sampler", help="Sampler name [default: the recipe's].")
@click.option("--cond", metavar="KEY=VALUE", help="Class of every edit; default: no class (read from the input).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the edited files and preview.png.")
def edit(run, inputs, mask, strength, resample, known_guidance, continue_from, seconds, partial, points, best_of, n,
         steps, sampler, cond, seed, out_dir):
    """Edit files with RUN: inpaint (--mask), vary (--strength), continue audio, complete point clouds."""
    from multidiff.engine.edit import edit_files

    paths = edit_files(run, out_dir, inputs=inputs, mask=mask, strength=strength, resample=resample,
                       known_guidance=known_guidance, continue_from=continue_from, seconds=seconds, partial=partial, n=n,
                       cond=cond, sampler=sampler, steps=steps, seed=seed, points=points,
                       best_of=best_of)
    click.echo(f"wrote {len(paths)} files to {out_dir}")


@main.command("eval")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(min=1), help="Number of samples [default: the recipe's eval.n].")
@_placement_options
@click.option("--sampler", help="Sampler name [default: the recipe's].")
@click.option("--steps", type=click.IntRange(min=1), help="Sampler steps [default: the recipe's].")
@click.option("--guidance", multiple=True, metavar="SCALE|NAME=SCALE",
              help="Classifier-free guidance scale [default: the recipe's]; NAME=SCALE per named condition.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--set", "eval_overrides", multiple=True, metavar="eval.KEY=VALUE",
              help="Change a setting of the run's [eval] section for this evaluation (e.g. eval.classifier=tcn).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON file for the result (must not exist) [default: RUN_DIR/evals/eval_step<STEP>_<K>.json].")
def evaluate(run_dir, n, sampler, steps, guidance, seed, out, placement, eta, churn, eval_overrides):
    """Score samples of RUN_DIR with its modality's metrics.

    Each evaluation goes to a new file (nothing is overwritten); RUN_DIR/eval.json is a copy of the latest.
    """
    from multidiff.engine.generate import evaluate as run_evaluation

    scores = run_evaluation(run_dir, n, sampler=sampler, steps=steps, guidance=guidance or None, seed=seed, out=out,
                            placement=placement, eta=eta, churn=churn, overrides=eval_overrides)
    for name, value in scores.items():
        click.echo(f"{name}: {value:.6g}")


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the resolved config as JSON instead.")
def info(run, as_json):
    """Show a run's step, size, data, classes, last loss and latest evaluation."""
    from multidiff.engine.checkpoint import read_metadata
    from multidiff.report.summary import describe_progress

    cfg, step, sizes = read_metadata(run)
    if as_json:
        click.echo(json.dumps({k: v for k, v in cfg.items() if k != "dataset"}, indent=2))
        return
    data = cfg["dataset"]
    classes = data["class_names"]
    click.echo(f"recipe:     {cfg['name']} ({cfg['modality']}{', preset ' + cfg['preset'] if cfg['preset'] else ''})")
    click.echo(f"step:       {step} of {cfg['train']['steps']}")
    click.echo(f"parameters: {sizes['model']:,}" + (" (+ EMA)" if sizes["ema"] else ""))
    click.echo(f"data:       {data['size']} examples of shape {tuple(data['shape'])}, encoded "
               f"{tuple(data['encoded_shape'])} by {data['encoder']}")
    click.echo(f"classes:    {len(classes)}" + (f" ({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})"
                                                 if classes else ""))
    for line in describe_progress(run, cfg):
        click.echo(line)


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the report [default: RUN/report; required with several runs].")
def report(runs, out):
    """Write an HTML report of RUN (or a comparison of several RUNS) that opens offline.

    Draws a few samples from the checkpoint when RUN/samples is empty.
    """
    from multidiff.report import write_report

    index = write_report(list(runs), out)
    click.echo(f"wrote {index}")


@main.command()
def recipes():
    """List the built-in recipes."""
    from multidiff.engine.config import list_recipes

    for name, description in list_recipes():
        click.echo(f"{name:16s} {description}")
