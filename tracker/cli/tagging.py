"""`tracker tag` (JSON lines in, tags out) and `tracker eval` (precision / recall / F1)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from tracker.cli.app import EXIT_RUNTIME, EXIT_USAGE, app, globals_of

err = Console(stderr=True)


def _tagger(ctx: typer.Context) -> Any:
    """The tagger with feeds.yaml's taxonomy overrides when a config is at hand."""
    from tracker.config import ConfigError, load_config
    from tracker.settings import Settings
    from tracker.tag import overrides_key, tagger_for

    g = globals_of(ctx)
    path = g.config_path or Settings().config
    overrides = None
    if Path(path).exists():
        try:
            overrides = load_config(path).taxonomy or None
        except ConfigError as exc:
            err.print(f"config error: {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from exc
    return tagger_for(overrides_key(overrides))


@app.command()
def tag(ctx: typer.Context) -> None:
    """Tag JSON lines from stdin: {"id","title","summary","content"?,"lang"?} → {"id","relevant",...}.

    A bad line is reported on stderr (with its line number) and skipped; the rest go on.
    """
    from tracker.tag import tagged_text

    tagger = _tagger(ctx)
    bad = 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("expected a JSON object")
            title = obj.get("title")
            if not isinstance(title, str):
                raise ValueError('"title" must be a string')
            body = [obj.get("summary") or "", obj.get("content") or ""]
            if not all(isinstance(b, str) for b in body):
                raise ValueError('"summary" and "content" must be strings')
            tags = tagger.tag(tagged_text(title, *body), lang=obj.get("lang"))
        except (ValueError, TypeError) as exc:
            bad += 1
            err.print(f"line {n}: {exc}", highlight=False, soft_wrap=True)
            continue
        out = {
            "id": obj.get("id"),
            "relevant": tags.relevant,
            "score": tags.score,
            "mediators": list(tags.mediators),
            "obstacles": list(tags.obstacles),
            "evidence": [
                {"tag": e.tag, "kind": e.kind, "phrase": e.phrase, "start": e.start, "end": e.end}
                for e in tags.evidence
                if e.kind != "context"
            ],
        }
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    if bad:
        raise typer.Exit(EXIT_RUNTIME)


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON lines with gold labels."),
    fmt: str = typer.Option("text", "--format", help="text or json"),
    show_errors: bool = typer.Option(False, "--errors", help="List every disagreement."),
) -> None:
    """Precision, recall and F1 per tag and overall against a labelled JSON-lines file."""
    from tracker.evaluate import score
    from tracker.tag import tagged_text

    tagger = _tagger(ctx)
    gold = []
    pred = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            o = json.loads(line)
            gold.append((str(o.get("id", n)), bool(o["relevant"]), o.get("mediators", []), o.get("obstacles", [])))
        except (ValueError, KeyError) as exc:
            err.print(f"{file}:{n}: {exc}")
            raise typer.Exit(EXIT_USAGE) from exc
        t = tagger.tag(tagged_text(o.get("title", ""), o.get("summary", ""), o.get("content")), lang=o.get("lang"))
        pred.append((t.relevant, t.mediators, t.obstacles))
    tax = tagger.taxonomy
    rep = score(gold, pred, mediators=list(tax.mediators), obstacles=list(tax.obstacles))
    rows = [("relevance", rep.relevance)]
    rows += [(t, c) for t, c in rep.per_tag.items()]
    rows += [("mediators (micro)", rep.micro("mediator")), ("obstacles (micro)", rep.micro("obstacle"))]
    if fmt == "json":
        data = {
            name: {"precision": c.precision, "recall": c.recall, "f1": c.f1, "tp": c.tp, "fp": c.fp, "fn": c.fn}
            for name, c in rows
        }
        sys.stdout.write(json.dumps({"items": rep.items, "scores": data}, indent=2) + "\n")
    else:
        table = Table("tag", "precision", "recall", "F1", "tp", "fp", "fn", title=f"{file} — {rep.items} items")
        for name, c in rows:
            table.add_row(name, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", str(c.tp), str(c.fp), str(c.fn))
        Console().print(table)
    if show_errors:
        for item_id, what in rep.errors:
            err.print(f"{item_id}: {what}", highlight=False)
