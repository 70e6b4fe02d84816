"""Translation: English-like sentences into a made-up German-like language (``translation_lexicon``)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain

from transformer.data.samples.common import Example, _pairs, _sentence_case

# English nouns by class, "man/men" spelling an irregular plural. Subjects are people, animals or names, and each
# verb lists the classes of its objects, so that sentences stay plausible.
_ENGLISH_NOUNS = {
    "p": """man/men woman/women child/children teacher doctor farmer student baker driver singer painter soldier
    king queen girl boy friend neighbor nurse chef judge pilot guest brother sister mother father""",
    "a": """dog cat horse bird cow pig mouse/mice fox/foxes wolf/wolves bear duck goat rabbit frog lion owl
    snake""",
    "f": """apple cake egg soup cookie pear sausage onion carrot pie sandwich/sandwiches potato/potatoes lemon
    cherry/cherries""",
    "t": """book letter newspaper map car key box/boxes ball hat chair table cup bottle lamp clock bag coat shoe
    boat bicycle picture ring knife/knives window door basket gift""",
    "l": """house garden park river forest city/cities village kitchen school market station bridge street church
    field castle shop hill lake harbor tower barn library/libraries""",
}
# base/third person singular/participle, then the classes of the objects.
_TRANSITIVE_VERBS_EN = """see/sees/seen:paftl watch/watches/watched:pal find/finds/found:paft like/likes/liked:paftl
love/loves/loved:pal eat/eats/eaten:f cook/cooks/cooked:f buy/buys/bought:ft sell/sells/sold:ft
carry/carries/carried:aft hold/holds/held:aft bring/brings/brought:aft take/takes/taken:aft hide/hides/hidden:aft
wash/washes/washed:at paint/paints/painted:tl draw/draws/drawn:patl open/opens/opened:t build/builds/built:tl
visit/visits/visited:pl help/helps/helped:pa call/calls/called:pa follow/follows/followed:pa feed/feeds/fed:pa
meet/meets/met:p chase/chases/chased:pa catch/catches/caught:aft teach/teaches/taught:p hear/hears/heard:pa
need/needs/needed:paft clean/cleans/cleaned:tl forget/forgets/forgotten:paft miss/misses/missed:pl
greet/greets/greeted:p fix/fixes/fixed:t"""
_INTRANSITIVE_VERBS_EN = """sleep/sleeps/slept laugh/laughs/laughed sing/sings/sung swim/swims/swum wait/waits/waited
work/works/worked dance/dances/danced cry/cries/cried smile/smiles/smiled play/plays/played walk/walks/walked
rest/rests/rested"""
_SAYING_VERBS_EN = "say/says/said think/thinks/thought know/knows/known believe/believes/believed hope/hopes/hoped"
_VERB_FRAMES = {"transitive": _TRANSITIVE_VERBS_EN, "intransitive": _INTRANSITIVE_VERBS_EN, "saying": _SAYING_VERBS_EN}
_ADJECTIVES_EN = """big small old young red green blue black white tall happy sad hungry tired clever quiet loud new
heavy warm cold brown yellow strong slow fast friendly angry brave lazy rich poor pretty dirty empty full round
wooden famous strange gentle wild dark bright sweet fresh golden""".split()
_NAMES = "Anna Ben Clara David Emma Felix Greta Hugo Ida Jonas Karl Lena Max Nora Otto Paula".split()

# Hand-made function words of the target language.
_NUMBERS = _pairs(
    "two:zwo three:drai four:fier five:fonf six:sekz seven:siben eight:akt nine:noin ten:zehn eleven:elf twelve:zwolf"
)
_PREPOSITIONS = _pairs("in:inn on:opp under:unner near:naben behind:hinner at:bai from:fonn")
_ADVERBS = _pairs(
    "today:hoite now:nu often:ofte sometimes:mankmol usually:meist later:spater soon:balde tonight:hoinakt"
)
_CONJUNCTIONS = _pairs("because:wail although:obwul when:wann if:ob")
_THAT, _NOT, _YEAR = "dess", "nikt", "im jaar"
_AUXILIARIES = _pairs("has:hett have:hetten can:kann must:mott will:wirt")
_TENSES = ("present", "perfect", "can", "must", "will")
_TENSE_WEIGHTS = (0.45, 0.3, 0.1, 0.07, 0.08)

# Articles and adjective endings by gender (m, f, n) or plural, and by case: nominative (subject), accusative
# (object), dative (after a preposition).
_NOM, _ACC, _DAT = 0, 1, 2
_DEFINITE = {
    "m": ("dar", "dan", "dem"),
    "f": ("di", "di", "der"),
    "n": ("dat", "dat", "dem"),
    "pl": ("dei", "dei", "den"),
}
_INDEFINITE = {"m": ("ain", "ainen", "ainem"), "f": ("aine", "aine", "ainer"), "n": ("ain", "ain", "ainem")}
_ENDINGS = {"m": ("e", "en", "em"), "f": ("a", "a", "er"), "n": ("u", "u", "em"), "pl": ("en", "en", "en")}
# A noun's gender follows from its ending, as it often does in German; the rest are masculine.
_GENDER_ENDINGS = ((("e", "ung", "heit", "ff"), "f"), (("chen", "um", "t", "ch", "ck"), "n"))

_ONSETS = "b d f g h k l m n p r s t w z br dr fl fr gl gr kl kn kr pl schl schm schn schw sp st str tr zw".split()
_NUCLEI = "a e i o u a e i o au ei ie ä ö ü".split()
_CODAS = "n r l s t ch ck ng nd rt lt st tz ff mm rn ld nk".split()
_NOUN_SUFFIXES = ("", "", "", "e", "ung", "heit", "el", "er", "ling", "chen", "um")
_ADJECTIVE_SUFFIXES = ("", "", "ig", "lich", "isch", "sam")


@dataclass(frozen=True)
class _Noun:
    singular: str
    plural: str
    target_singular: str
    target_plural: str
    gender: str


@dataclass(frozen=True)
class _Verb:
    base: str
    third: str  # third person singular present
    participle: str
    objects: str  # classes of its objects; empty for intransitive verbs
    target_infinitive: str  # also the plural present
    target_third: str
    target_participle: str


@dataclass(frozen=True)
class _Phrase:
    """A noun phrase: a name, or a determiner ("the", "a", a number or none), adjectives and a noun."""

    head: _Noun | str  # a str is a name
    determiner: str = ""
    plural: bool = False
    adjectives: tuple[str, ...] = ()

    def english(self) -> str:
        if isinstance(self.head, str):
            return self.head
        words = [*self.adjectives, self.head.plural if self.plural else self.head.singular]
        if self.determiner == "a":
            words.insert(0, "an" if words[0][0] in "aeiou" else "a")
        elif self.determiner:
            words.insert(0, self.determiner)
        return " ".join(words)

    def target(self, case: int) -> str:
        if isinstance(self.head, str):
            return self.head
        gender = "pl" if self.plural else self.head.gender
        words = []
        if self.determiner == "the":
            words.append(_DEFINITE[gender][case])
        elif self.determiner == "a":
            words.append(_INDEFINITE[gender][case])
        elif self.determiner:
            words.append(_NUMBERS[self.determiner])
        words.append(self.head.target_plural if self.plural else self.head.target_singular)
        # Adjectives follow the noun in mirror order and agree with it in gender, number and case.
        words += [_ADJECTIVE_STEMS[adjective] + _ENDINGS[gender][case] for adjective in self.adjectives[::-1]]
        return " ".join(words)


@dataclass(frozen=True)
class _Clause:
    subject: _Phrase
    verb: _Verb
    tense: str  # one of _TENSES; the modals are spelled as in English
    negated: bool
    obj: _Phrase | None = None
    place: tuple[str, _Phrase] | None = None  # a preposition and its phrase
    complement: _Clause | None = None  # the "that" clause of a verb of saying

    def english(self) -> str:
        words = [self.subject.english(), self._english_verbs()]
        if self.obj:
            words.append(self.obj.english())
        if self.place:
            words += [self.place[0], self.place[1].english()]
        if self.complement:
            words += ["that", self.complement.english()]
        return " ".join(words)

    def target(self, *, subordinate: bool = False, front: str = "", adverb: str = "") -> str:
        """Main clauses put the finite verb second, after ``front`` when one is given; subordinate clauses put
        it last. Objects, places, negation and the non-finite verb keep their order in between."""
        finite, nonfinite = self._target_verbs()
        middle = [
            adverb,
            self.obj.target(_ACC) if self.obj else "",
            f"{_PREPOSITIONS[self.place[0]]} {self.place[1].target(_DAT)}" if self.place else "",
            _NOT if self.negated else "",
            nonfinite,
        ]
        subject = self.subject.target(_NOM)
        if subordinate:
            order = [subject, *middle, finite]
        elif front:
            order = [front, finite, subject, *middle]
        else:
            order = [subject, finite, *middle]
        text = " ".join(word for word in order if word)
        if self.complement:
            text += f", {_THAT} {self.complement.target(subordinate=True)}"
        return text

    def _english_verbs(self) -> str:
        plural, verb, tense = self.subject.plural, self.verb, self.tense
        if tense == "present":
            if self.negated:
                return f"{'do' if plural else 'does'} not {verb.base}"
            return verb.base if plural else verb.third
        if tense == "perfect":
            return f"{'have' if plural else 'has'}{' not' if self.negated else ''} {verb.participle}"
        if self.negated:
            tense = "cannot" if tense == "can" else f"{tense} not"
        return f"{tense} {verb.base}"

    def _target_verbs(self) -> tuple[str, str]:
        """The finite verb, and the non-finite one that goes to the end of the clause ("" when none)."""
        plural, verb = self.subject.plural, self.verb
        if self.tense == "present":
            return (verb.target_infinitive if plural else verb.target_third), ""
        if self.tense == "perfect":
            return _AUXILIARIES["have" if plural else "has"], verb.target_participle
        return _AUXILIARIES[self.tense], verb.target_infinitive


def translation_lexicon() -> dict[str, dict[str, str]]:
    """English word form -> target word form, by part of speech, for reading and checking the sample.

    Nouns map both numbers ("dog", "dogs"). Verbs map the third person singular, the participle and the base
    form, which translates as the infinitive (also the plural present); auxiliaries are verbs too. Adjectives
    map to their stem, which takes an ending for gender, number and case. Articles are left out: they follow
    the noun's gender and the phrase's case, not the English word.
    """
    return {part: dict(words) for part, words in _LEXICON.items()}


def _invent(key: str, used: set[str], build: Callable[[random.Random], tuple[str, ...]]) -> tuple[str, ...]:
    """The forms of a new target word. Each word has its own stream, seeded by its English key, so an entry
    stays the same when the lists around it change; a draw that reuses any taken form is drawn again."""
    for attempt in range(1000):
        forms = build(random.Random(f"lexicon/{key}/{attempt}"))
        if used.isdisjoint(forms):
            used.update(forms)
            return forms
    raise RuntimeError(f"no free target word for {key!r}")


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS)


def _noun_forms(rng: random.Random) -> tuple[str, ...]:
    singular = (_syllable(rng) + rng.choice(_NOUN_SUFFIXES)).capitalize()  # nouns are capitalized, as in German
    gender = _gender(singular)
    if gender == "f":
        plural = singular + ("n" if singular.endswith("e") else "en")
    elif gender == "m":
        plural = singular if singular.endswith(("el", "er")) else singular + "e"
    else:
        plural = singular if singular.endswith("chen") else singular + "er"
    return singular, plural


def _gender(noun: str) -> str:
    return next((gender for endings, gender in _GENDER_ENDINGS if noun.endswith(endings)), "m")


def _verb_forms(rng: random.Random) -> tuple[str, ...]:
    stem = _syllable(rng)
    suffix = "et" if stem.endswith(("t", "d")) else "t"
    return stem + "en", stem + suffix, "ge" + stem + suffix


def _adjective_forms(rng: random.Random) -> tuple[str, ...]:
    # Every inflected form is reserved too, so that no ending turns one word into another.
    stem = _syllable(rng) + rng.choice(_ADJECTIVE_SUFFIXES)
    return stem, *sorted({stem + ending for endings in _ENDINGS.values() for ending in endings})


def _new_noun(entry: str, used: set[str]) -> _Noun:
    singular, _, plural = entry.partition("/")  # "man/men"; a regular plural is left out
    target_singular, target_plural = _invent(f"noun/{singular}", used, _noun_forms)
    return _Noun(singular, plural or singular + "s", target_singular, target_plural, _gender(target_singular))


def _new_verb(entry: str, used: set[str]) -> _Verb:
    forms, _, objects = entry.partition(":")  # "see/sees/seen:paftl"
    base, third, participle = forms.split("/")
    return _Verb(base, third, participle, objects, *_invent(f"verb/{base}", used, _verb_forms))


def _build_vocabulary() -> tuple[dict[str, tuple[_Noun, ...]], dict[str, tuple[_Verb, ...]], dict[str, str]]:
    """Nouns by class, verbs by frame and adjective stems, each with its invented target word.

    Built in a fixed order, so that a collision always resolves the same way."""
    used = {*_NUMBERS.values(), *_PREPOSITIONS.values(), *_ADVERBS.values(), *_CONJUNCTIONS.values()}
    used |= {_THAT, _NOT, *_AUXILIARIES.values(), *_YEAR.split()}
    used |= {article for table in (_DEFINITE, _INDEFINITE) for articles in table.values() for article in articles}
    nouns = {
        kind: tuple(_new_noun(entry, used) for entry in entries.split()) for kind, entries in _ENGLISH_NOUNS.items()
    }
    verbs = {
        frame: tuple(_new_verb(entry, used) for entry in entries.split()) for frame, entries in _VERB_FRAMES.items()
    }
    adjectives = {word: _invent(f"adjective/{word}", used, _adjective_forms)[0] for word in _ADJECTIVES_EN}
    return nouns, verbs, adjectives


_NOUNS, _VERBS, _ADJECTIVE_STEMS = _build_vocabulary()


def _lexicon() -> dict[str, dict[str, str]]:
    nouns: dict[str, str] = {}
    verbs = dict(_AUXILIARIES)
    for noun in chain.from_iterable(_NOUNS.values()):
        nouns |= {noun.singular: noun.target_singular, noun.plural: noun.target_plural}
    for verb in chain.from_iterable(_VERBS.values()):
        verbs |= {verb.base: verb.target_infinitive, verb.third: verb.target_third}
        verbs[verb.participle] = verb.target_participle
    return {
        "noun": nouns,
        "verb": verbs,
        "adjective": _ADJECTIVE_STEMS,
        "number": _NUMBERS,
        "preposition": _PREPOSITIONS,
        "adverb": _ADVERBS,
        "conjunction": {**_CONJUNCTIONS, "that": _THAT},
        "negation": {"not": _NOT},
    }


_LEXICON = _lexicon()
_PREPOSITION_WORDS = tuple(_PREPOSITIONS)
_ADVERB_WORDS = tuple(_ADVERBS)
_CONJUNCTION_WORDS = tuple(_CONJUNCTIONS)
_NUMBER_WORDS = tuple(_NUMBERS)


def _phrase(rng: random.Random, classes: str, *, names: bool = True) -> _Phrase:
    if names and "p" in classes and rng.random() < 0.12:
        return _Phrase(rng.choice(_NAMES))
    noun = rng.choice(_NOUNS[rng.choice(classes)])
    adjectives = tuple(rng.sample(_ADJECTIVES_EN, rng.choice((0, 0, 0, 1, 1, 2))))
    form = rng.random()
    if form < 0.45:
        return _Phrase(noun, "the", False, adjectives)
    if form < 0.65:
        return _Phrase(noun, "a", False, adjectives)
    if form < 0.82:
        return _Phrase(noun, "the", True, adjectives)
    if form < 0.94:
        return _Phrase(noun, rng.choice(_NUMBER_WORDS), True, adjectives)
    return _Phrase(noun, "", True, adjectives)


def _clause(rng: random.Random, *, complement: bool) -> _Clause:
    subject = _phrase(rng, "pa")
    frame = rng.random()
    obj = embedded = place = None
    if complement and frame < 0.1:
        verb = rng.choice(_VERBS["saying"])
        embedded = _clause(rng, complement=False)
    elif frame < 0.3:
        verb = rng.choice(_VERBS["intransitive"])
    else:
        verb = rng.choice(_VERBS["transitive"])
        obj = _phrase(rng, verb.objects)
    if embedded is None and rng.random() < 0.3:
        place = (rng.choice(_PREPOSITION_WORDS), _phrase(rng, "l", names=False))
    tense = rng.choices(_TENSES, _TENSE_WEIGHTS)[0]
    return _Clause(subject, verb, tense, rng.random() < 0.15, obj, place, embedded)


def _translation_pair(rng: random.Random) -> Example:
    while True:
        source, target = _translation_sentence(rng)
        # 5-30 words, and few enough characters that the target stays under 60 SentencePiece tokens.
        if 5 <= len(source.split()) <= 30 and len(target) <= 150:
            return {"source": _sentence_case(source) + ".", "target": _sentence_case(target) + "."}


def _translation_sentence(rng: random.Random) -> tuple[str, str]:
    """A main clause with an optional adverb and subordinate clause, each fronted or trailing."""
    main = _clause(rng, complement=True)
    # After a "that" complement, a trailing clause or adverb would be ambiguous in English (which clause does it
    # belong to?), so such sentences only take fronted ones.
    trailing = 0.0 if main.complement else 1.0
    sub_at = _position(rng, front=0.1, back=0.3 * trailing)
    adverb_at = _position(rng, front=0.0 if sub_at == "front" else 0.2, back=0.15 * trailing)
    adverb_english, adverb_target = _adverb(rng) if adverb_at else ("", "")
    sub_english, sub_target = _subordinate(rng) if sub_at else ("", "")
    # Whatever is fronted takes the first place, and the target's finite verb comes right after it.
    front_english = adverb_english if adverb_at == "front" else f"{sub_english}," if sub_at == "front" else ""
    front_target = adverb_target if adverb_at == "front" else f"{sub_target}," if sub_at == "front" else ""
    english = [front_english, main.english(), adverb_english if adverb_at == "back" else ""]
    target = main.target(front=front_target, adverb=adverb_target if adverb_at == "back" else "")
    if sub_at == "back":
        english.append(sub_english)
        target += f", {sub_target}"
    return " ".join(part for part in english if part), target


def _position(rng: random.Random, *, front: float, back: float) -> str:
    draw = rng.random()
    return "front" if draw < front else "back" if draw < front + back else ""


def _adverb(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.2:
        year = str(rng.randint(1950, 2023))
        return f"in the year {year}", f"{_YEAR} {year}"
    word = rng.choice(_ADVERB_WORDS)
    return word, _ADVERBS[word]


def _subordinate(rng: random.Random) -> tuple[str, str]:
    conjunction = rng.choice(_CONJUNCTION_WORDS)
    clause = _clause(rng, complement=False)
    return f"{conjunction} {clause.english()}", f"{_CONJUNCTIONS[conjunction]} {clause.target(subordinate=True)}"
