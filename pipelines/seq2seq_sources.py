"""Sequence-to-sequence text pairs: the readers for the files people have and the generated defaults.

Pure Python (no TensorFlow): readers return `Pairs` whose every example remembers where it came
from, so a bad line is reported as `FILE line N: what is wrong`. The generators are deterministic
functions of (seed, split).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import DataError
from pipelines.files import read_jsonl


@dataclass
class Pairs:
    """Source and target texts, aligned, and where each pair came from (for error messages)."""

    sources: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    where: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sources)

    def add(self, source: str, target: str, where: str) -> None:
        source, target = source.strip(), target.strip()
        if not source:
            raise DataError(f"{where}: empty source text")
        if not target:
            raise DataError(f"{where}: empty target text")
        self.sources.append(source)
        self.targets.append(target)
        self.where.append(where)

    def subset(self, index) -> "Pairs":
        return Pairs([self.sources[i] for i in index], [self.targets[i] for i in index],
                     [self.where[i] for i in index])

    def swapped(self) -> "Pairs":
        return Pairs(self.targets, self.sources, self.where)


# --- readers -------------------------------------------------------------------------------------


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{name} line {line}: not UTF-8 text (byte {exc.start})") from None


def read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.__class__.__name__})") from None


def _zip_member(path: Path) -> tuple[str, bytes]:
    """The one text file inside a zip (Anki zips also hold `_about.txt`, skipped)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/") and not Path(n).name.startswith(("_", "."))
                     and Path(n).suffix.lower() in (".txt", ".tsv", ".csv")]
            if len(names) != 1:
                raise DataError(f"{path}: expected one .txt/.tsv file inside the zip (besides _about.txt), "
                                f"found {names or 'none'}")
            return names[0], zf.read(names[0])
    except zipfile.BadZipFile:
        raise DataError(f"{path}: not a readable zip file") from None


def read_delimited_pairs(path: Path) -> Pairs:
    """`source<TAB>target[<TAB>anything]` lines (Anki format; a .csv file is comma-separated), straight
    from a .zip too."""
    path = Path(path)
    if path.suffix.lower() == ".zip":
        member, raw = _zip_member(path)
        name, suffix = f"{path}:{member}", Path(member).suffix.lower()
    else:
        name, raw, suffix = str(path), read_bytes(path), path.suffix.lower()
    text = _decode(raw, name)
    delimiter = "," if suffix == ".csv" else "\t"
    pairs = Pairs()
    rows = csv.reader(io.StringIO(text), delimiter=delimiter,
                      quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
    for n, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip():
            continue  # blank lines are allowed
        if len(row) < 2:
            raise DataError(f"{name} line {n}: expected 'source{'<TAB>' if delimiter == chr(9) else ','}target', "
                            f"found no {'tab' if delimiter == chr(9) else 'comma'}")
        pairs.add(row[0], row[1], f"{name} line {n}")
    if not len(pairs):
        raise DataError(f"{name}: no pairs (expected one 'source<TAB>target' a line)")
    return pairs


def _lines(path: Path) -> list[str]:
    return _decode(read_bytes(path), str(path)).rstrip("\n").split("\n")


def read_aligned(source_path: Path, target_path: Path) -> Pairs:
    """Two plain-text files, line N of one translating line N of the other."""
    src, tgt = _lines(source_path), _lines(target_path)
    if len(src) != len(tgt):
        raise DataError(f"{target_path}: {len(tgt)} lines, but {source_path} has {len(src)} (expected aligned files "
                        "with one sentence a line)")
    pairs = Pairs()
    for n, (s, t) in enumerate(zip(src, tgt), start=1):
        if not s.strip():
            raise DataError(f"{source_path} line {n}: empty source text")
        pairs.add(s, t, f"{target_path} line {n}")
    return pairs


def read_jsonl_pairs(path: Path, source_field: str, target_field: str) -> Pairs:
    pairs = Pairs()
    for n, obj in read_jsonl(path, _decode(read_bytes(path), str(path))):
        for key, flag in ((source_field, "source_field"), (target_field, "target_field")):
            if not isinstance(obj.get(key), str):
                raise DataError(f"{path} line {n}: no text field {key!r} (fields: {', '.join(obj)}); choose one with "
                                f"--set {flag}=NAME")
        pairs.add(obj[source_field], obj[target_field], f"{path} line {n}")
    return pairs


def _text_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*.txt")) if p.is_file()}


def read_parallel_trees(source_root: Path, target_root: Path) -> Pairs:
    """Two trees of .txt files matched by relative path (`News Articles/x/001.txt` <-> `Summaries/x/001.txt`)."""
    sources, targets = _text_files(source_root), _text_files(target_root)
    if not sources:
        raise DataError(f"{source_root}: no .txt files")
    pairs = Pairs()
    for rel, path in sources.items():
        if rel not in targets:
            raise DataError(f"{path}: no matching {target_root / rel} (expected one target file per source file)")
        text = lambda p: " ".join(line.strip() for line in _lines(p) if line.strip())  # noqa: E731
        pairs.add(text(path), text(targets[rel]), str(path))
    return pairs


# --- the generated language pair -------------------------------------------------------------------
# English -> an invented language with: subject-object-verb order, adjectives after the noun, gender
# and number agreement on article and adjective, person/number/tense endings on the verb with the
# subject pronoun dropped, prepositions turned into postpositions, and numbers written as digits.

_NOUNS = ("dog cat bird horse farmer teacher doctor child king queen friend baker sailor soldier student "
          "car house book letter apple river garden table window boat city village song door road tree "
          "flower cake ship bridge key shirt bottle chair lamp").split()
_ADJECTIVES = "big small red green old young happy tired quiet strong blue black white new".split()
_VERBS = [("see", "sees", "saw"), ("like", "likes", "liked"), ("paint", "paints", "painted"),
          ("find", "finds", "found"), ("carry", "carries", "carried"), ("buy", "buys", "bought"),
          ("sell", "sells", "sold"), ("clean", "cleans", "cleaned"), ("visit", "visits", "visited"),
          ("follow", "follows", "followed"), ("draw", "draws", "drew"), ("watch", "watches", "watched"),
          ("open", "opens", "opened"), ("want", "wants", "wanted"), ("help", "helps", "helped"),
          ("hide", "hides", "hid")]
_PREPOSITIONS = "in near behind under beside with".split()
_PRONOUNS = {"i": (1, "sg"), "you": (2, "sg"), "he": (3, "sg"), "she": (3, "sg"), "we": (1, "pl"),
             "they": (3, "pl")}
_UNITS = "one two three four five six seven eight nine".split()
_TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_ENDINGS = {("present", 1, "sg"): "o", ("present", 2, "sg"): "es", ("present", 3, "sg"): "e",
            ("present", 1, "pl"): "emos", ("present", 3, "pl"): "en",
            ("past", 1, "sg"): "ai", ("past", 2, "sg"): "aste", ("past", 3, "sg"): "ou",
            ("past", 1, "pl"): "amos", ("past", 3, "pl"): "aron"}


def _invented_stems(words, salt: int) -> dict:
    """A fixed invented stem per English word (the same language for every --seed)."""
    rng = np.random.default_rng(1234 + salt)
    onsets, vowels = "b d f g k l m n p r s t v z br tr pl gr".split(), "a e i o u".split()
    stems, used = {}, set()
    for w in words:
        while True:
            stem = "".join(onsets[rng.integers(len(onsets))] + vowels[rng.integers(5)] for _ in range(2))
            stem += "lmnrst"[rng.integers(6)]
            if stem not in used:
                break
        used.add(stem)
        stems[w] = stem
    return stems


_NOUN_STEMS = _invented_stems(_NOUNS, 0)
_GENDER = {w: "mf"[i % 2] for i, w in enumerate(_NOUNS)}
_ADJ_STEMS = _invented_stems(_ADJECTIVES, 1)
_VERB_STEMS = _invented_stems([v[0] for v in _VERBS], 2)
_POSTPOSITIONS = dict(zip(_PREPOSITIONS, ("ka", "pe", "du", "so", "ve", "kon")))


def number_words(k: int) -> str:
    """1..99 in English words ('twenty three')."""
    if k < 10:
        return _UNITS[k - 1]
    if k < 20:
        return _TEENS[k - 10]
    tens, unit = divmod(k, 10)
    return _TENS[tens - 2] + (f" {_UNITS[unit - 1]}" if unit else "")


def _plural(noun: str) -> str:
    if noun == "child":
        return "children"
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _noun_phrase(rng) -> tuple[str, str, str]:
    """(English, target, number) of a noun phrase: article or count, 0-2 adjectives, a noun."""
    noun = _NOUNS[rng.integers(len(_NOUNS))]
    adjs = list(rng.choice(_ADJECTIVES, size=int(rng.choice([0, 0, 0, 1, 1, 2])), replace=False))
    gender = _GENDER[noun]
    kind = rng.choice(["the", "a", "count", "the_count"], p=[0.4, 0.25, 0.2, 0.15])
    count = int(rng.integers(2, 100)) if "count" in kind else 1
    number = "pl" if count > 1 else "sg"
    ending = {"msg": "o", "fsg": "a", "mpl": "os", "fpl": "as"}[gender + number]
    en_noun = _plural(noun) if number == "pl" else noun
    en = {"the": "the", "a": "an" if (adjs or [noun])[0][0] in "aeiou" else "a",
          "count": number_words(count), "the_count": f"the {number_words(count)}"}[kind]
    article = {"the": {"msg": "lo", "fsg": "la", "mpl": "los", "fpl": "las"}[gender + number],
               "a": "un" if gender == "m" else "una", "count": "", "the_count": ""}[kind]
    digits = str(count) if "count" in kind else ""
    if kind == "the_count":
        article = "los" if gender == "m" else "las"
    target = " ".join(w for w in [article, digits, _NOUN_STEMS[noun] + ending,
                                  *(_ADJ_STEMS[a] + ending for a in adjs)] if w)
    return " ".join([en, *adjs, en_noun]), target, number


def _clause(rng, single: bool = True) -> tuple[str, str]:
    """One clause: subject (pronoun or noun phrase), optional negation, verb, object, 0-2 places."""
    tense = "past" if rng.random() < 0.4 else "present"
    negate = rng.random() < 0.25
    if rng.random() < 0.4:
        pronoun = list(_PRONOUNS)[rng.integers(len(_PRONOUNS))]
        person, number = _PRONOUNS[pronoun]
        en_subj, tg_subj = pronoun, ""  # the target drops subject pronouns: the verb ending says who
    else:
        en_subj, tg_subj, number = _noun_phrase(rng)
        person = 3
    base, third, past = _VERBS[rng.integers(len(_VERBS))]
    if negate:
        aux = "did" if tense == "past" else ("does" if (person, number) == (3, "sg") else "do")
        en_verb = f"{aux} not {base}"
    elif tense == "past":
        en_verb = past
    else:
        en_verb = third if (person, number) == (3, "sg") else base
    tg_verb = ("ne " if negate else "") + _VERB_STEMS[base] + _ENDINGS[(tense, person, number)]
    en_obj, tg_obj, _ = _noun_phrase(rng)
    places_en, places_tg = [], []
    for _ in range(int(rng.choice([0, 0, 1, 1, 2]) if single else rng.choice([0, 0, 1]))):
        prep = _PREPOSITIONS[rng.integers(len(_PREPOSITIONS))]
        en_np, tg_np, _ = _noun_phrase(rng)
        places_en.append(f"{prep} {en_np}")
        places_tg.append(f"{tg_np} {_POSTPOSITIONS[prep]}")
    english = " ".join(w for w in [en_subj, en_verb, en_obj, *places_en] if w)
    target = " ".join(w for w in [*places_tg, tg_subj, tg_obj, tg_verb] if w)  # places first, verb last
    return english, target


SPLIT_STREAMS = {"train": 0, "validation": 1, "test": 2}


def generated_translation(n: int, seed: int, split: str) -> Pairs:
    """n English -> invented-language pairs; one clause, or two joined by 'and' (-> 'i')."""
    rng = np.random.default_rng([seed, 15, SPLIT_STREAMS[split]])
    pairs = Pairs()
    for i in range(n):
        double = rng.random() < 0.15
        en, tg = _clause(rng, not double)
        if double:
            en2, tg2 = _clause(rng, False)
            en, tg = f"{en} and {en2}", f"{tg} i {tg2}"
        pairs.add(en + " .", tg + " .", f"generated {split} pair {i}")
    return pairs


# --- generated news: a paragraph of facts and distractors -> a one-sentence summary ----------------

_CITIES = ("riverton lakeside millbrook ashford kingsport elmwood harborview stonebridge fairview oakdale "
           "westfield brookhaven redcliff pinecrest greenvale").split()
_ROLES = ("mayor", "governor", "police chief", "school board", "city council", "fire department", "museum",
          "hospital", "local bank", "football club")
_EVENTS = [("opened", "opens", "a new bridge"), ("closed", "closes", "the old factory"),
           ("bought", "buys", "a historic hotel"), ("announced", "announces", "a summer festival"),
           ("sold", "sells", "the city stadium"), ("rebuilt", "rebuilds", "the central library"),
           ("cancelled", "cancels", "the winter parade"), ("launched", "launches", "a free bus service"),
           ("approved", "approves", "a new park"), ("delayed", "delays", "the harbor project")]
_DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_DISTRACTORS = ("the weather in {city2} was cold and windy .", "many people watched the news on television .",
                "a {role2} spokesperson declined to comment on other matters .",
                "traffic was heavy on the main road for most of the day .",
                "local shops reported a busy week before the holidays .",
                "the {role2} of {city2} held a meeting about taxes last month .",
                "residents said they were looking forward to the weekend .",
                "experts say prices have risen slowly over the past year .",
                "a small fire in {city2} was quickly put out on {day2} .",
                "schools in the region will reopen after the break .")


def _news_item(rng) -> tuple[str, str]:
    city, city2 = rng.choice(_CITIES, size=2, replace=False)
    role, role2 = rng.choice(_ROLES, size=2, replace=False)
    past, present, obj = _EVENTS[rng.integers(len(_EVENTS))]
    day, day2 = rng.choice(_DAYS, size=2, replace=False)
    cost = int(rng.integers(2, 100))
    key = [f"on {day} , the {role} of {city} {past} {obj} .",
           f"the project cost {cost} million dollars , officials said ."]
    fill = dict(city2=city2, role2=role2, day2=day2)
    distractors = [d.format(**fill) for d in rng.choice(_DISTRACTORS, size=int(rng.integers(2, 5)), replace=False)]
    at = int(rng.integers(0, len(distractors)))  # the key sentences are not always first
    sentences = distractors[:at] + key + distractors[at:]
    summary = f"{city} {role} {present} {obj} for {cost} million dollars"
    return " ".join(sentences), summary


def generated_news(n: int, seed: int, split: str) -> Pairs:
    """n generated news paragraphs (2 key sentences among 2-4 distractors) and their one-line summaries."""
    rng = np.random.default_rng([seed, 16, SPLIT_STREAMS[split]])
    pairs = Pairs()
    for i in range(n):
        article, summary = _news_item(rng)
        pairs.add(article, summary, f"generated {split} article {i}")
    return pairs


# --- text clean-up for metrics ---------------------------------------------------------------------


def detokenize_words(text: str) -> str:
    """WordPiece output ('hello , world ' s') as text ('hello, world's') for BLEU/ROUGE on detokenized text."""
    text = re.sub(r"\s+([.,!?;:%)\]}])", r"\1", text)
    text = re.sub(r"([(\[{¿¡$])\s+", r"\1", text)
    text = re.sub(r"\s*'\s*", "'", text)
    return text.strip()


def first_sentence(text: str) -> str:
    """The lead baseline's summary: the text up to its first sentence end (or line break)."""
    parts = re.split(r"(?<=[.!?])\s+|\n", text.strip(), maxsplit=1)
    return parts[0].strip()
