"""The lines ``multidiff info`` prints about a run's named conditions."""
from __future__ import annotations


def describe_conditions(cfg: dict) -> list[str]:
    """One line per condition: its name, type, dropout rate and what ``--cond NAME=`` takes."""
    lines = []
    for name, spec in cfg.get("conditions", {}).items():
        if spec["type"] == "categorical":
            values = cfg["dataset"]["conditions"][name]["values"]
            takes = f"{len(values)} values: {', '.join(values[:12])}{', ...' if len(values) > 12 else ''}"
        elif spec["type"] == "vector":
            source = f"sidecar {spec['suffix']}" if spec["source"] == "sidecar" else "CSV columns"
            takes = f"{spec['dim']} numbers ({source})"
        else:
            if spec["pretrained"]:
                encoder, unit = f"pretrained {spec['pretrained']}", "tokens"
            elif spec["tokens"] == "words":
                encoder, unit = "transformer over words as hashed byte n-grams", "words"
            else:
                encoder, unit = "byte-level transformer", "bytes"
            takes = f"a caption of at most {spec['max_length']} {unit} ({encoder})"
            if spec["templates"]:
                takes += f"; templates: {' | '.join(spec['templates'])}"
                if spec["held_out"]:
                    takes += f" (held out: {' | '.join(spec['held_out'])})"
            held = [w for values in spec.get("held_out_synonyms", {}).values() for words in values.values() for w in words]
            if held:
                takes += f"; held-out synonyms: {', '.join(held[:12])}{', ...' if len(held) > 12 else ''}"
        lines.append(f"condition:  {name} ({spec['type']}, dropped {spec['drop']:.0%} in training): {takes}")
    return lines
