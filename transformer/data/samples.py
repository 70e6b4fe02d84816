"""Offline default datasets for the three tasks, generated deterministically by code in this module.

Every sample is a synthetic demo sample: made-up text from small grammars written below, not drawn from or
modelled on any corpus, so scores on it say nothing about real-world quality. The samples let training,
evaluation and prediction run end to end without downloads, and each is built so that word order matters and a
bag of words is not enough:

- ``sentiment``: English-like movie reviews from a grammar of about a thousand words. The label follows fixed
  rules (see ``sentiment_label``): a negation flips the polar word it scopes; "A but B", "although A, B",
  "even though A, B" and "A. however, B" are decided by B; "A, although B" and "A even though B" by A. Neutral
  sentences and relative clauses, some with negations of their own, are distractors, and intensifiers do not
  change the label. The same bag of words therefore occurs with both labels.
- ``translation``: English-like sentences into a made-up German-like language with its own lexicon (see
  ``translation_lexicon``): three genders and three cases marked on articles and adjective endings, plural
  suffixes, adjectives after the noun, verb-second order after a fronted adverb or clause, participles and
  infinitives at the end of the clause, and verb-final subordinate clauses. Each source has exactly one
  translation.
- ``summarization``: news or email-like documents of 4-8 sentences. One or two sentences state the key event,
  anywhere in the document, among distractors that share its entities and vocabulary; the target is a headline
  built from that event's facts and worded differently from the source.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TypeVar

SAMPLE_KINDS = ("sentiment", "translation", "summarization")
SPLITS = ("train", "validation", "test")
# Rows per (train, validation, test): enough for a small model (d=256, 3 layers) to learn each task in minutes
# on a CPU, few enough that tokenizer training and encoding stay quick.
SPLIT_SIZES: dict[str, tuple[int, int, int]] = {
    "sentiment": (20_000, 1_000, 1_000),
    "translation": (30_000, 1_000, 1_000),
    "summarization": (15_000, 1_000, 1_000),
}

Example = dict[str, str]
T = TypeVar("T")


def generate_sample(kind: str, out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Write ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` of one sample into ``out_dir``.

    Columns: sentiment ``{"text", "label"}`` with label ``"negative"`` or ``"positive"``; translation and
    summarization ``{"source", "target"}``. The same ``kind`` and ``seed`` give byte-identical files, and no
    example occurs twice anywhere in the sample. Returns the path of each split.
    """
    if kind not in _MAKERS:
        raise ValueError(f"unknown sample kind {kind!r}; choose one of: {', '.join(SAMPLE_KINDS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()  # only tested for membership, so set order never reaches the output
    paths = {}
    for split, size in zip(SPLITS, SPLIT_SIZES[kind], strict=True):
        # A str seed is hashed with SHA-512 (not hash()), so the stream is the same in every process.
        rng = random.Random(f"{kind}/{split}/{seed}")
        lines = _distinct_lines(_MAKERS[kind], rng, size, seen)
        paths[split] = _write_atomic(out_dir / f"{split}.jsonl", lines)
    return paths


def _distinct_lines(
    make: Callable[[random.Random], Example], rng: random.Random, size: int, seen: set[str]
) -> list[str]:
    # Keying on the whole row keeps evaluation rows out of training; a source that came out with two different
    # targets would still show up twice, which the tests check never happens.
    lines: list[str] = []
    for _ in range(20 * size):
        line = json.dumps(make(rng), ensure_ascii=False)
        if line not in seen:
            seen.add(line)
            lines.append(line)
            if len(lines) == size:
                return lines
    raise RuntimeError(f"drew too many duplicates to fill {size} distinct rows")


def _write_atomic(path: Path, lines: list[str]) -> Path:
    # Write a temporary file next to the target and rename it, so a reader never sees half a split.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as file:
            file.write("".join(line + "\n" for line in lines))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _phrases(text: str) -> tuple[str, ...]:
    """Comma-separated phrases, so that word lists with multi-word entries stay compact."""
    return tuple(phrase.strip() for phrase in text.split(",") if phrase.strip())


def _pairs(text: str) -> dict[str, str]:
    """``"a:b c:d"`` -> ``{"a": "b", "c": "d"}``."""
    return dict(pair.split(":") for pair in text.split())


def _sentence_case(text: str) -> str:
    return text[0].upper() + text[1:]


# ---------------------------------------------------------------------------------------------------------------
# Sentiment: movie reviews labelled by compositional rules.

_POSITIVE_ADJECTIVES = """good great excellent wonderful superb brilliant delightful charming moving gripping clever
stunning beautiful memorable fresh engaging funny touching powerful polished elegant thoughtful compelling remarkable
impressive enjoyable satisfying solid lovely vivid witty inventive original heartfelt riveting masterful captivating
sharp warm rich exciting inspired refreshing graceful smart fun lively effective strong convincing nuanced haunting
dazzling spirited confident rewarding splendid terrific marvelous sublime absorbing affecting amusing appealing
astonishing bold breathtaking buoyant catchy cheerful classy crisp dynamic earnest electrifying enchanting endearing
energetic enthralling entertaining exquisite fascinating fearless flawless gorgeous hilarious imaginative immersive
intelligent intriguing joyful lush magical magnificent mesmerizing playful poignant precise profound punchy radiant
rousing seamless sensitive sincere soulful sparkling stirring striking stylish subtle suspenseful tender thrilling
tremendous triumphant uplifting vibrant virtuosic wise wondrous adorable artful authentic charismatic compassionate
deft delicate distinctive dreamy eloquent engrossing evocative exhilarating expressive exuberant fabulous genuine
glorious heartwarming hypnotic ingenious irresistible jubilant lovable lyrical majestic meticulous noble outstanding
passionate perceptive phenomenal pleasant pristine refined resonant sensational serene skillful sophisticated
spectacular spellbinding timeless unforgettable versatile visionary whimsical""".split()
_NEGATIVE_ADJECTIVES = """bad awful terrible boring dull weak clumsy bland tedious messy lifeless flat forgettable
predictable shallow tiresome awkward sloppy annoying confusing pointless silly stale lazy cheap hollow uneven overlong
pretentious mediocre dreadful painful grating wooden tired lame sluggish muddled bloated generic derivative incoherent
joyless unconvincing clunky dreary monotonous disappointing frustrating irritating ugly drab inept plodding shrill
trite vapid mindless horrible poor aimless artificial botched careless chaotic cheesy choppy cliched contrived creaky
crude cynical dated dismal disjointed dopey exhausting feeble fake flimsy forced garish glib hackneyed humorless
idiotic insipid insufferable interminable leaden limp listless lousy lumbering manipulative meandering mechanical
misguided muddy nauseating numbing obnoxious overwrought pallid pedestrian ponderous preachy pitiful repetitive
ridiculous rushed shoddy slapdash smug soggy stiff stilted stupid tacky tasteless tepid trashy unbearable unfunny
uninspired unpleasant vulgar weary woeful worthless abysmal amateurish appalling atrocious banal bewildering
bumbling callous cartoonish cloying convoluted disorganized distasteful erratic excruciating exasperating fatuous
flawed ghastly gimmicky grotesque haphazard hideous hokey inane inconsistent indulgent inert infuriating insulting
juvenile lackluster laughable lethargic lukewarm maudlin meaningless miserable nonsensical overblown overrated
pathetic pompous puerile rambling rotten sappy senseless shabby simplistic soulless strained substandard superficial
syrupy tawdry turgid unoriginal unwatchable useless vacuous wretched""".split()
# (base, past) forms of verbs of liking and disliking.
_POSITIVE_VERBS = [
    tuple(pair.split("/"))
    for pair in """love/loved enjoy/enjoyed like/liked admire/admired
adore/adored appreciate/appreciated relish/relished cherish/cherished savor/savored praise/praised applaud/applauded
celebrate/celebrated embrace/embraced treasure/treasured""".split()
]
_NEGATIVE_VERBS = [
    tuple(pair.split("/"))
    for pair in """hate/hated dislike/disliked loathe/loathed detest/detested
despise/despised resent/resented deplore/deplored abhor/abhorred mock/mocked scorn/scorned""".split()
]
_POLARITY: dict[str, bool] = {
    **dict.fromkeys(_POSITIVE_ADJECTIVES, True),
    **dict.fromkeys(_NEGATIVE_ADJECTIVES, False),
    **{form: True for verb in _POSITIVE_VERBS for form in verb},
    **{form: False for verb in _NEGATIVE_VERBS for form in verb},
}
_NEGATORS = frozenset({"not", "never", "hardly"})  # and every word ending in "n't"

_FILMS = _phrases("the film, the movie, this film, this movie, the sequel, the remake, the documentary, the show")
_ASPECTS = [
    (phrase, False)
    for phrase in _phrases("""the acting, the soundtrack, the score, the plot, the script,
the dialogue, the ending, the opening, the pacing, the editing, the cinematography, the direction, the cast,
the lead actor, the lead actress, the villain, the hero, the story, the humor, the music, the camera work,
the lighting, the sound design, the screenplay, the premise, the finale, the climax, the first act, the second half,
the romance, the twist, the tone, the atmosphere, the production design, the narration, the theme song,
the main character, the supporting cast, the final scene, the opening scene, the animation, the chase sequence,
the voice acting, the set design, the ensemble, the sound mix, the makeup, the choreography, the subtitles,
the dubbing, the prologue, the epilogue, the middle section, the backstory, the worldbuilding, the monologue,
the courtroom scene, the wedding scene, the car chase, the heist, the family drama,
the color grading, the title sequence, the central mystery, the mood, the tension, the suspense, the child actor,
the comic relief, the sidekick, the narrator, the rhythm, the production, the storytelling, the craftsmanship,
the direction of the actors, the adaptation, the casting""")
] + [
    (phrase, True)
    for phrase in _phrases("""the performances, the characters, the visuals, the special effects, the action scenes,
    the fight scenes, the costumes, the jokes, the songs, the flashbacks, the side plots, the actors, the battle scenes,
    the landscapes, the twists, the cameos, the stunts, the sets, the puppets, the creatures, the montages,
    the subplots, the supporting roles, the interviews, the archival clips, the dance numbers, the dream sequences""")
]
_ASPECT_PLACES = _phrases("in this film, in the sequel, of the movie, in the final cut, in the remake")
# Relative clauses agree with any subject and are neutral; their negations scope nothing polar.
_RELATIVES = _phrases("""which i saw twice, which i did not expect, which nobody told me about,
which i had never noticed before, which took years to finish, which everyone talks about,
which i hardly remember from the trailer, which my sister pointed out, which critics keep mentioning,
which i didn't notice at first""")
_INTENSIFIERS = """very really extremely somewhat quite rather incredibly truly fairly remarkably deeply thoroughly
utterly wildly surprisingly unexpectedly consistently mostly oddly""".split()
_VERB_INTENSIFIERS = "really truly genuinely absolutely".split()
_EXPERIENCERS = _phrases("i, we, my wife, my husband, my friends, my kids, my brother, the audience, my parents")
_VERDICT_SUBJECTS = _phrases("it, this, the whole thing, overall it")
_VERDICT_NOUNS = "film movie story experience watch debut ride effort".split()

_NEUTRAL_SENTENCES = _phrases("""i watched it {when} {where}, i saw it with {company} {when},
it runs about {minutes} minutes, it is based on {source}, i did not know much about it before,
i had never heard of the director before, the theater was {crowd}, the theater was not {crowd},
{performer} plays {role}, it came out {release}, {company} recommended it to me, the story is set in {setting},
i didn't read the book first, the trailer doesn't show much of the story, there is no {thing} in it, it is {format},
i watched the {version} version, {company} never watches {genre}, the director also made {other},
i hardly ever go to the cinema, it is the {ordinal} film in the series, nobody in my family had seen it,
my friend {name} picked it, {name} from work lent me the disc, it was shot in {place} during {month},
the director comes from {place}, the main character is called {name}, i went with {name} and {name},
it opened in {month} in {place}, i watched it on a {day} in {month}, {name} plays the {relative} of the hero,
the film follows {name} and {relative}, i rented it for {money}, the ticket cost {money},
my {relative} works as {job}, i ate {snack} during {part}, it was {weather} outside when we left,
the cinema is next to {building}, {name} plays {job} from {place}, there is {animal} in almost every scene,
the poster is mostly {color}, the hero drives {vehicle}, the score is played on {instrument},
the villain keeps {animal} as a pet, {name} wears {color} in every scene""")
_NEUTRAL_FILLERS = {
    "when": _phrases("last night, on a rainy sunday, after work, last weekend, on a long flight, yesterday, last year"),
    "where": _phrases("at home, in a small theater, on my laptop, at a festival, in a packed cinema, on a train"),
    "company": _phrases("my sister, a friend, my parents, a coworker, my roommate, my uncle, my neighbor, my cousin"),
    "minutes": _phrases("ninety, a hundred, a hundred and twenty, two hundred, eighty"),
    "source": _phrases("a novel, a short story, a true story, a comic book, a stage play, an old radio show, a poem"),
    "crowd": _phrases("crowded, almost empty, half full, cold, quiet, noisy, sold out"),
    "performer": _phrases("the lead actor, the lead actress, a former singer, a newcomer, the director himself"),
    "role": _phrases("a retired teacher, a young nurse, a taxi driver, a detective, a farmer, twin brothers, a pilot"),
    "release": _phrases("last spring, in the nineties, a few years ago, on a streaming service, in december"),
    "setting": _phrases("a small town, a space station, the desert, a boarding school, the future, a hospital"),
    "thing": _phrases("romance, music, violence, narration, dialogue at all"),
    "format": _phrases("in black and white, in french with subtitles, about two hours long, mostly silent"),
    "version": _phrases("dubbed, extended, restored, director's"),
    "genre": _phrases("horror films, musicals, westerns, documentaries, comedies, war films, cartoons"),
    "other": _phrases("a documentary about trains, two short films, a music video, a series about cooks"),
    "ordinal": _phrases("second, third, fourth, last"),
    "name": tuple(
        """anna ben clara david emma felix greta hugo ida jonas karl lena max nora otto paula rosa simon
    tara victor wanda yusuf zara omar priya kenji marta pablo ines tobias freya leon mila oscar ruth elias""".split()
    ),
    "place": tuple(
        """norway morocco peru vietnam scotland chile iceland portugal kenya canada mexico poland greece
    egypt japan india brazil ireland turkey spain""".split()
    ),
    "month": tuple("january february march april may june july august september october november december".split()),
    "day": tuple("monday tuesday wednesday thursday friday saturday sunday".split()),
    "relative": _phrases("mother, father, sister, brother, uncle, aunt, grandmother, neighbor, landlord, boss"),
    "money": _phrases("three dollars, five dollars, twelve dollars, two euros, seven pounds"),
    "job": _phrases("""a plumber, an accountant, a librarian, a dentist, a baker, a carpenter, an electrician,
    a florist, a lawyer, a mechanic, a chemist, a surgeon, a tailor, a butcher, a courier, a gardener, a translator,
    a barber, an architect, a firefighter, a shepherd, a fisherman, a jeweler, a locksmith, a pharmacist, a sailor"""),
    "snack": _phrases("popcorn, nachos, a pretzel, gummy bears, a hot dog, peanuts, chocolate, licorice, an apple"),
    "part": _phrases("the trailers, the intermission, the credits, the first hour, the last twenty minutes"),
    "weather": _phrases("raining, snowing, foggy, windy, already dark, still light, humid, freezing"),
    "animal": _phrases("""a dog, a cat, a horse, a parrot, a goat, a tortoise, an owl, a fox, a rabbit, a goldfish,
    a donkey, a crow, a hedgehog, a llama, a beetle, a swan, a lizard, a ferret, a pigeon, a camel"""),
    "color": _phrases("blue, green, yellow, purple, orange, grey, brown, pink, red, black, white, turquoise, beige"),
    "vehicle": _phrases("""a taxi, a tractor, a motorbike, a van, a bus, a convertible, a truck, an ambulance,
    a scooter, a jeep, a limousine, a canoe"""),
    "instrument": _phrases("""a piano, a cello, a violin, a harp, an accordion, a banjo, a trumpet, a flute, an organ,
    a saxophone, a mandolin, a clarinet, a ukulele, a tuba, a harmonica, bagpipes, drums"""),
    "building": _phrases("""a bakery, the train station, a pharmacy, the town hall, a laundromat, a museum, a bank,
    a church, a supermarket, a bookshop, the harbor, a garage, a gym, a hotel, the post office"""),
}
_MAX_REVIEW_CHARS = 160  # under 60 SentencePiece tokens at 1000 pieces
# Frames of a review's opinion: {win} carries the label, {lose} the opposite polarity, {also} the same one. A lone
# opinion makes almost half the reviews, so that a model picks up polarity and negation early.
_FRAMES = (
    *["{win}"] * 6,
    "{lose} but {win}",
    "although {lose}, {win}",
    "{win}, although {lose}",
    "even though {lose}, {win}",
    "{win} even though {lose}",
    "{lose}. however, {win}",
    "{win} and {also}",
)


def sentiment_label(text: str) -> str:
    """The label of a sentiment-sample review, derived from its text alone by the sample's rules.

    The last sentence with a polar word decides ("A. however, B"). Inside it, relative clauses are dropped,
    a contrast picks one clause ("A but B" -> B, "although A, B" -> B, "A, although B" -> A, ...), and a
    negation in that clause flips the polarity of its polar word.
    """
    verdict = None
    for sentence in text.removesuffix(".").split(". "):
        polarity = _sentence_polarity(sentence)
        if polarity is not None:
            verdict = polarity
    if verdict is None:
        raise ValueError(f"no polar word in review: {text!r}")
    return "positive" if verdict else "negative"


_RELATIVE_CLAUSE = re.compile(r", which [^,]*,")
# (pattern, group that decides), tried in order: the sentence-initial forms first.
_CONTRASTS = tuple(
    (re.compile(pattern), group)
    for pattern, group in (
        (r"although (.+?), (.+)", 2),
        (r"even though (.+?), (.+)", 2),
        (r"(.+), although (.+)", 1),
        (r"(.+) even though (.+)", 1),
        (r"(.+) but (.+)", 2),
        (r"(.+) and (.+)", 1),
    )
)


def _sentence_polarity(sentence: str) -> bool | None:
    clause = _RELATIVE_CLAUSE.sub("", sentence).removeprefix("however, ")
    for pattern, group in _CONTRASTS:
        match = pattern.fullmatch(clause)
        if match:
            clause = match.group(group)
            break
    words = clause.split()
    polar = [_POLARITY[word] for word in words if word in _POLARITY]
    if not polar:
        return None
    negated = any(word in _NEGATORS or word.endswith("n't") for word in words)
    return polar[0] != negated


def _review(rng: random.Random) -> Example:
    positive = rng.random() < 0.5
    frame = rng.choice(_FRAMES)
    opinion = frame.format(
        win=_opinion(rng, positive),
        lose=_opinion(rng, not positive) if "{lose}" in frame else "",
        also=_opinion(rng, positive) if "{also}" in frame else "",
    )
    before = [_neutral(rng) for _ in range(rng.choice((0, 0, 1, 1, 2)))]
    after = [_neutral(rng) for _ in range(rng.choice((0, 0, 0, 1)))]
    # Drop distractors from long reviews, so that truncation to the configured length never cuts the opinion.
    while (before or after) and len(". ".join([*before, opinion, *after])) > _MAX_REVIEW_CHARS:
        (before or after).pop()
    text = ". ".join([*before, opinion, *after]) + "."
    return {"text": text, "label": "positive" if positive else "negative"}


def _opinion(rng: random.Random, positive: bool) -> str:
    """A clause of the given polarity: a polar word, of the opposite polarity when a negation scopes it."""
    negated = rng.random() < 0.3
    word_positive = positive != negated
    kind = rng.random()
    if kind < 0.25:
        return _liking_clause(rng, _common(rng, _POSITIVE_VERBS if word_positive else _NEGATIVE_VERBS), negated)
    adjective = _common(rng, _POSITIVE_ADJECTIVES if word_positive else _NEGATIVE_ADJECTIVES)
    if kind < 0.4:
        return _verdict_clause(rng, adjective, negated)
    return _copular_clause(rng, adjective, negated)


def _common(rng: random.Random, words: Sequence[T]) -> T:
    """A word drawn with a long tail, as in natural text: the first tenth of the list gets about 40% of draws.

    Frequent polar words let a small model pick up polarity within its first epoch; the tail keeps the bag of
    words large."""
    return words[int(len(words) * rng.random() ** 2.5)]


def _copular_clause(rng: random.Random, adjective: str, negated: bool) -> str:
    subject, plural = _review_subject(rng, relative=True)
    return f"{subject} {_copula(rng, plural, negated)} {_intensified(rng, adjective)}"


def _liking_clause(rng: random.Random, verb: tuple[str, str], negated: bool) -> str:
    base, past = verb
    intensifier = rng.choice(_VERB_INTENSIFIERS) + " " if rng.random() < 0.3 else ""
    if negated:
        verb_group = rng.choice((f"did not {intensifier}{base}", f"didn't {intensifier}{base}", f"never {past}"))
    else:
        verb_group = f"{intensifier}{past}"
    return f"{rng.choice(_EXPERIENCERS)} {verb_group} {_review_subject(rng, relative=False)[0]}"


def _verdict_clause(rng: random.Random, adjective: str, negated: bool) -> str:
    be = rng.choice(("is", "was"))
    if negated:
        be = rng.choice((f"{be} not", f"{be}n't"))
    described = _intensified(rng, adjective)
    article = "an" if described[0] in "aeiou" else "a"
    return f"{rng.choice(_VERDICT_SUBJECTS)} {be} {article} {described} {rng.choice(_VERDICT_NOUNS)}"


def _review_subject(rng: random.Random, *, relative: bool) -> tuple[str, bool]:
    if rng.random() < 0.3:
        phrase, plural = rng.choice(_FILMS), False
    else:
        phrase, plural = rng.choice(_ASPECTS)
        if rng.random() < 0.2:
            phrase = f"{phrase} {rng.choice(_ASPECT_PLACES)}"
    if relative and rng.random() < 0.15:
        phrase = f"{phrase}, {rng.choice(_RELATIVES)},"
    return phrase, plural


def _copula(rng: random.Random, plural: bool, negated: bool) -> str:
    if rng.random() < 0.6:
        be = rng.choice(("are", "were") if plural else ("is", "was"))
        return rng.choice((f"{be} not", f"{be}n't", f"{be} never", f"{be} hardly")) if negated else be
    lemma = rng.choice(("seem", "feel", "look", "sound"))
    past = rng.random() < 0.5
    finite = lemma + "ed" if past else lemma if plural else lemma + "s"
    if not negated:
        return finite
    auxiliary = "did" if past else "do" if plural else "does"
    return rng.choice((f"{auxiliary} not {lemma}", f"{auxiliary}n't {lemma}", f"never {finite}", f"hardly {finite}"))


def _intensified(rng: random.Random, adjective: str) -> str:
    return f"{rng.choice(_INTENSIFIERS)} {adjective}" if rng.random() < 0.35 else adjective


def _neutral(rng: random.Random) -> str:
    template = rng.choice(_NEUTRAL_SENTENCES)
    return re.sub(r"\{(\w+)\}", lambda slot: rng.choice(_NEUTRAL_FILLERS[slot.group(1)]), template)


# ---------------------------------------------------------------------------------------------------------------
# Translation: English-like sentences into a made-up German-like language.

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


# ---------------------------------------------------------------------------------------------------------------
# Summarization: short documents whose key event must be found among distractors.


@dataclass(frozen=True)
class _Event:
    """A kind of key event: ways to state it, the headline it gets, and distractors that share its entities.

    Templates are ``str.format`` strings over the fields of ``_facts``. A detail is an optional second salient
    sentence, later in the document, that adds its suffix to the headline.
    """

    statements: tuple[str, ...]
    headline: str
    details: tuple[tuple[str, str], ...]
    distractors: tuple[str, ...]
    email: bool = False


_EVENTS = (
    _Event(  # acquisition
        statements=(
            "{A} will acquire {B} for {amount}.",
            "{A} has agreed to buy {B} in a deal worth {amount}.",
            "{B} is being bought by {A} for {amount}, the companies said.",
            "In a deal worth {amount}, {A} is taking over its rival {B}.",
        ),
        headline="{A} to buy {B} for {amount_short}",
        details=(("The deal is expected to close on {date}.", ", closing {date}"),),
        distractors=(
            "{B} was founded in {year} and employs {n} people.",
            "{A} tried to buy {C} in {year2}, but the talks failed.",
            "Analysts had valued {B} at about {amount2}.",
            "{C} is also said to have looked at {B}.",
            "Shares of {A} rose {pct} percent in early trading.",
            "{P}, who founded {B}, will stay on as an adviser.",
            "{A} is based in {city} and {B} in {city2}.",
        ),
    ),
    _Event(  # earnings
        statements=(
            "{A} reported a {quarter} profit of {amount}, {direction} {pct} percent from a year earlier.",
            "Profit at {A} {moved} {pct} percent to {amount} in the {quarter}.",
            "{A} said its {quarter} profit {moved} {pct} percent to {amount}.",
        ),
        headline="{A} {quarter_short} profit {direction} {pct}% at {amount_short}",
        details=(("{A} kept its outlook for the full year.", ", outlook kept"),),
        distractors=(
            "Analysts had expected a profit of about {amount2}.",
            "{A} will publish its full-year results on {date}.",
            "{C}, its main rival, reports on {day}.",
            "{P} has been chief executive of {A} since {year}.",
            "The company has {n} stores in {city} alone.",
            "Shares of {C} were little changed.",
            "{A} made a loss in {year2}.",
        ),
    ),
    _Event(  # appointment
        statements=(
            "{A} has named {P} as its new {role}.",
            "{P} will join {A} as {role} next month.",
            "{A} said on {day} that {P} will become its {role}.",
        ),
        headline="{A} names {P} {role_short}",
        details=(("{P} takes over from {P2}, who is retiring.", ", replacing {P2}"),),
        distractors=(
            "{P} previously spent {small} years at {C}.",
            "{P3} has led the {city} office since {year}.",
            "{A} employs {n} people in {city}.",
            "{C} named a new {role} in {year2}.",
            "The search for the role took {small2} months.",
            "{P} studied in {city2}.",
            "Shares of {A} were flat on {day2}.",
        ),
    ),
    _Event(  # outage
        statements=(
            "The {service} of {A} was down for {hours} hours on {day} after a {cause}.",
            "A {cause} knocked out the {service} of {A} for {hours} hours on {day}.",
            "Customers of {A} could not use its {service} for {hours} hours on {day} because of a {cause}.",
        ),
        headline="{A} {service} down {hours}h after {cause}",
        details=(("Service was fully restored by {time}.", ", back by {time}"),),
        distractors=(
            "{A} had a shorter outage in {month}.",
            "{C} said its own {service} was not affected.",
            "{A} has about {n} business customers.",
            "A {cause2} hit {C} in {year}.",
            "{P}, who runs the {service}, apologized to customers.",
            "The company plans to move more systems to {city} next year.",
            "{A} upgraded its {service2} on {day2}.",
        ),
    ),
    _Event(  # job cuts
        statements=(
            "{A} will cut {n} jobs at its site in {city}.",
            "About {n} workers at {A} in {city} will lose their jobs.",
            "{A} plans to eliminate {n} positions in {city}.",
        ),
        headline="{A} to cut {n} jobs in {city}",
        details=(("The cuts will take effect in {month}.", " from {month}"),),
        distractors=(
            "{A} opened the {city} site in {year}.",
            "{A} employs {n2} people worldwide.",
            "{C} is adding jobs in {city2}.",
            "{P} from the union said talks will continue on {day}.",
            "The site in {city2} is not affected.",
            "{A} also cut jobs in {year2}.",
            "{P2} will lead the {city} site from {month2}.",
        ),
    ),
    _Event(  # product launch
        statements=(
            "{A} will launch the {product} on {date}.",
            "The {product} from {A} goes on sale on {date}.",
            "{A} plans to start selling its {product} on {date}.",
        ),
        headline="{A} sets {date} launch for {product}",
        details=(("It will cost {price}.", ", priced at {price}"),),
        distractors=(
            "{A} released the {product2} in {year}.",
            "{C} is working on a rival {kind}.",
            "The company did not say how many units it will make.",
            "{P} will present the {product} at an event in {city}.",
            "Early reviews of the {product2} were mixed.",
            "{A} sold {n} units of its last {kind}.",
            "{C} cut the price of its {kind} on {day}.",
        ),
    ),
    _Event(  # meeting change
        statements=(
            "The meeting with {P} is moved to {day} at {time}.",
            "{P} asked to move our meeting to {day} at {time}.",
            "We will now meet {P} on {day} at {time} instead of {day2}.",
        ),
        headline="meeting with {P} moved to {day} {time}",
        details=(("It will be in room {room}.", ", room {room}"),),
        distractors=(
            "{P2} sent the slides for the {project} review.",
            "The {project} review on {day2} stays at {time2}.",
            "Lunch on {day2} is at {time2} as usual.",
            "{P2} is out of the office until {day2}.",
            "Please add your notes to the {project} document.",
            "{P} liked the draft you shared last week.",
            "{P3} will join us for the {project} review.",
        ),
        email=True,
    ),
    _Event(  # deadline change
        statements=(
            "The deadline for the {project} report is extended to {day}.",
            "You now have until {day} to send in the {project} report.",
            "We pushed the due date of the {project} report to {day}.",
        ),
        headline="{project} report now due {day}",
        details=(("Please send it to {P} by {time}.", ", send to {P} by {time}"),),
        distractors=(
            "The {project2} report is still due on {day2}.",
            "{P2} will collect the {project2} numbers.",
            "{P} is reviewing the first drafts.",
            "The {project} workshop on {day2} is at {time2}.",
            "Most teams have already started on the {project} report.",
            "Templates are in the shared folder.",
            "{P3} has questions about the {project2} budget.",
        ),
        email=True,
    ),
)
_NEWS_FILLERS = (
    "{C} declined to comment.",
    "Markets were mostly quiet on {day2}.",
    "More details are expected later this month.",
    "The news was first reported on {day2}.",
    "Industry analysts expect a busy year.",
)
_EMAIL_FILLERS = (
    "I hope you had a good weekend.",
    "Thanks for your help with the {project2} plan.",
    "Let me know if you have any questions.",
    "Sorry for the short notice.",
    "The coffee machine on the third floor is fixed.",
)

_COMPANY_PARTS = (
    "Nor Vel Quan Bright Blue Silver Red North Tera Omni Alto Zen Pine Iron Star Lumen Cobalt Apex Harbor Maple",
    "tek corp soft works labs ware line field point wave stone gate",
)
_COMPANIES = tuple(head + tail for head in _COMPANY_PARTS[0].split() for tail in _COMPANY_PARTS[1].split())
_FIRST_NAMES = """Dana Alex Sam Robin Jordan Maria Chen Priya Omar Lena Tomas Aisha Noah Elena Kofi Yuki Ivan
Sofia Malik Hana Lucas Mei Ravi Zoe""".split()
_LAST_NAMES = """Kim Okafor Novak Silva Berg Tanaka Haddad Moreau Larsen Costa Weber Singh Reyes Ahmed Kowalski
Mensah Ito Petrov Nilsson Rossi Brandt Osei Duarte Lind""".split()
_WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday".split()
_MONTHS = "January February March April May June July August September October November December".split()
_TIMES = _phrases("9 am, 9:30 am, 10 am, 10:30 am, 11 am, noon, 1 pm, 2 pm, 2:30 pm, 3 pm, 4 pm, 4:30 pm, 5 pm")
_CITIES = tuple(
    head + tail
    for head in "Ash Bel Cor Dun Elm Fair Glen Hal Kings Lin Mar Oak Red Stan West".split()
    for tail in "ford ton bury field port wick dale mouth".split()
)
_QUARTERS = {"first quarter": "Q1", "second quarter": "Q2", "third quarter": "Q3", "fourth quarter": "Q4"}
_ROLES = {
    "chief executive": "CEO",
    "chief financial officer": "CFO",
    "chief technology officer": "CTO",
    "head of sales": "sales chief",
    "head of marketing": "marketing chief",
    "head of research": "research chief",
    "general counsel": "general counsel",
}
_SERVICES = _phrases(
    "email service, payment system, website, mobile app, cloud platform, booking system, customer portal, video service"
)
_CAUSES = _phrases("power failure, faulty update, network fault, cyberattack, database error, fire, flood")
_MODELS = "Aria Nova Pulse Orbit Zephyr Atlas Echo Vega Flux Halo".split()
_KINDS = "phone tablet smartwatch laptop router camera speaker drone headset printer".split()
_PROJECTS = _phrases("budget, quarterly, hiring, marketing, security audit, migration, travel, training, research")


def _money(rng: random.Random) -> tuple[str, str]:
    """An amount as written in the text and in the headline's short form ("$3 million", "$3m")."""
    if rng.random() < 0.7:
        millions = rng.randrange(2, 950)
        return f"${millions} million", f"${millions}m"
    billions = f"{rng.randrange(11, 99) / 10:.1f}"
    return f"${billions} billion", f"${billions}bn"


def _facts(rng: random.Random) -> dict[str, str]:
    """Entities and numbers for one document, with distinct values wherever a distractor could be confused."""
    first, last = rng.sample(_FIRST_NAMES, 5), rng.sample(_LAST_NAMES, 5)
    people = [f"{f} {s}" for f, s in zip(first, last, strict=True)]
    facts = dict(zip(("A", "B", "C"), rng.sample(_COMPANIES, 3), strict=True))
    facts |= dict(zip(("P", "P2", "P3"), people[:3], strict=True))
    facts |= {"reader": first[3], "writer": first[4]}
    facts |= dict(zip(("day", "day2"), rng.sample(_WEEKDAYS, 2), strict=True))
    facts |= dict(zip(("time", "time2"), rng.sample(_TIMES, 2), strict=True))
    facts |= dict(zip(("month", "month2"), rng.sample(_MONTHS, 2), strict=True))
    facts |= dict(zip(("city", "city2"), rng.sample(_CITIES, 2), strict=True))
    facts |= dict(zip(("year", "year2"), map(str, rng.sample(range(1985, 2024), 2)), strict=True))
    facts |= dict(zip(("service", "service2"), rng.sample(_SERVICES, 2), strict=True))
    facts |= dict(zip(("cause", "cause2"), rng.sample(_CAUSES, 2), strict=True))
    facts |= dict(zip(("project", "project2"), rng.sample(_PROJECTS, 2), strict=True))
    facts |= dict(zip(("small", "small2"), map(str, rng.sample(range(2, 13), 2)), strict=True))
    for key in ("amount", "amount2"):
        facts[key], facts[key + "_short"] = _money(rng)
    quarter, role = rng.choice(tuple(_QUARTERS)), rng.choice(tuple(_ROLES))
    (model, model2), kind = rng.sample(_MODELS, 2), rng.choice(_KINDS)
    up = rng.random() < 0.5
    facts |= {
        "date": f"{facts['month']} {rng.randint(1, 28)}",
        "n": str(rng.randrange(50, 3000, 10)),
        "n2": f"{rng.randrange(5, 90)},000",
        "pct": str(rng.randint(2, 60)),
        "hours": str(rng.randint(2, 14)),
        "room": f"{rng.randint(1, 6)}.{rng.randint(1, 30):02d}",
        "price": f"${rng.randrange(99, 2000, 50)}",
        "quarter": quarter,
        "quarter_short": _QUARTERS[quarter],
        "role": role,
        "role_short": _ROLES[role],
        "kind": kind,
        "product": f"{model} {rng.randint(2, 9)} {kind}",
        "product2": f"{model2} {rng.randint(2, 9)} {kind}",
        "direction": "up" if up else "down",
        "moved": "rose" if up else "fell",
    }
    return facts


def _document(rng: random.Random) -> Example:
    event = rng.choice(_EVENTS)
    facts = _facts(rng)
    headline = event.headline
    salient = [rng.choice(event.statements)]
    if rng.random() < 0.4:
        detail, suffix = rng.choice(event.details)
        salient.append(detail)
        headline += suffix
    greeting, sign_off = (f"Hi {facts['reader']},", f"Thanks, {facts['writer']}.") if event.email else ("", "")
    size = rng.randint(4, 8) - bool(greeting) - bool(sign_off)
    fillers = _EMAIL_FILLERS if event.email else _NEWS_FILLERS
    body = rng.sample(event.distractors + fillers, max(size - len(salient), 1))
    # The key statement goes anywhere, and its detail anywhere after it.
    position = rng.randint(0, len(body))
    body.insert(position, salient[0])
    if len(salient) == 2:
        body.insert(rng.randint(position + 1, len(body)), salient[1])
    sentences = [greeting, *(_sentence_case(s.format_map(facts)) for s in body), sign_off]
    return {"source": " ".join(s for s in sentences if s), "target": headline.format_map(facts)}


_MAKERS: dict[str, Callable[[random.Random], Example]] = {
    "sentiment": _review,
    "translation": _translation_pair,
    "summarization": _document,
}
