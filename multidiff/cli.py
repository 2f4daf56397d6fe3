"""The ``multidiff`` command line: train, sample, eval, info, recipes.

Mistakes a user can fix (an unknown recipe, key, sampler or class; a value of the wrong type; a
missing or unreadable file; an empty dataset) end with one line on stderr and exit status 1.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from multidiff.engine.errors import UserError

USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError, PermissionError, KeyError, ValueError)


class _Commands(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            raise click.ClickException(str(message).splitlines()[0] if message else type(e).__name__) from None


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
    """Train RECIPE (a .toml file, or the name of a recipe in recipes/).

    Runs on every GPU torchrun starts: torchrun --nproc-per-node N -m multidiff train RECIPE ...
    """
    from multidiff.engine.config import load_recipe
    from multidiff.engine.trainer import train as run_training

    if data_path is not None:
        overrides = (*overrides, f"data.path={json.dumps(data_path)}")
    cfg = load_recipe(recipe, preset, overrides)
    run_dir = run_dir or Path("runs") / (f"{cfg['name']}-{preset}" if preset else cfg["name"])
    run_training(cfg, run_dir, resume=resume)
    if os.environ.get("RANK", "0") == "0":
        summary = json.loads((run_dir / "summary.json").read_text())
        click.echo(f"trained to step {summary['steps']} in {summary['wall_time_s']:.0f} s "
                   f"({summary['steps_per_s']:.1f} steps/s) -> {run_dir}")
        click.echo(f"sample with: multidiff sample {run_dir} --n 16 --out {run_dir / 'samples'}")


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
@click.option("--guidance", type=float, help="Classifier-free guidance scale [default: the recipe's].")
@click.option("--cond", metavar="KEY=VALUE", help="Class of every sample, e.g. --cond digit=7 (name or index); "
              "default: balanced over the classes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the sample files and preview.png.")
@_placement_options
def sample(run, n, steps, sampler, guidance, cond, seed, out_dir, placement, eta, churn):
    """Draw samples from RUN (a run directory or a .safetensors checkpoint)."""
    from multidiff.engine.checkpoint import read_metadata
    from multidiff.engine.generate import generate
    from multidiff.modality import get

    value = None
    if cond is not None:
        key, sep, value = cond.partition("=")
        expected = get(read_metadata(run)[0]["modality"]).cond_key
        if not sep or key.strip() != expected:
            raise UserError(f"--cond expects {expected}=VALUE for this model, got {cond!r}")
        value = value.strip()
    result = generate(run, n, sampler=sampler, steps=steps, guidance=guidance, cond=value, seed=seed, out_dir=out_dir,
                      placement=placement, eta=eta, churn=churn)
    click.echo(f"wrote {len(result['paths'])} files to {out_dir}")


@main.command("eval")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(min=1), help="Number of samples [default: the recipe's eval.n].")
@_placement_options
def evaluate(run_dir, n, placement, eta, churn):
    """Score samples of RUN_DIR with its modality's metrics; also writes RUN_DIR/eval.json."""
    from multidiff.engine.generate import evaluate as run_evaluation

    for name, value in run_evaluation(run_dir, n, placement=placement, eta=eta, churn=churn).items():
        click.echo(f"{name}: {value:.6g}")


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
def info(run):
    """Show a run's config, step, parameter count and data shape."""
    from multidiff.engine.checkpoint import read_metadata

    cfg, step, sizes = read_metadata(run)
    data = cfg["dataset"]
    classes = data["class_names"]
    click.echo(f"recipe:     {cfg['name']} ({cfg['modality']}{', preset ' + cfg['preset'] if cfg['preset'] else ''})")
    click.echo(f"step:       {step} of {cfg['train']['steps']}")
    click.echo(f"parameters: {sizes['model']:,}" + (" (+ EMA)" if sizes["ema"] else ""))
    click.echo(f"data:       {data['size']} examples of shape {tuple(data['shape'])}, encoded "
               f"{tuple(data['encoded_shape'])} by {data['encoder']}")
    click.echo(f"classes:    {len(classes)}" + (f" ({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})"
                                                 if classes else ""))
    click.echo("config:")
    click.echo(json.dumps({k: v for k, v in cfg.items() if k != "dataset"}, indent=2))


@main.command()
def recipes():
    """List the recipes in the recipes/ folder."""
    from multidiff.engine.config import list_recipes

    for name, description in list_recipes():
        click.echo(f"{name:16s} {description}")
