"""Summarization: short documents whose key event must be found among distractors."""

from __future__ import annotations

import random
from dataclasses import dataclass

from transformer.data.samples.common import Example, _phrases, _sentence_case


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
