"""Precision, recall and F1 of the tagger against a labelled set (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn


@dataclass
class Report:
    items: int = 0
    relevance: Counts = field(default_factory=Counts)
    per_tag: dict[str, Counts] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # tag -> "mediator" | "obstacle"
    errors: list[tuple[str, str]] = field(default_factory=list)  # (item id, what went wrong)

    def micro(self, kind: str) -> Counts:
        total = Counts()
        for tag, c in self.per_tag.items():
            if self.kinds.get(tag) == kind:
                total.add(c)
        return total


def score(
    gold: Iterable[tuple[str, bool, Sequence[str], Sequence[str]]],
    predicted: Iterable[tuple[bool, Sequence[str], Sequence[str]]],
    *,
    mediators: Sequence[str],
    obstacles: Sequence[str],
) -> Report:
    """``gold``: (id, relevant, mediators, obstacles); ``predicted``: (relevant, mediators, obstacles)."""
    rep = Report(kinds={m: "mediator" for m in mediators} | {o: "obstacle" for o in obstacles})
    for tag in [*mediators, *obstacles]:
        rep.per_tag[tag] = Counts()
    for (item_id, g_rel, g_med, g_obs), (p_rel, p_med, p_obs) in zip(gold, predicted, strict=True):
        rep.items += 1
        _count(rep.relevance, g_rel, p_rel)
        if g_rel != p_rel:
            rep.errors.append((item_id, f"relevant: expected {g_rel}, got {p_rel}"))
        for kind_gold, kind_pred in ((g_med, p_med), (g_obs, p_obs)):
            for tag in set(kind_gold) | set(kind_pred):
                c = rep.per_tag.setdefault(tag, Counts())
                _count(c, tag in kind_gold, tag in kind_pred)
                if (tag in kind_gold) != (tag in kind_pred):
                    rep.errors.append((item_id, f"{tag}: expected {tag in kind_gold}, got {tag in kind_pred}"))
    return rep


def _count(c: Counts, gold: bool, pred: bool) -> None:
    if gold and pred:
        c.tp += 1
    elif pred:
        c.fp += 1
    elif gold:
        c.fn += 1
