"""Tag a text against the taxonomy: relevant?, which mediators, which obstacles, and why (pure).

Decision order (documented in docs/tagging.md):

1. The text is cleaned (mojibake repaired) and folded for matching: lower case, diacritics dropped,
   one character for one character, so every offset in the folded copy is an offset in the text.
2. One pass over its word tokens finds every taxonomy phrase (a dict keyed by token sequences,
   indexed by first token).  CJK terms, which have no word boundaries, are found by one regex.
3. Relevance: the war must be named (``context.war``) and the item must be about its diplomacy
   or its issues: a peace/diplomacy term, a strong obstacle term or a strong mediator term.
4. Mediators / obstacles count only in relevant items.  ``strong`` terms count alone.  ``weak``
   terms (a country, a city, a place name) count only with a role term (``roles``) within
   ``window`` tokens, or both in the title; a tag's ``exclude`` phrase anywhere switches its weak
   terms off.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tracker.models import Evidence, Tags
from tracker.parse import repair

Kind = Literal["mediator", "obstacle"]

# --- taxonomy as validated data ----------------------------------------------------------------


class TagSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    description: str = ""
    strong: list[str] = Field(default_factory=list)
    weak: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class ContextSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    war: list[str] = Field(min_length=1)
    peace: list[str] = Field(min_length=1)


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    window: int = Field(default=14, ge=1, le=100)
    context: ContextSpec
    roles: list[str] = Field(min_length=1)
    mediators: dict[str, TagSpec]
    obstacles: dict[str, TagSpec]

    def labels(self) -> dict[str, str]:
        return {k: v.label for k, v in (self.mediators | self.obstacles).items()}


class TaxonomyError(ValueError):
    pass


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides from feeds.yaml: lists of terms extend, scalars and new tags replace/add."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = list(out[key]) + [v for v in value if v not in out[key]]
        else:
            out[key] = value
    return out


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: ~10× faster


def language_packs() -> list[tuple[str, dict[str, Any]]]:
    """The packaged language packs (``tracker/data/lang/*.yaml``), in name order.

    A pack adds one language's terms to the base taxonomy: context, roles and the terms of existing
    tags (lists extend).  Keeping each language in its own file lets people who read it review it.
    """
    folder = resources.files("tracker.data").joinpath("lang")
    if not folder.is_dir():
        return []
    packs = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            packs.append((f"tracker/data/lang/{entry.name}", _yaml(entry.read_text(encoding="utf-8")) or {}))
    return packs


def _check_pack(source: str, base: Mapping[str, Any], pack: Mapping[str, Any]) -> None:
    """A pack may only add terms: no new tags, no scalars, no unknown sections."""
    allowed = {"context", "roles", "mediators", "obstacles"}
    for key, value in pack.items():
        if key not in allowed:
            raise TaxonomyError(f"{source}: {key}: a language pack may only hold {', '.join(sorted(allowed))}")
        if key in ("mediators", "obstacles", "context"):
            if not isinstance(value, Mapping):
                raise TaxonomyError(f"{source}: {key}: expected a mapping")
            for tag, spec in value.items():
                if tag not in base[key]:
                    raise TaxonomyError(f"{source}: {key}.{tag}: not in the base taxonomy")
                if key == "context":
                    continue
                for field_name, terms in (spec or {}).items():
                    if field_name not in ("strong", "weak", "exclude") or not isinstance(terms, list):
                        raise TaxonomyError(f"{source}: {key}.{tag}.{field_name}: expected strong/weak/exclude lists")


def load_taxonomy(path: Path | str | None = None, overrides: Mapping[str, Any] | None = None) -> Taxonomy:
    """The packaged taxonomy and its language packs (or ``path`` alone), extended by ``overrides``;
    validated."""
    if path is None:
        text = resources.files("tracker.data").joinpath("taxonomy.yaml").read_text(encoding="utf-8")
        source = "tracker/data/taxonomy.yaml"
        packs = language_packs()
    else:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
        packs = []
    data = _yaml(text)
    for pack_source, pack in packs:
        _check_pack(pack_source, data, pack)
        data = _merge(data, pack)
    if overrides:
        data = _merge(data, overrides)
    try:
        tax = Taxonomy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TaxonomyError(f"{source}: {where}: {first['msg']}") from None
    for spec in (tax.mediators | tax.obstacles).values():
        for term in spec.strong + spec.weak + spec.exclude:
            if not expand(term):
                raise TaxonomyError(f"{source}: empty term in {spec.label!r}: {term!r}")
    return tax


# --- folding and tokens --------------------------------------------------------------------------


def _fold_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for cp in range(0x80, 0x3000):
        ch = chr(cp)
        base = unicodedata.normalize("NFD", ch)[0]
        low = base.lower()
        if len(low) == 1 and low != ch:
            table[cp] = low
    table.update({ord("İ"): "i", ord("ı"): "i", ord("’"): "'", ord("ʼ"): "'", ord("‘"): "'", ord("ß"): "ß"})
    table.update({ord("ё"): "е", ord("Ё"): "е", ord("ї"): "і", ord("Ї"): "і", ord("й"): "и", ord("Й"): "и"})
    return table


FOLD = _fold_table()
# Vowel signs and viramas (Devanagari and the other Indic scripts), Arabic harakat and Hebrew points
# are combining marks, which ``\w`` leaves out: without them "यूक्रेन" would be four one-letter tokens.
MARKS = "".join(chr(c) for c in range(0x483, 0x1000) if unicodedata.category(chr(c)) in ("Mn", "Mc", "Me"))
TOKEN = re.compile(f"[\\w{MARKS}]+")
_MARK_SET = frozenset(MARKS)
NON_ASCII = re.compile(r"[^\x00-\x7f]+")
SENTENCE_END = re.compile(r"(?<!\b\w)[.!?;。！？।]\s|\n")  # "U.S. envoy": a lone letter's dot ends no sentence
CJK = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")  # Thai, kana, CJK, Hangul
_ALT = re.compile(r"\{([^{}]*)\}")


def fold(text: str) -> str:
    """Lower case without diacritics, same length as ``text`` (offsets carry over)."""
    if "İ" in text:
        text = text.replace("İ", "i")  # the one letter whose lower() is two characters
    low = text.lower()
    if low.isascii():
        return low
    return NON_ASCII.sub(_fold_run, low)


def _fold_run(m: re.Match[str]) -> str:
    return m.group().translate(FOLD)


def expand(term: str) -> list[str]:
    """``переговор{ы,ов}`` → [переговоры, переговоров]; nested groups expand left to right."""
    m = _ALT.search(term)
    if not m:
        return [term] if term.strip() else []
    out: list[str] = []
    for alt in m.group(1).split(","):
        out.extend(expand(term[: m.start()] + alt + term[m.end() :]))
    return out


@dataclass(frozen=True, slots=True)
class _Hit:
    category: str  # war | peace | role | strong | weak | exclude
    tag: str  # taxonomy key, or "" for context categories
    kind: str  # mediator | obstacle | context
    exact: str | None  # case-sensitive form (letters and digits only), or None


@dataclass
class _Compiled:
    phrases: dict[str, list[_Hit]] = field(default_factory=dict)
    first: dict[str, int] = field(default_factory=dict)  # first token -> longest phrase (tokens)
    cjk: dict[str, list[_Hit]] = field(default_factory=dict)
    cjk_re: re.Pattern[str] | None = None
    war_words: frozenset[str] = frozenset()  # first tokens of war-context phrases

    def add(self, term: str, hit_for: tuple[str, str, str]) -> None:
        category, tag, kind = hit_for
        for form in expand(term):
            exact = None
            if form.startswith("="):
                form = form[1:]
                exact = _letters(form)
            hit = _Hit(category, tag, kind, exact)
            if CJK.search(form):
                self.cjk.setdefault(form, []).append(hit)
                continue
            tokens = TOKEN.findall(fold(form))
            if not tokens:
                continue
            key = " ".join(tokens)
            self.phrases.setdefault(key, []).append(hit)
            self.first[tokens[0]] = max(self.first.get(tokens[0], 0), len(tokens))

    def finish(self) -> None:
        self.war_words = frozenset(
            key.split(" ")[0] for key, hits in self.phrases.items() if any(h.category == "war" for h in hits)
        )
        if self.cjk:
            alts = sorted(self.cjk, key=len, reverse=True)
            self.cjk_re = re.compile("|".join(re.escape(a) for a in alts))


def _find_token(folded: str, word: str, pos: int, skip: int = 0) -> int:
    """Offset of the ``skip``-th next whole-token ``word`` at or after ``pos`` (tokens: TOKEN runs)."""
    while True:
        at = folded.find(word, pos)
        end = at + len(word)
        before = folded[at - 1] if at else " "
        after = folded[end] if end < len(folded) else " "
        if not (before.isalnum() or before == "_" or before in _MARK_SET) and not (
            after.isalnum() or after == "_" or after in _MARK_SET
        ):  # TOKEN's notion of a word character, inlined: this runs for every matched token
            if not skip:
                return at
            skip -= 1
        pos = at + 1


def _letters(s: str) -> str:
    return "".join(ch for ch in s if ch.isalnum())


def _compile(tax: Taxonomy) -> _Compiled:
    c = _Compiled()
    for term in tax.context.war:
        c.add(term, ("war", "", "context"))
    for term in tax.context.peace:
        c.add(term, ("peace", "", "context"))
    for term in tax.roles:
        c.add(term, ("role", "", "context"))
    for kind, specs in (("mediator", tax.mediators), ("obstacle", tax.obstacles)):
        for key, spec in specs.items():
            for term in spec.strong:
                c.add(term, ("strong", key, kind))
            for term in spec.weak:
                c.add(term, ("weak", key, kind))
            for term in spec.exclude:
                c.add(term, ("exclude", key, kind))
    c.finish()
    return c


# --- the tagger ----------------------------------------------------------------------------------


def tagged_text(title: str, *parts: str | None) -> str:
    """The text the tagger reads (and evidence offsets index): title, then body parts, one per line."""
    return "\n".join([title or "", *(p for p in parts if p)])


class Tagger:
    """Compiled once per taxonomy; ``tag`` is then a single pass over the text."""

    def __init__(self, taxonomy: Taxonomy | None = None) -> None:
        self.taxonomy = taxonomy or load_taxonomy()
        self._c = _compile(self.taxonomy)
        self._kinds = {k: "mediator" for k in self.taxonomy.mediators} | {
            k: "obstacle" for k in self.taxonomy.obstacles
        }
        self._order = list(self.taxonomy.mediators) + list(self.taxonomy.obstacles)
        self._window_chars = self.taxonomy.window * 8  # ~8 characters a word, in every script

    def tag(self, text: str, *, lang: str | None = None) -> Tags:
        """Tag ``text`` (title on the first line); evidence offsets index ``clean(text)``."""
        return self._tag(clean(text))

    def tag_item(self, title: str, summary: str = "", content: str | None = None, lang: str | None = None) -> Tags:
        return self.tag(tagged_text(title, summary, content), lang=lang)

    def _tag(self, text: str) -> Tags:
        folded = fold(text)
        c = self._c
        words = TOKEN.findall(folded)
        has_cjk = c.cjk_re is not None and CJK.search(text) is not None
        # Most items never name the war: a set test on the tokens settles them without a scan.
        if not has_cjk and c.war_words.isdisjoint(words):
            return NOT_RELEVANT
        first = c.first
        phrases = c.phrases
        matches: list[tuple[int, int, _Hit]] = []  # (start, end, hit)
        n_words = len(words)
        resume = 0  # the first token not inside an earlier match
        pos = 0  # the folded text is searched left to right for each matched token's offset
        unmatched: dict[str, int] = {}  # candidate tokens passed since ``pos``, by word
        for i in [i for i, w in enumerate(words) if w in first]:
            if i < resume:
                continue
            w = words[i]
            for n in range(min(first[w], n_words - i), 0, -1):
                hits = phrases.get(w if n == 1 else " ".join(words[i : i + n]))
                if hits:
                    start = _find_token(folded, w, pos, unmatched.get(w, 0))
                    pos = start + len(w)
                    for k in range(i + 1, i + n):  # walk to the phrase's last token
                        pos = _find_token(folded, words[k], pos) + len(words[k])
                    for hit in hits:
                        if hit.exact is None or _letters(text[start:pos]) == hit.exact:
                            matches.append((start, pos, hit))
                    resume = i + n
                    unmatched.clear()
                    break
            else:
                unmatched[w] = unmatched.get(w, 0) + 1
        if has_cjk:
            assert c.cjk_re is not None
            for m in c.cjk_re.finditer(folded):
                for hit in c.cjk[m.group()]:
                    matches.append((m.start(), m.end(), hit))
        if not matches:
            return NOT_RELEVANT
        title_end = text.find("\n")
        return self._decide(text, matches, title_end if title_end >= 0 else len(text))

    def _decide(self, text: str, matches: list[tuple[int, int, _Hit]], title_end: int) -> Tags:
        n_war = n_peace = 0
        strong = weak = False
        roles: list[int] = []
        excluded: set[str] = set()
        for start, _end, hit in matches:
            cat = hit.category
            if cat == "war":
                n_war += 1
            elif cat == "peace":
                n_peace += 1
                roles.append(start)
            elif cat == "role":
                roles.append(start)
            elif cat == "strong":
                strong = True
            elif cat == "weak":
                weak = True
            elif cat == "exclude":
                excluded.add(hit.tag)
        if not n_war:
            return NOT_RELEVANT
        if not (n_peace or strong):
            return WAR_ONLY
        window = self._window_chars
        title_role = bool(roles) and min(roles) < title_end
        # A role term must be in the same sentence as the actor: "talks stall. Brazil's team won" is no role.
        stops = [m.end() for m in SENTENCE_END.finditer(text)] if weak and roles else []
        role_at = [(r, bisect_right(stops, r)) for r in roles]
        found: dict[str, dict[tuple[int, int], None]] = {}
        context: dict[tuple[int, int], None] = {}
        for start, end, hit in matches:
            cat = hit.category
            if cat == "strong":
                found.setdefault(hit.tag, {})[(start, end)] = None
            elif cat == "weak" and hit.tag not in excluded:
                sentence = bisect_right(stops, start)
                if (start < title_end and title_role) or any(
                    sn == sentence and abs(r - start) <= window for r, sn in role_at
                ):
                    found.setdefault(hit.tag, {})[(start, end)] = None
            elif (cat == "war" or cat == "peace") and len(context) < 6:
                context[(start, end)] = None
        kinds = self._kinds
        mediators = tuple(k for k in self._order if k in found and kinds[k] == "mediator")
        obstacles = tuple(k for k in self._order if k in found and kinds[k] == "obstacle")
        evidence = [
            Evidence(tag=k, kind=kinds[k], phrase=text[s:e], start=s, end=e)  # type: ignore[arg-type]
            for k in self._order
            for s, e in found.get(k, ())
        ]
        evidence += [Evidence("context", "context", text[s:e], s, e) for s, e in sorted(context)]
        score = 0.25 + 0.1 * min(n_war, 3) + 0.1 * min(n_peace, 3) + 0.1 * len(mediators) + 0.1 * len(obstacles)
        return Tags(
            relevant=True,
            score=round(min(score, 1.0), 2),
            mediators=mediators,
            obstacles=obstacles,
            evidence=tuple(evidence),
        )


NOT_RELEVANT = Tags(relevant=False, score=0.0)
WAR_ONLY = Tags(relevant=False, score=0.1)


def clean(text: str) -> str:
    """What the tagger reads: mojibake repaired (a no-op for clean text)."""
    return repair(text)


@functools.cache
def tagger_for(overrides_json: str = "") -> Tagger:
    """The tagger for the packaged taxonomy extended by feeds.yaml's ``taxonomy:`` overrides, built
    once per process.  The overrides come as canonical JSON text so they can key this cache and
    travel to parse workers with each document."""
    return Tagger(load_taxonomy(overrides=json.loads(overrides_json) if overrides_json else None))


def overrides_key(overrides: Mapping[str, Any] | None) -> str:
    return json.dumps(overrides, sort_keys=True, ensure_ascii=False) if overrides else ""


def default_tagger() -> Tagger:
    """The packaged taxonomy's tagger."""
    return tagger_for("")


def tag_many(tagger: Tagger, texts: Iterable[str]) -> list[Tags]:
    return [tagger.tag(t) for t in texts]
