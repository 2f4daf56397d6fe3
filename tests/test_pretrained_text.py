"""The optional frozen pretrained text encoder: tiny randomly initialised CLIP text and T5 encoders (and a
word-level tokenizer) saved to a temporary folder, nothing downloaded. Training moves only the
projection; the frozen weights stay out of the checkpoint and unchanged; a prompt longer than the
encoder takes is one clear line."""
import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from multidiff.engine.config import load_recipe  # noqa: E402
from multidiff.engine.errors import UserError  # noqa: E402
from multidiff.engine.generate import generate, load_run  # noqa: E402
from multidiff.engine.trainer import train  # noqa: E402
from tests.conditions_helpers import COLOURS, write_points  # noqa: E402

WORDS = ["[PAD]", "[UNK]", "a", "dot", *COLOURS]


def _save_tiny_encoder(folder, kind: str):
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    if kind == "clip":
        config = transformers.CLIPTextConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=8,
                                             pad_token_id=0)
        transformers.CLIPTextModel(config).save_pretrained(folder)
    else:
        config = transformers.T5Config(vocab_size=len(WORDS), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                       pad_token_id=0)
        transformers.T5EncoderModel(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["clip", "t5"])
def test_a_frozen_local_text_encoder_trains_only_its_projection(tmp_path, kind):
    encoder = _save_tiny_encoder(tmp_path / kind, kind)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "t"
modality = "toy2d"
[data]
path = "{write_points(tmp_path / 'points.csv', n=200)}"
conditional = false
[conditions.caption]
type = "text"
pretrained = "{encoder}"
max_length = 4
[model]
hidden = 16
depth = 1
time_dim = 8
[train]
batch_size = 32
steps = 4
ckpt_every = 100
[sample]
n = 4
steps = 2
""")
    before = {k: v.clone() for k, v in transformers.AutoModel.from_pretrained(encoder).state_dict().items()}
    run = train(load_recipe(recipe), tmp_path / "run", device="cpu")
    loaded = load_run(run)
    text = loaded.model.conditioner.parts["caption"].encoder
    assert all(k.startswith("project.") for k in text.state_dict())            # the frozen model is not saved
    frozen = text._frozen[0].state_dict()
    common = [k for k in before if k in frozen]
    assert common and all(torch.equal(frozen[k], before[k]) for k in common)
    assert not any(p.requires_grad for p in text._frozen[0].parameters())
    out = generate(run, 2, prompt="a gold dot", guidance=2.0, device="cpu")
    assert torch.isfinite(out["x"]).all()
    with pytest.raises(UserError, match="tokens, longer than the 4 its encoder takes"):
        generate(run, 2, prompt="a gold dot a red dot", device="cpu")


def test_a_missing_encoder_folder_is_one_clear_line(tmp_path):
    from multidiff.conditioning.text import PretrainedTokenizer
    with pytest.raises(UserError, match="pretrained text encoder folder not found"):
        PretrainedTokenizer(str(tmp_path / "nowhere"), 8)
