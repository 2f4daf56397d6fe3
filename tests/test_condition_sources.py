"""Where named conditions come from (file-name fields, templates, sidecar .npy files) on a tiny folder of
synthetic WAVs, trained a few steps through the 1D UNet's cross-attention; the clear one-line errors for
a missing field, caption or sidecar file and a vector of the wrong size; the recipe's condition checks;
and cross-attention wired into the 1D/2D UNet and the point transformer."""
import numpy as np
import pytest
import soundfile as sf
import torch

from modalities.points.transformer import PointTransformer
from multidiff.conditioning import data as condition_data
from multidiff.conditioning.encoders import ConditionEncoder
from multidiff.conditioning.text import ByteTokenizer
from multidiff.engine.config import RECIPES_DIR, load_recipe
from multidiff.engine.errors import UserError
from multidiff.engine.generate import generate
from multidiff.engine.trainer import train
from multidiff.nn.attention import CrossAttention
from multidiff.nn.unet import UNet

RECIPE = """
name = "digits_named"
modality = "audio"
[data]
path = "{folder}"
name_pattern = '(?P<digit>\\d)_(?P<speaker>[a-z]+)_(?P<index>\\d+)\\.wav'
split_by = "index"
test_range = [0, 0]
conditional = false
length = 1024
[encoder]
griffin_lim_iters = 4
[model]
channels = 16
channel_mult = [1, 2]
num_res_blocks = 1
attn_levels = [1]
[conditions.digit]
type = "categorical"
[conditions.speaker]
type = "categorical"
drop = 0.3
[conditions.caption]
type = "text"
templates = ["{{speaker}} says {{digit}}", "the digit {{digit}} by {{speaker}}"]
held_out = ["the digit {{digit}} by {{speaker}}"]
max_length = 24
layers = 1
[conditions.voice]
type = "vector"
source = "sidecar"
dim = 3
[diffusion]
prediction = "v"
[train]
batch_size = 8
steps = 3
log_every = 1
ckpt_every = 100
[sample]
steps = 2
n = 2
"""


def _folder(tmp_path, sidecars=True):
    folder = tmp_path / "wavs"
    folder.mkdir()
    rate, time = 8000, np.arange(1024) / 8000
    for digit in range(2):
        for k, speaker in enumerate(["ann", "bob"]):
            for index in range(4):
                name = folder / f"{digit}_{speaker}_{index}.wav"
                sf.write(name, 0.3 * np.sin(2 * np.pi * (300 + 200 * digit + 50 * k) * time), rate)
                if sidecars:
                    np.save(name.with_suffix(".npy"), np.array([k, digit, index], dtype=np.float32))
    return folder


def _recipe(tmp_path, folder):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(folder=folder))
    return path


def test_fields_templates_and_sidecars_train_and_sample_through_the_unet(tmp_path):
    folder = _folder(tmp_path)
    cfg = load_recipe(_recipe(tmp_path, folder))
    from modalities.audio import data
    clips = data.load(cfg, "train")
    cfg["dataset"] = {"class_names": [], "conditions": condition_data.describe(clips, cfg)}
    assert cfg["dataset"]["conditions"]["speaker"] == {"values": ["ann", "bob"]}
    table = condition_data.tensors(clips, cfg)
    first = clips.files[0]
    digit, speaker, index = first.stem.split("_")
    assert table["voice"][0].tolist() == [["ann", "bob"].index(speaker), int(digit), int(index)]
    # only the trained template: item i takes template i mod 1
    assert bytes(b for b in table["caption"][0].tolist() if b >= 0).decode() == f"{speaker} says {digit}"
    run = train(cfg, tmp_path / "run", device="cpu")
    out = generate(run, 2, cond=["digit=1", "speaker=bob", f"voice={folder / '1_bob_2.npy'}"],
                   prompt="the digit 1 by bob", guidance=["2", "speaker=3"], device="cpu")
    assert out["x"].shape == (2, 1, 1024) and torch.isfinite(out["x"]).all()


def test_missing_and_misshapen_sidecars_name_the_file(tmp_path):
    folder = _folder(tmp_path)
    cfg = load_recipe(_recipe(tmp_path, folder))
    from modalities.audio import data
    clips = data.load(cfg, "train")
    cfg["dataset"] = {"conditions": condition_data.describe(clips, cfg)}
    missing = clips.files[3].with_suffix(".npy")
    missing.unlink()
    with pytest.raises(UserError, match=f"sidecar file not found: {missing}"):
        condition_data.tensors(clips, cfg)
    np.save(missing, np.zeros(5))
    with pytest.raises(UserError, match=f"{missing}: the vector of condition 'voice' has 5 numbers, expected 3"):
        condition_data.tensors(clips, cfg)


def test_a_missing_field_or_caption_names_the_item(tmp_path):
    points = tmp_path / "p.csv"
    points.write_text("x,y,colour\n0,0,red\n1,1,blue\n")
    base = f'name = "t"\nmodality = "toy2d"\n[data]\npath = "{points}"\nconditional = false\n'
    recipe = tmp_path / "r.toml"
    recipe.write_text(base + '[conditions.caption]\ntype = "text"\n')
    cfg = load_recipe(recipe)
    from modalities.toy2d.data import load_split
    points_set = load_split(cfg["data"], "train")
    with pytest.raises(UserError, match="item 0 of the dataset: no field 'caption' for condition 'caption'"):
        condition_data.describe(points_set, cfg)      # max_length 0: the longest caption, read here
    cfg["conditions"]["caption"]["max_length"] = 8
    cfg["dataset"] = {"conditions": condition_data.describe(points_set, cfg)}
    with pytest.raises(UserError, match="item 0 of the dataset: no field 'caption' for condition 'caption'"):
        condition_data.tensors(points_set, cfg)
    recipe.write_text(base + '[conditions.caption]\ntype = "text"\ntemplates = ["a {size} dot"]\n')
    with pytest.raises(UserError, match="template 'a {size} dot' of condition 'caption' names field 'size'"):
        condition_data.tensors(points_set, load_recipe(recipe) | {"dataset": cfg["dataset"]})
    with pytest.raises(UserError, match="is 9 bytes, longer than the 4 its encoder takes"):
        ByteTokenizer(4)(["red spot!"], "x")


@pytest.mark.parametrize("table, message", [
    ('type = "colour"', "type must be one of categorical, vector, text"),
    ('type = "vector"\ndim = 2\ncolumns = ["a"]', "1 columns given for a vector of dim 2"),
    ('type = "categorical"\ndrop = 1.5', "drop must be in"),
    ('type = "categorical"\ndim = 3', "unknown key"),
    ('type = "text"\ntemplates = ["a"]\nheld_out = ["a"]', "every template is held out"),
])
def test_the_recipe_checks_each_condition(tmp_path, table, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "t"\nmodality = "toy2d"\n[conditions.c]\n{table}\n')
    with pytest.raises(UserError, match=message):
        load_recipe(recipe)


def test_presets_and_overrides_reach_conditions(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "t"\nmodality = "toy2d"\n[conditions.c]\ntype = "categorical"\n'
                      '[presets.q]\nconditions = { c = { drop = 0.3 } }\n')
    cfg = load_recipe(recipe, "q", ["conditions.c.field=colour"])
    assert cfg["conditions"]["c"] == {"type": "categorical", "field": "colour", "drop": 0.3, "held_out": []}
    assert load_recipe(RECIPES_DIR / "toy2d.toml")["conditions"] == {}


def _context_nets():
    specs = {"caption": {"type": "text", "field": "c", "drop": 0.1, "templates": [], "held_out": [], "max_length": 8,
                         "layers": 1, "heads": 2, "pretrained": "", "pool": "mean", "tokens": "bytes"}}
    factory = lambda width: ConditionEncoder(specs, {"caption": {}}, width)  # noqa: E731
    torch.manual_seed(0)
    return [(UNet(1, 4, channels=8, channel_mult=(1, 2), num_res_blocks=1, num_heads=2, conditions=factory),
             torch.randn(2, 4, 8)),
            (UNet(2, 3, channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_levels=(1,), num_heads=2,
                  conditions=factory), torch.randn(2, 3, 8, 8)),
            (PointTransformer(width=16, depth=1, heads=2, conditions=factory), torch.randn(2, 5, 3))]


@pytest.mark.parametrize("index", range(3))
def test_backbones_read_the_condition_tokens_through_cross_attention(index):
    net, x = _context_nets()[index]
    t = torch.rand(2)
    captions = [ByteTokenizer(8)(["ab", "ab"], "x"), ByteTokenizer(8)(["ab", "ba"], "x")]
    layers = [m for m in net.modules() if isinstance(m, CrossAttention)]
    assert layers
    for module in [*layers, *net.modules()]:       # wake every zero-initialised layer
        for p in module.parameters(recurse=False):
            if not p.abs().sum():
                torch.nn.init.normal_(p, std=0.3)
    pooled = net.cond_proj if isinstance(net, UNet) else None
    if pooled is not None:                          # the tokens alone must carry the difference
        torch.nn.init.zeros_(pooled.weight)
    out = [net(x, t, {"caption": c, "dropped": torch.zeros(2, 1, dtype=torch.bool)}) for c in captions]
    assert torch.equal(out[0][0], out[1][0]) and not torch.allclose(out[0][1], out[1][1])
    for layer in layers:
        torch.nn.init.zeros_(layer.proj.weight)
        torch.nn.init.zeros_(layer.proj.bias)
    if pooled is not None:
        silent = [net(x, t, {"caption": c, "dropped": torch.zeros(2, 1, dtype=torch.bool)}) for c in captions]
        assert torch.equal(silent[0], silent[1])    # without cross-attention the captions cannot differ


def test_held_out_combinations_leave_training_and_are_scored_apart(tmp_path):
    folder = _folder(tmp_path, sidecars=False)
    recipe = _recipe(tmp_path, folder)
    text = recipe.read_text().replace("[conditions.voice]\ntype = \"vector\"\nsource = \"sidecar\"\ndim = 3\n", "")
    held_out = 'held_out = [{ digit = "1", speaker = "bob" }]\n'
    recipe.write_text(text.replace('[conditions.digit]\ntype = "categorical"\n',
                                   '[conditions.digit]\ntype = "categorical"\n' + held_out))
    cfg = load_recipe(recipe)
    from modalities.audio import data
    from multidiff.conditioning.evaluation import _held_out_samples
    from multidiff.conditioning.request import build
    clips = data.load(cfg, "train")
    cfg["dataset"] = {"conditions": condition_data.describe(clips, cfg)}
    rows = condition_data.trained_rows(clips, cfg)
    trained = condition_data.ConditionedSet(clips, condition_data.tensors(clips, cfg), rows)
    names = [clips.files[int(i)].name for i in rows]
    assert len(trained) == 9 and not any(n.startswith("1_bob_") for n in names)   # 12 training clips, 3 of 1_bob
    assert len({n[:5] for n in names}) == 3
    item = trained[len(trained) - 1]
    assert item["cond"]["digit"].item() == int(names[-1][0]) and torch.equal(item["x"], clips.x[int(rows[-1])])
    cond = build(8, cfg, ["caption="])     # balanced: digit fastest, then speaker
    assert _held_out_samples(cond, cfg).tolist() == [False, False, False, True] * 2
