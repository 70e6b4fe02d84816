"""Sentiment: movie reviews labelled by compositional rules (``sentiment_label``)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import TypeVar

from transformer.data.samples.common import Example, _phrases

T = TypeVar("T")

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
