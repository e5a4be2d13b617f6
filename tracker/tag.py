"""Tag a text against the taxonomy: relevant?, which mediators, which obstacles, and why (pure).

Decision order (documented in docs/tagging.md):

1. The text is cleaned (mojibake repaired) and folded for matching: lower case, diacritics dropped,
   one character for one character, so every offset in the folded copy is an offset in the text.
   Every character that is not part of a word token becomes a space, so the folded copy splits on
   " " into its tokens, and a token's offset is the sum of the lengths before it.
2. A set test of the tokens against the first words of the war terms rejects most items at once.
   Otherwise one pass over the tokens finds every taxonomy phrase (a trie of token sequences: the
   longest phrase at each token wins).  CJK terms, which have no word boundaries, are found by one regex.
3. Relevance: the war must be named (``context.war``) and the item must be about its diplomacy
   or its issues: a peace/diplomacy term, a strong obstacle term or a strong mediator term.
4. Mediators / obstacles count only in relevant items.  ``strong`` terms count alone.  ``weak``
   terms (a country, a city, a place name) count only with a role term (``roles``) within
   ``window`` tokens, or both in the title; a tag's ``exclude`` phrase anywhere switches its weak
   terms off.

Speed (bench/tag.py): an item that never names the war costs a few microseconds, a relevant one ~30.
Folding runs in C where it can: ``str.translate`` for ASCII text, ``bytes.translate`` for text that
fits a single-byte code page (Latin-1, the Windows pages); regex substitutions for the rest.  Each
phrase's hits are summed up into one record when the taxonomy is compiled.  tests/data/tag-golden.jsonl
holds what the slower tagger before these changes said about ~600 varied texts, to the evidence offsets:
a change for speed must leave every field as it is.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import json
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from itertools import accumulate, compress, count, filterfalse
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tracker.models import Evidence, Tags

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
NON_ASCII = re.compile(r"[^\x00-\x7f]+")
# "U.S. envoy": a lone letter's dot ends no sentence.  The look-behind sits after the stop character
# (``(?<!\b\w.)`` there is ``(?<!\b\w)`` before it) so that the pattern starts with a character set,
# which lets the regex engine skip to candidate characters: 3× faster than with the look-behind first.
SENTENCE_END = re.compile(r"[.!?;。！？।](?<!\b\w.)\s|\n")
CJK = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")  # Thai, kana, CJK, Hangul
_ALT = re.compile(r"\{([^{}]*)\}")
# Only the characters that folding changes (after lower()): most non-ASCII text has few of them, so
# substituting these runs costs far less than translating every non-ASCII run.
_FOLDED = re.compile("[" + "".join(re.escape(chr(cp)) for cp, to in sorted(FOLD.items()) if to != chr(cp)) + "]+")
# Every character that is neither a token character nor a space: replaced by a space, one for one, the
# folded text splits on " " into its tokens (and empty strings between adjacent separators).
_SEPARATOR = re.compile(f"[^\\w{MARKS} ]")


def _token_char(ch: str) -> bool:
    """TOKEN's notion of a word character."""
    return ch.isalnum() or ch == "_" or ch in _MARK_SET


def _spaced_char(ch: str) -> str:
    """What a character of lower-cased text becomes in ``_spaced``: folded, or " " unless a token character."""
    folded = FOLD.get(ord(ch), ch)
    return folded if _token_char(folded) else " "


_MARK_SET = frozenset(MARKS)
# ASCII text: lower() and the separators in one ``str.translate`` (which has a fast path for ASCII).
_ASCII_SPACED = {cp: _spaced_char(chr(cp).lower()) for cp in range(128)}


def _lacking(codec: str) -> Callable[[UnicodeEncodeError], tuple[bytes, int]]:
    """The encoding error handler of a code page (``exc.encoding`` says "charmap" for all of them)."""
    runs: dict[str, bytes] = {}  # a run of characters the code page lacks -> the run in _spaced, b"" if none

    def handler(exc: UnicodeEncodeError) -> tuple[bytes, int]:
        """Characters the code page lacks (quotes and dashes in Latin-1; "ş" and "ı", which fold to "s" and
        "i") as they read in ``_spaced`` if the code page has that; else (and for any CJK character, even
        "・") the encoding stops, short: raising would cost two microseconds.  A long run is another
        script's word: no use looking at it."""
        if exc.end - exc.start > 8:
            return b"", len(exc.object)
        run = exc.object[exc.start : exc.end]
        out = runs.get(run)
        if out is None:
            try:
                out = b"" if CJK.search(run) else "".join(map(_spaced_char, run)).encode(codec)
            except UnicodeEncodeError:
                out = b""
            if len(runs) >= 4096:
                runs.clear()
            runs[run] = out
        return out, exc.end if out else len(exc.object)

    return handler


def _code_page_table(codec: str) -> bytes | None:
    """The ``bytes.translate`` table of a single-byte code page that does lower-cased text's ``_spaced``,
    or None if a character's folded form is not in the code page (or would be a CJK character)."""
    table = bytearray(range(256))
    for v in range(256):
        try:
            ch = bytes([v]).decode(codec)
        except UnicodeDecodeError:
            continue  # never the encoding of a character
        try:
            out = _spaced_char(ch).encode(codec)
        except UnicodeEncodeError:
            return None
        if len(out) != 1 or CJK.search(ch):
            return None
        table[v] = out[0]
    if any(table[table[v]] != table[v] for v in range(256)):  # the handler's bytes pass the table unchanged
        return None
    return bytes(table)


# Single-byte code pages: encoding lower-cased text to one, ``bytes.translate`` and decoding do what the
# two regex substitutions of ``fold`` and ``_SEPARATOR`` do, in C, at a few nanoseconds a character instead
# of ~20.  Latin-1 first (most European news); the others are picked by the first letter Latin-1 lacks.
_CODE_PAGES = {
    codec: table
    for codec in ("latin-1", "cp1252", "cp1250", "cp1254", "cp1257", "cp1251", "kz1048", "cp1253", "cp1255", "cp1256")
    if (table := _code_page_table(codec)) is not None
}
_ERRORS = {codec: f"tracker.tag.{codec}" for codec in _CODE_PAGES}  # the error handler of each
for _codec, _name in _ERRORS.items():
    codecs.register_error(_name, _lacking(_codec))  # type: ignore[arg-type]  # it gets UnicodeEncodeError
_CODE_PAGE_OF: dict[str, str] = {}  # a character outside Latin-1 -> the first code page with it
for _codec in _CODE_PAGES:
    for _v in range(256):
        with contextlib.suppress(UnicodeDecodeError):
            _ch = bytes([_v]).decode(_codec)
            if _ch > "\xff":
                _CODE_PAGE_OF.setdefault(_ch, _codec)


def fold(text: str) -> str:
    """Lower case without diacritics, same length as ``text`` (offsets carry over)."""
    if "İ" in text:
        text = text.replace("İ", "i")  # the one letter whose lower() is two characters
    low = text.lower()
    if low.isascii():
        return low
    return _FOLDED.sub(_fold_run, low)


def _fold_run(m: re.Match[str]) -> str:
    return m.group().translate(FOLD)


def _spaced(text: str) -> tuple[str, bool]:
    """``fold(text)`` with every non-token character replaced by " " (same length: split on " " it gives the
    tokens, TOKEN runs of the folded text, at offsets the lengths add up to), and whether the text may hold
    CJK characters (not if ASCII or in a code page).

    ``str.translate`` of ASCII text and ``bytes.translate`` of text in a code page cost far less than the
    regex substitutions, which take the rest.
    """
    if text.isascii():
        return text.translate(_ASCII_SPACED), False
    if "İ" in text:
        text = text.replace("İ", "i")
    low = text.lower()
    # The first character picks the code page: Latin-1 for Latin-1 and others (quotes), else the first page
    # with it; none for a letter of a script without one (Devanagari, Hangul).  Then, if a letter was
    # missing, the page of that letter.
    first = low[0]
    codec = "latin-1" if first <= "\xff" else _CODE_PAGE_OF.get(first, None if first.isalpha() else "latin-1")
    for _ in range(2):
        if codec is None:
            break
        encoded = low.encode(codec, _ERRORS[codec])
        if len(encoded) == len(low):  # one byte a character, unless a letter is missing
            return encoded.translate(_CODE_PAGES[codec]).decode(codec), False
        page = _CODE_PAGE_OF.get(low[len(encoded)])
        codec = page if page != codec else None
    return _SEPARATOR.sub(" ", _FOLDED.sub(_fold_run, low)), True


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


# What a phrase's hits add to the decision, summed up once at compile time so that a match costs a
# tuple unpacking instead of a loop over hit objects:
# (war hits, peace hits, is a role (peace or role), is context (war or peace), has a strong hit,
#  ((tag, is_weak), ...) for strong / weak hits, (tag, ...) excluded, all hits if any is case-sensitive)
_Rec = tuple[int, int, bool, bool, bool, tuple[tuple[str, bool], ...], tuple[str, ...], tuple[_Hit, ...] | None]
_Node = tuple["_Rec | None", "dict[str, _Node] | None"]  # (the phrase ending here, longer phrases by next token)


def _summary(hits: Iterable[_Hit], exact: tuple[_Hit, ...] | None = None) -> _Rec:
    """The record of these hits (see ``_Rec``)."""
    hits = list(hits)
    cats = [h.category for h in hits]
    return (
        cats.count("war"),
        cats.count("peace"),
        "peace" in cats or "role" in cats,
        "war" in cats or "peace" in cats,
        "strong" in cats,
        tuple((h.tag, h.category == "weak") for h in hits if h.category in ("strong", "weak")),
        tuple(h.tag for h in hits if h.category == "exclude"),
        exact,
    )


def _record(hits: list[_Hit]) -> _Rec:
    """A phrase's record; one with case-sensitive hits keeps them all, resolved per match (``_resolve``)."""
    if any(h.exact is not None for h in hits):
        return _summary((), tuple(hits))
    return _summary(hits)


@dataclass
class _Compiled:
    phrases: dict[str, list[_Hit]] = field(default_factory=dict)
    cjk: dict[str, list[_Hit]] = field(default_factory=dict)
    cjk_re: re.Pattern[str] | None = None
    war_words: frozenset[str] = frozenset()  # first tokens of war-context phrases
    trie: dict[str, _Node] = field(default_factory=dict)  # first token -> node
    cjk_recs: dict[str, _Rec] = field(default_factory=dict)

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
            self.phrases.setdefault(" ".join(tokens), []).append(hit)

    def finish(self) -> None:
        self.war_words = frozenset(
            key.split(" ")[0] for key, hits in self.phrases.items() if any(h.category == "war" for h in hits)
        )
        records: dict[tuple[_Hit, ...], _Rec] = {}  # most phrases share their hits' record with others

        def record(hits: list[_Hit]) -> _Rec:
            key = tuple(hits)
            if key not in records:
                records[key] = _record(hits)
            return records[key]

        # Nodes are lists while building, tuples (faster to unpack) once done.
        root: dict[str, list[Any]] = {}
        for key, hits in self.phrases.items():
            level = root
            tokens = key.split(" ")
            for k, token in enumerate(tokens):
                node = level.setdefault(token, [None, None])
                if k == len(tokens) - 1:
                    node[0] = record(hits)
                else:
                    if node[1] is None:
                        node[1] = {}
                    level = node[1]
        self.trie = _freeze(root)
        self.cjk_recs = {form: record(hits) for form, hits in self.cjk.items()}
        if self.cjk:
            alts = sorted(self.cjk, key=len, reverse=True)
            self.cjk_re = re.compile("|".join(re.escape(a) for a in alts))


def _freeze(level: dict[str, list[Any]]) -> dict[str, _Node]:
    """The trie with tuples for nodes: one unpacking a match instead of two list lookups."""
    return {t: (rec, None if children is None else _freeze(children)) for t, (rec, children) in level.items()}


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
        self._kinds: dict[str, Kind] = dict.fromkeys(self.taxonomy.mediators, "mediator")
        self._kinds.update(dict.fromkeys(self.taxonomy.obstacles, "obstacle"))
        self._order = list(self.taxonomy.mediators) + list(self.taxonomy.obstacles)
        # A key both a mediator and an obstacle is listed twice in the order (and its evidence twice).
        self._rank = {k: i for i, k in reversed(list(enumerate(self._order)))}
        self._unique_order = len(self._rank) == len(self._order)
        self._is_mediator = frozenset(k for k, kind in self._kinds.items() if kind == "mediator").__contains__
        self._window_chars = self.taxonomy.window * 8  # ~8 characters a word, in every script
        self._exact: dict[tuple[int, str], _Rec] = {}  # (id of a record's hits, matched text) -> record

    def tag(self, text: str, *, lang: str | None = None) -> Tags:
        """Tag ``text`` (title on the first line); evidence offsets index ``clean(text)``."""
        return self._tag(clean(text))

    def tag_item(self, title: str, summary: str = "", content: str | None = None, lang: str | None = None) -> Tags:
        return self.tag(tagged_text(title, summary, content), lang=lang)

    def _tag(self, text: str) -> Tags:
        """Tokens, the war-word test, then the phrases: offsets come from the tokens' lengths, not a search."""
        c = self._c
        spaced, maybe_cjk = _spaced(text)
        parts = spaced.split(" ")  # the tokens, with "" for each extra separator
        has_cjk = maybe_cjk and c.cjk_re is not None and CJK.search(text) is not None
        # Most items never name the war: a set test on the tokens settles them without a scan.
        if not has_cjk and c.war_words.isdisjoint(parts):
            return NOT_RELEVANT
        trie = c.trie
        n_parts = len(parts)
        # part j starts at ends[j] + j: the lengths of the parts before it plus one separator after each
        ends = list(accumulate(map(len, parts), initial=0))
        matches: list[tuple[int, int, _Rec]] = []  # (start, end, record), left to right
        resume = 0  # the first part not inside an earlier match
        for j in compress(count(), map(trie.__contains__, parts)):
            if j < resume:
                continue
            rec, children = trie[parts[j]]
            last = j
            k = j + 1
            while children is not None and k < n_parts:  # the longest phrase: walk on, over empty parts
                token = parts[k]
                if token:
                    node = children.get(token)
                    if node is None:
                        break
                    if node[0] is not None:
                        rec, last = node[0], k
                    children = node[1]
                k += 1
            if rec is not None:
                matches.append((ends[j] + j, ends[last + 1] + last, rec))
                resume = last + 1
        if has_cjk:
            assert c.cjk_re is not None
            recs = c.cjk_recs
            for m in c.cjk_re.finditer(fold(text)):
                matches.append((m.start(), m.end(), recs[m.group()]))
        if not matches:
            return NOT_RELEVANT
        return self._decide(text, matches)

    def _resolve(self, hits: tuple[_Hit, ...], phrase: str) -> _Rec:
        """The record of a match of a phrase with case-sensitive hits: the hits whose form it has."""
        key = (id(hits), phrase)
        rec = self._exact.get(key)
        if rec is None:
            if len(self._exact) >= 4096:
                self._exact.clear()
            letters = _letters(phrase)
            rec = self._exact[key] = _summary(h for h in hits if h.exact is None or h.exact == letters)
        return rec

    def _decide(self, text: str, matches: list[tuple[int, int, _Rec]]) -> Tags:
        """Relevance, the tags and their evidence from the matches (left to right, then the CJK ones)."""
        n_war = n_peace = 0
        strong = False
        roles: list[int] = []
        excluded: set[str] = set()
        context: dict[tuple[int, int], None] = {}  # the first six distinct war / peace spans
        tagged: list[tuple[int, int, tuple[tuple[str, bool], ...]]] = []
        for start, end, rec in matches:
            war, peace, role, ctx, has_strong, tags, excl, exact = rec
            if exact is not None:
                war, peace, role, ctx, has_strong, tags, excl, _ = self._resolve(exact, text[start:end])
            if war:
                n_war += war
            if peace:
                n_peace += peace
            if role:
                roles.append(start)
            if ctx and len(context) < 6:
                context[(start, end)] = None
            if tags:
                tagged.append((start, end, tags))
                strong = strong or has_strong
            if excl:
                excluded.update(excl)
        if not n_war:
            return NOT_RELEVANT
        if not (n_peace or strong):
            return WAR_ONLY
        title_end = text.find("\n")
        if title_end < 0:
            title_end = len(text)
        roles.sort()  # already in order unless CJK matches (appended last) are roles
        title_role = bool(roles) and roles[0] < title_end
        window = self._window_chars
        found: dict[str, dict[tuple[int, int], None]] = {}
        for start, end, tags in tagged:
            near: bool | None = None  # whether a role term is in this weak term's sentence and window
            for tag, weak in tags:
                if weak:
                    if tag in excluded:
                        continue
                    if near is None:
                        near = (start < title_end and title_role) or _role_near(text, roles, start, window)
                    if not near:
                        continue
                found.setdefault(tag, {})[(start, end)] = None
        if self._unique_order:
            order = sorted(found, key=self._rank.__getitem__)
            mediators = tuple(filter(self._is_mediator, order))
            obstacles = tuple(filterfalse(self._is_mediator, order))
        else:
            order = [k for k in self._order if k in found]
            mediators = tuple(k for k in order if self._kinds[k] == "mediator")
            obstacles = tuple(k for k in order if self._kinds[k] == "obstacle")
        kinds = self._kinds
        if _TUPLE_EVIDENCE:  # built by tuple's C constructor, not the named tuple's Python-level __new__
            new = tuple.__new__
            evidence = [new(Evidence, (k, kinds[k], text[s:e], s, e)) for k in order for s, e in found[k]]
            evidence += [new(Evidence, ("context", "context", text[s:e], s, e)) for s, e in sorted(context)]
        else:
            evidence = [Evidence(k, kinds[k], text[s:e], s, e) for k in order for s, e in found[k]]
            evidence += [Evidence("context", "context", text[s:e], s, e) for s, e in sorted(context)]
        return Tags(
            relevant=True,
            score=_score(n_war, n_peace, len(mediators), len(obstacles)),
            mediators=mediators,
            obstacles=obstacles,
            evidence=tuple(evidence),
        )


@functools.cache
def _score_of(wars: int, peaces: int, mediators: int, obstacles: int) -> float:
    """The score's arithmetic, done once per combination."""
    score = 0.25 + 0.1 * wars + 0.1 * peaces + 0.1 * mediators + 0.1 * obstacles
    return round(min(score, 1.0), 2)


def _score(n_war: int, n_peace: int, n_mediators: int, n_obstacles: int) -> float:
    """0.25, and 0.1 for each war and peace term (three at most) and each tag, up to 1 (cached: a
    microsecond of float arithmetic and rounding)."""
    return _score_of(min(n_war, 3), min(n_peace, 3), n_mediators, n_obstacles)


# ``Evidence`` is a named tuple (tracker.models): ``tuple.__new__`` builds one a tenth of a microsecond faster
# than its constructor, a dozen times a relevant item.  Should it become a class again, the constructor is used.
_TUPLE_EVIDENCE = issubclass(Evidence, tuple) and getattr(Evidence, "_fields", None) == (
    "tag",
    "kind",
    "phrase",
    "start",
    "end",
)


def _role_near(text: str, roles: list[int], at: int, window: int) -> bool:
    """Whether a role term starts within ``window`` characters of ``at`` and in the same sentence: "talks
    stall. Brazil's team won" is no role.  The nearest role on either side decides (a sentence end between
    it and ``at`` lies between any farther one too), and only the text between the two is searched."""
    i = bisect_right(roles, at)  # roles[i - 1] <= at < roles[i]
    if i and roles[i - 1] >= at - window and (roles[i - 1] == at or not _stop_between(text, roles[i - 1], at)):
        return True
    return i < len(roles) and roles[i] <= at + window and not _stop_between(text, at, roles[i])


def _stop_between(text: str, a: int, b: int) -> bool:
    """Whether a sentence ends in ``text[a:b]``: a ``SENTENCE_END`` match ends in (a, b], as in a scan of the
    whole text (a match is at most two characters long and its look-behind sees before ``pos``)."""
    m = SENTENCE_END.search(text, max(a - 1, 0), b)
    if m is not None and m.end() <= a:  # a newline just before ``a``
        m = SENTENCE_END.search(text, a, b)
    return m is not None


NOT_RELEVANT = Tags(relevant=False, score=0.0)
WAR_ONLY = Tags(relevant=False, score=0.1)


def clean(text: str) -> str:
    """What the tagger reads: mojibake repaired (a no-op for clean text)."""
    return _repair()(text)


@functools.cache
def _repair() -> Callable[[str], str]:
    """``tracker.parse.repair``, imported on first use: the parser's libraries (feedparser, ftfy)
    stay out of processes that only need the taxonomy, such as a poll where every feed answers 304."""
    from tracker.parse import repair

    return repair


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
