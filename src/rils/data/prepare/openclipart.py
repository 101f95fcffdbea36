"""Open Clip Art Library (Debian `openclipart-png` + `openclipart-svg`) -> captioned shards.

Layout of the install: ROOT/png/CATEGORY/.../NAME.png and the same path under ROOT/svg with .svg;
folders are the category tree. About 1,200 PNG paths are symlinks filing one drawing under a
second category; each drawing becomes one sample (kept at its real path, the other categories
listed in the json as `also_in`), so no image sits in both train and val.

Captions come from the SVG's RDF metadata (dc:title, dc:description, dc:subject keywords,
dc:creator), cleaned of the library's boilerplate:
  * collection names used as titles for whole icon sets ("Lemon SVG theme", "Part of the Flat Icon
    Collection ...", "gramastar", "Clipart by Nicu Buculei - <some other file>") -> the drawing's
    own file name names it instead ("cdrom unmount", "bus lane");
  * e-mail addresses, URLs, Perl `HASH(0x...)` leftovers, licence words, file names with an
    extension, author names in keywords, generic keywords (hash, theme, icons, unsorted, ...);
  * descriptions are cut to their first sentence and dropped when long, generic or a repeat.
Then one of a few templates is picked by a hash of the drawing's id ("eagle", "a drawing of
eagle", "eagle, bird, wildlife", "Construction Hammer: metal head hammer with rubber handle",
...). With no usable title, file name, description or keyword the category folder names it;
with not even that (folders like unsorted/) the drawing is skipped and counted.
"""
from __future__ import annotations

import html
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from .common import MissingDataError, Skip, stable_hash

DEFAULT_ROOT = "/usr/share/openclipart"
PACKAGES = {"png": "openclipart-png", "svg": "openclipart-svg"}

NS = {"dc": "http://purl.org/dc/elements/1.1/", "cc": "http://web.resource.org/cc/",
      "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#"}
CC_NAMESPACES = ("http://web.resource.org/cc/", "http://creativecommons.org/ns#")


@dataclass
class ClipMeta:
    title: str | None = None
    description: str | None = None
    keywords: list[str] = field(default_factory=list)
    creator: str | None = None


def _text(el) -> str | None:
    if el is None:
        return None
    t = "".join(el.itertext()).strip()
    return t or None


def parse_svg_metadata(source) -> ClipMeta:
    """The first cc:Work's title, description, dc:subject keywords and creator (path or bytes).
    Raises ET.ParseError/OSError on an unreadable file."""
    if isinstance(source, (bytes, bytearray)):
        root = ET.fromstring(source)
    else:
        root = ET.parse(source).getroot()
    work = None
    for ns in CC_NAMESPACES:
        work = root.find(f".//{{{ns}}}Work")
        if work is not None:
            break
    if work is None:
        return ClipMeta()
    dc = NS["dc"]
    meta = ClipMeta(title=_text(work.find(f"{{{dc}}}title")),
                    description=_text(work.find(f"{{{dc}}}description")))
    subject = work.find(f"{{{dc}}}subject")
    if subject is not None:
        lis = subject.findall(f".//{{{NS['rdf']}}}li")
        if lis:
            meta.keywords = [t for t in (_text(li) for li in lis) if t]
        elif _text(subject):  # a plain comma/space separated subject
            meta.keywords = [k for k in re.split(r"[,;]\s*", _text(subject)) if k.strip()]
    creator = work.find(f"{{{dc}}}creator")
    if creator is not None:
        meta.creator = _text(creator.find(f".//{{{dc}}}title")) or _text(creator)
    return meta


# ---------------------------------------------------------------- cleaning

def _unescape(s: str) -> str:
    for _ in range(3):  # the library double-escapes: "&amp;quot;"
        t = html.unescape(s)
        if t == s:
            break
        s = t
    return s


def _squash(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip(" \t\n-_,;:")


def _letters(s: str) -> str:
    return re.sub(r"[^a-z]", "", s.lower())


JUNK_TEXT = re.compile(
    r"@|https?://|www\.|\.(?:org|com|net|de|it|fr)\b|hash\(0x|^0x[0-9a-f]+$|\bpublic ?domain\b|"
    r"\blicen[cs]e\b|\bcopyright\b|\bopen ?clip ?art\b|\bopenclipart\b|\beps converted\b|"
    r"^(?:unnamed|untitled|no title|new document|new drawing|drawing|image|layer|svg|clipart|none|"
    r"null|test|example|icon)\s*\d*$|\.(?:svg|png|jpe?g|gif|py|txt|eps|ai)$", re.I)
# Titles naming a whole collection or icon theme rather than the drawing.
COLLECTION_TEXT = re.compile(
    r"\bcollection\b|\bclip ?arts?\b|\btheme\b|\bicon ?set\b|\biconset\b|\bicons\b|\bwebicons\b|"
    r"\bs[iu]bmission\b|^r1\d\b|^clipart by nicu buculei\b|^gramastar$|^aiga.symbol.signs$|"
    r"^advertising$|^sallite$", re.I)
# Collection titles that still say what the drawings are: joined to the file name's words
# ("simple" + "card" -> "simple card"), or alone when the file name says nothing ("sm_009").
DESCRIPTIVE_COLLECTIONS = {"card": "card", "stick man": "stick man", "svg road signs": "road sign",
                           "road signs": "road sign", "australian maps": "australian map",
                           "map symbols": "map symbol", "simple arrows": "arrow"}

JUNK_KEYWORDS = {
    "hash", "theme", "themes", "magick", "lemon_theme_icon", "lemon theme icon", "mapsym", "unsorted",
    "special", "miscellany", "misc", "application", "applications", "action", "actions", "mimetypes",
    "mime-types", "mime types", "appicon", "united_nations_member", "united nations member",
    "clip art", "clipart", "openclipart", "svg", "vector", "vectorized", "vectorised", "inkscape",
    "public domain", "publicdomain", "stock", "icons", "menu", "examples", "example", "networksym",
    "musicsym", "weathersym", "roadtravel", "musicstuff", "creation", "activities", "symbols",
    "subnational", "and", "of", "the", "a", "an", "with", "in", "on", "for", "to",
}
JUNK_STEM_TOKENS = {"aiga", "gnome", "fs", "bb", "mime", "svg", "png", "img", "image", "clipart",
                    "openclipart", "icon", "untitled", "drawing", "new", "copy", "final", "version",
                    "file", "layer", "ksim", "kde", "gtk", "stock", "fldr", "the", "and", "of"}
GENERIC_CATEGORIES = {"unsorted", "special", "misc", "miscellaneous", "other", "others", "examples",
                      "example", "various", "new", "old", "icons", "theme", "themes", "png", "svg"}


def _humanize(s: str) -> str:
    """'Hot_Dog' -> 'Hot Dog', '01_nomoon_openclipart' -> 'nomoon', 'arrow-up-green' -> 'arrow up green'."""
    if " " not in s.strip() and re.search(r"[_-]", s):
        parts = [p for p in re.split(r"[_-]+", s) if p and not p.isdigit() and p.lower() != "openclipart"]
        s = " ".join(parts)
    else:
        s = s.replace("_", " ")
    return _squash(s)


def clean_title(title: str | None) -> tuple[str | None, str]:
    """(cleaned title, kind): kind 'ok', 'collection' (names a set, not this drawing; the
    cleaned text is a descriptive set name or None), 'junk' or 'empty'."""
    if not title or not title.strip():
        return None, "empty"
    t = _squash(_unescape(title))
    if JUNK_TEXT.search(t) or not re.search(r"[^\W\d_]{2}", t):
        return None, "junk"
    t = re.sub(r"\s*\bin svg format\b", "", t, flags=re.I)
    m = re.match(r"^clip ?art by (?!nicu buculei)[^-]+? - (.+)$", t, re.I)  # "Clipart by Steve Hall - Texas"
    if m:
        t = m.group(1)
    if COLLECTION_TEXT.search(t):
        return None, "collection"
    if t.lower() in DESCRIPTIVE_COLLECTIONS:
        return DESCRIPTIVE_COLLECTIONS[t.lower()], "collection"
    t = re.sub(r"^svg\s+", "", t, flags=re.I)
    t = _humanize(t)
    if not re.search(r"[^\W\d_]{2}", t):
        return None, "junk"
    return t, "ok"


def _creator_key(creator: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (creator or "").lower()).strip("_")


def name_from_stem(stem: str, creator: str | None = None, junk_title: str | None = None) -> str | None:
    """A name out of a file name: 'chemistry_flask_matthew__02' (creator Matthew Wardrop) ->
    'chemistry flask'; 'aiga_elevator1' -> 'elevator'; 'gnome-fs-trash-empty' -> 'trash empty';
    '70a016' -> None. None as well when the file name was made from a junk title."""
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", stem).lower()  # camelCase -> camel_case
    if junk_title:
        jl = _letters(junk_title)
        if len(jl) >= 4 and _letters(s).startswith(jl[:8]):
            return None
    s = re.sub(r"(?:_+\d+[a-z]?|_r|_+)$", "", s)  # _01, _03c, _r, trailing _
    ck = _creator_key(creator)
    if len(ck) >= 2:
        for k in range(len(ck), 1, -1):  # the library truncates the author: 'architetto_franc'
            frag = ck[:k].rstrip("_")
            if s.endswith("_" + frag) and len(s) > len(frag) + 1:
                s = s[: -len(frag) - 1].rstrip("_")
                break
    words = []
    for tok in re.split(r"[\s_.\-]+", s):
        tok = re.sub(r"[^\w]", "", tok)
        m = re.fullmatch(r"(\d+)pt\d*step", tok)  # gramastar's 'star_79pt30step'
        if m:
            words.insert(0, f"{int(m.group(1))}-pointed")
            continue
        tok = re.sub(r"(?<=[a-z]{3})\d+$", "", tok)  # elevator1 -> elevator
        if (not tok or tok in JUNK_STEM_TOKENS or len(tok) < 2
                or re.search(r"\d", tok) and not re.fullmatch(r"\d[a-z]", tok)):  # 41pt14step, 70a016; keep 3d
            continue
        words.append(tok)
    if not any(re.fullmatch(r"[^\W\d_]{3,}", w) for w in words):
        return None
    return " ".join(words)


def clean_description(desc: str | None, name: str | None = None, max_chars: int = 140) -> str | None:
    """First sentence, without URLs/e-mails/boilerplate; None when long, generic or = the name."""
    if not desc:
        return None
    d = _squash(_unescape(desc))
    if not d or JUNK_TEXT.search(d) or COLLECTION_TEXT.search(d) or re.search(r"\bpart of\b", d, re.I):
        return None
    m = re.match(r"(.+?[.!?])(?:\s|$)", d)
    if m:
        d = m.group(1)
    d = d.rstrip(".").strip()
    if len(d) > max_chars or not re.search(r"[^\W\d_]{3}", d):
        return None
    if name and _letters(d) == _letters(name):
        return None
    return d


def _singular(w: str) -> str:
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def clean_keywords(keywords, creator: str | None = None, name: str | None = None) -> list[str]:
    """Keep real subject words: no junk, no author, no duplicates (also of the name), humanized."""
    out, seen = [], set()
    ck = _creator_key(creator).replace("_", " ")
    name_words = {_singular(w) for w in re.findall(r"[a-z]+", (name or "").lower())}
    for kw in keywords or []:
        if not kw:
            continue
        k = _squash(_unescape(kw).replace("_", " ").replace("/", " ")).lower()
        if not k or JUNK_TEXT.search(k) or k in JUNK_KEYWORDS or (ck and k == ck):
            continue
        parts = k.split() if len(k.split()) >= 3 else [k]
        for p in parts:
            if (p in JUNK_KEYWORDS or len(p) < 2 or len(p) > 20 or p.isdigit()
                    or not re.search(r"[a-z]{2}", p) or re.search(r"\d", p) and len(p) <= 3):
                continue
            key = _singular(p)
            if key in seen or (" " not in p and key in name_words) or _letters(p) == _letters(name or ""):
                continue
            seen.add(key)
            out.append(p)
    return out


def category_name(category_path: str) -> str | None:
    """Deepest non-generic folder of the category path, humanized ('animals/birds' -> 'birds')."""
    for part in reversed([p for p in category_path.split("/") if p]):
        low = part.lower()
        if (low not in GENERIC_CATEGORIES and low not in JUNK_KEYWORDS and not re.search(r"\d", low)
                and not re.search(r"theme$", low) and re.search(r"[a-z]{3}", low)):
            return _humanize(part).lower()
    return None


def _words(s: str | None) -> set[str]:
    return {_singular(w) for w in re.findall(r"[a-z]+", (s or "").lower())}


TEMPLATES = (  # (needs, format)
    ((), "{name}"),
    (("desc",), "{name}: {desc}"),
    ((), "a drawing of {name}"),
    (("kws",), "{name}, {kws}"),
    ((), "clipart of {name}"),
    (("desc",), "{desc}"),
    (("kws",), "an illustration of {name}, {kws}"),
    (("cat",), "{cat} clipart: {name}"),
)


def make_caption(item_id: str, meta: ClipMeta, stem: str, category_path: str) -> tuple[str, dict]:
    """(caption, info) for one drawing, deterministic in its inputs; Skip('no_usable_text')."""
    title, kind = clean_title(meta.title)
    if title and meta.creator and _letters(title) == _letters(meta.creator):
        title, kind = None, "junk"  # the author's name put in the title field
    junk_title = meta.title if kind in ("junk", "collection") else None
    source = "title"
    name = title if kind == "ok" else None
    if name is None:
        stem_name = name_from_stem(stem, meta.creator, junk_title if kind == "junk" else None)
        if stem_name:
            name, source = stem_name, "file_name"
            if title and not _words(title) <= _words(stem_name):  # "simple" + "card" -> "simple card"
                name = f"{stem_name} {title}"
        elif title:
            name, source = title, "collection_title"
    desc = clean_description(meta.description, name)
    kws = clean_keywords(meta.keywords, meta.creator, name)
    cat = category_name(category_path)
    if name is None and desc:
        name, desc, source = desc, None, "description"
    if name is None and kws:
        name, kws, source = ", ".join(kws[:3]), kws[3:], "keywords"
    if name is None and cat:
        name, source = cat, "category"
    if name is None:
        raise Skip("no_usable_text")
    if cat and _words(cat) <= _words(name):
        cat = None  # "herringbone pattern" needs no "patterns clipart:"
    h = stable_hash("caption:" + item_id)
    if kws:  # a stable per-drawing choice and order of at most three keywords
        order = sorted(range(len(kws)), key=lambda i: stable_hash(f"kw:{item_id}:{i}"))
        kws = [kws[i] for i in order[: 1 + (h >> 8) % 3]]
    have = {"desc": bool(desc), "kws": bool(kws), "cat": bool(cat) and source != "category"}
    usable = [(i, fmt) for i, (needs, fmt) in enumerate(TEMPLATES) if all(have[n] for n in needs)]
    t_index, fmt = usable[h % len(usable)]
    caption = _squash(fmt.format(name=name, desc=desc or "", kws=", ".join(kws), cat=cat or ""))
    return caption, {"name": name, "name_source": source, "template": t_index,
                     "description": desc, "keywords": kws}


# ---------------------------------------------------------------- files

def check_install(root: Path) -> tuple[Path, Path]:
    png, svg = root / "png", root / "svg"
    missing = [PACKAGES[k] for k, d in (("png", png), ("svg", svg)) if not d.is_dir()]
    if missing:
        raise_missing(root, missing)
    if not any(png.rglob("*.png")):
        raise_missing(root, [PACKAGES["png"]])
    return png, svg


def raise_missing(root: Path, packages: list[str]):
    pk = " ".join(packages)
    raise MissingDataError(
        f"openclipart files not found under {root} (need png/ and svg/): install the Debian "
        f"package{'s' if len(packages) > 1 else ''} {pk} (sudo apt-get install {pk}) or pass --root")


@dataclass
class Item:
    item_id: str          # relative path without .png: 'animals/birds/eagle_01'
    png: str
    svg: str
    category_path: str
    also_in: list[str]


def list_items(root: Path) -> tuple[list[Item], dict[str, int], dict[str, list[str]]]:
    """Drawings sorted by id, symlinked duplicates folded; plus skip counts and examples."""
    png_root, svg_root = check_install(root)
    entries = []
    for dirpath, dirnames, filenames in os.walk(png_root, followlinks=False):
        dirnames.sort()
        for f in sorted(filenames):
            if f.lower().endswith(".png"):
                entries.append(os.path.join(dirpath, f))
    skipped: dict[str, int] = {}
    examples: dict[str, list[str]] = {}

    def skip(reason, rel):
        skipped[reason] = skipped.get(reason, 0) + 1
        examples.setdefault(reason, [])
        if len(examples[reason]) < 5:
            examples[reason].append(rel)

    groups: dict[str, list[str]] = {}
    for p in entries:
        rel = os.path.relpath(p, png_root)
        real = os.path.realpath(p)
        if not os.path.isfile(real):
            skip("broken_link", rel)
            continue
        groups.setdefault(real, []).append(p)
    items = []
    for real, paths in groups.items():
        real_rel = os.path.relpath(real, png_root)
        rels = [os.path.relpath(p, png_root) for p in paths]
        canon = real_rel if real_rel in rels else sorted(rels)[0]
        for r in rels:
            if r != canon:
                skip("duplicate_link", r)
        cat_of = lambda r: os.path.dirname(r).replace(os.sep, "/")
        item_id = os.path.splitext(canon)[0].replace(os.sep, "/")
        svg = os.path.join(svg_root, os.path.splitext(canon)[0] + ".svg")
        items.append(Item(item_id, os.path.join(png_root, canon), svg, cat_of(canon),
                          sorted({cat_of(r) for r in rels if r != canon} - {cat_of(canon)})))
    items.sort(key=lambda it: it.item_id)
    return items, skipped, examples


def process(item: Item, image_size: int, max_pixels: int) -> dict:
    """Worker: one drawing -> {'png','caption','meta'} or {'skip': reason}. No exception escapes."""
    from PIL import Image

    from .common import png_bytes, shrink_to_rgb
    stem = os.path.basename(item.item_id)
    try:
        meta = parse_svg_metadata(item.svg) if os.path.isfile(item.svg) else None
        svg_state = "ok" if meta is not None else "missing"
    except (ET.ParseError, OSError, ValueError):
        meta, svg_state = None, "unreadable"
    try:
        caption, info = make_caption(item.item_id, meta or ClipMeta(), stem, item.category_path)
    except Skip as s:
        return {"skip": s.args[0]}
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit below; a few library PNGs are 20000x30000
    try:
        with Image.open(item.png) as im:
            w, h = im.size
            if w * h > max_pixels:
                return {"skip": "image_too_large"}
            if min(w, h) < 8:
                return {"skip": "image_too_small"}
            im.load()
            rgb = shrink_to_rgb(im, image_size)
    except Exception:  # noqa: BLE001 - any decoder failure is an unreadable image
        return {"skip": "image_unreadable"}
    finally:
        Image.MAX_IMAGE_PIXELS = old
    if min(rgb.size) < 4:
        return {"skip": "image_too_small"}
    m = meta or ClipMeta()
    record = {
        "id": item.item_id, "source": item.png, "svg": item.svg if svg_state != "missing" else None,
        "svg_metadata": svg_state, "category": item.category_path.split("/")[0] if item.category_path else None,
        "category_path": item.category_path, "also_in": item.also_in,
        "title": m.title, "description": m.description, "keywords": m.keywords, "creator": m.creator,
        "caption": caption, "name": info["name"], "name_source": info["name_source"],
        "template": info["template"], "width": rgb.size[0], "height": rgb.size[1],
        "original_width": w, "original_height": h,
    }
    return {"png": png_bytes(rgb), "caption": caption, "meta": record}
