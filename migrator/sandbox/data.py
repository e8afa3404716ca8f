"""Seeded synthetic CRM data, in a vendor-neutral shape.

Every simulator seeds its account from ``people()`` and ``properties()`` and converts
each ``Person`` into its own vendor's record shape, so the same seed gives the same
people in every system. Deterministic for a given (n, seed, dirt).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

import us
from faker import Faker

STATUSES = ["Suspect", "Prospect", "Lead", "Client", "Past Client"]
SOURCES = ["Zillow", "Referral", "Open House", "Website", "Facebook Ads", "Sign Call",
           "Past Client", "Events"]
TAGS = ["hot-buyer", "mobile-app", "first-time-buyer", "investor", "seller", "relocation",
        "luxury", "sphere", "open-house", "cash-buyer", "downsizing", "vip"]
UNICODE_NAMES = [("José", "Muñoz"), ("Zoë", "Brontë"), ("Łukasz", "Wiśniewski"),
                 ("Søren", "Kierkegård"), ("Nguyễn", "Văn An"), ("Chloé", "Dupré"),
                 ("Björk", "Guðmundsdóttir"), ("Ana 🌵", "García"), ("Ngọc", "Trần"),
                 ("Renée", "O'Brien-Łaska")]
# Valid names in other scripts: (given, family, the full name as its script writes it).
SCRIPT_NAMES = [("小龙", "李", "李小龙"), ("芳", "王", "王芳"), ("小明", "欧阳", "欧阳小明"),
                ("민준", "김", "김민준"), ("서연", "이", "이서연"), ("太郎", "山田", "山田太郎"),
                ("Иван", "Петров", "Иван Петров"), ("Ελένη", "Παπαδοπούλου", "Ελένη Παπαδοπούλου"),
                ("أحمد", "حسن", "أحمد حسن"), ("דוד", "כהן", "דוד כהן")]
NOTE_WORDS = ("called", "about", "the", "listing", "on", "Elm", "street", "wants", "a", "yard",
              "pre-approved", "budget", "school", "district", "follow", "up", "next", "week")
# The 50 states and DC (Faker's state_abbr also yields FM, PW, MH: not US states).
STATE_CODES = sorted(s.abbr for s in us.states.STATES_AND_TERRITORIES
                     if not s.is_territory or s.abbr == "DC") or ["CA"]
# Real, assignable US area codes so generated numbers pass E.164 validation.
AREA_CODES = ["212", "310", "312", "415", "512", "602", "619", "702", "718", "786",
              "843", "858", "917", "972", "206", "303", "404", "617", "713", "919"]


@dataclass(frozen=True)
class Dirt:
    """Rates (0..1) of dirty records, as real exports have them."""

    missing_email: float = 0.0       # no e-mail at all (some also lack a phone)
    invalid_phone: float = 0.0       # "555-CALL-NOW", too short…
    long_name: float = 0.0           # a first name over 75 characters
    duplicate_email: float = 0.0     # reuses an earlier person's e-mail
    unicode_name: float = 0.0        # accents, CJK, emoji
    empty_strings: float = 0.0       # "" where a value is expected (company, city…)
    # Valid shapes that are easy to lose (the person stays clean): a share of people,
    # every 1/rate-th one, so any run of 1/rate people holds each shape once.
    zip_plus4: float = 0.0           # a home ZIP+4, "92103-1234"
    no_city: float = 0.0             # a home address without a city
    primary_phone: float = 0.0       # a primary number apart from the typed ones (Spark)
    script_name: float = 0.0         # a CJK, Cyrillic, Greek, Arabic or Hebrew name
    long_note: float = 0.0           # a note over 10,000 characters


CLEAN = Dirt()
DIRTY = Dirt(missing_email=0.03, invalid_phone=0.03, long_name=0.01, duplicate_email=0.02,
             unicode_name=0.05, empty_strings=0.03, zip_plus4=0.05, no_city=0.05,
             primary_phone=0.05, script_name=0.05, long_note=0.05)
# Each shape's place in its cycle, so that no person holds two of them.
_SHAPE_OFFSET = {"zip_plus4": 3, "no_city": 7, "primary_phone": 11, "script_name": 13,
                 "long_note": 17}


@dataclass
class Address:
    kind: str  # "home" | "work"
    street: str
    city: str
    state: str  # 2-letter
    zip: str
    country: str = "US"

    @property
    def one_line(self) -> str:
        return f"{self.street}, {self.city}, {self.state} {self.zip}"


@dataclass
class Person:
    uid: int
    first_name: str
    last_name: str
    emails: list[tuple[str, str]] = field(default_factory=list)  # (kind, address)
    phones: list[tuple[str, str]] = field(default_factory=list)  # (kind, "+1…" or dirty raw)
    addresses: list[Address] = field(default_factory=list)
    company: str | None = None
    title: str | None = None
    birthday: date | None = None
    anniversary: date | None = None
    tags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "Lead"
    source: str = "Website"
    created_at: datetime = datetime(2020, 1, 1, tzinfo=timezone.utc)
    updated_at: datetime = datetime(2020, 1, 1, tzinfo=timezone.utc)
    dirty: frozenset[str] = frozenset()
    primary_phone: str | None = None  # a primary number apart from ``phones`` (Spark has one)
    written_name: str | None = None   # the full name as its script writes it, if not "First Last"
    shapes: frozenset[str] = frozenset()  # the valid-but-easy-to-lose shapes it holds

    @property
    def email(self) -> str | None:
        return self.emails[0][1] if self.emails else None

    @property
    def phone(self) -> str | None:
        return self.phones[0][1] if self.phones else None

    @property
    def full_name(self) -> str:
        return self.written_name or f"{self.first_name} {self.last_name}".strip()


@dataclass
class Property:
    uid: int
    street: str
    city: str
    state: str
    zip: str
    owner_uid: int | None
    bedrooms: int
    bathrooms: int
    sqft: int
    list_price: int
    tags: list[str] = field(default_factory=list)


def _phone(rng: random.Random) -> str:
    exchange = rng.randint(200, 999)
    while exchange % 100 == 11:
        exchange = rng.randint(200, 999)
    return f"+1{rng.choice(AREA_CODES)}{exchange}{rng.randint(0, 9999):04d}"


def _address(fake: Faker, rng: random.Random, kind: str) -> Address:
    return Address(kind=kind, street=fake.street_address(), city=fake.city(),
                   state=rng.choice(STATE_CODES), zip=f"{rng.randint(1001, 99950):05d}")


@lru_cache(maxsize=8)
def _people(n: int, seed: int, dirt: Dirt) -> tuple[Person, ...]:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    base = datetime(2019, 1, 1, tzinfo=timezone.utc)
    out: list[Person] = []
    for uid in range(1, n + 1):
        dirty: set[str] = set()
        first, last = fake.first_name(), fake.last_name()
        shapes = _shapes(uid, dirt)
        shape_rng = random.Random(f"shapes:{seed}:{uid}")  # the main streams stay as they were
        written = None
        if "script_name" in shapes:
            first, last, written = shape_rng.choice(SCRIPT_NAMES)
        if rng.random() < dirt.unicode_name:
            first, last = rng.choice(UNICODE_NAMES)
            dirty.add("unicode_name")
        if rng.random() < dirt.long_name:
            first = (first + " ") * 20
            first = first.strip()[:90]
            dirty.add("long_name")
        user = f"{first}.{last}".lower()
        user = "".join(ch for ch in user if ch.isascii() and (ch.isalnum() or ch == ".")).strip(".")
        emails = [("work", f"{user or 'contact'}.{uid}@{fake.free_email_domain()}")]
        if rng.random() < 0.3:
            emails.append(("home", f"{user or 'home'}{uid}@{fake.domain_name()}"))
        phones = [("mobile", _phone(rng))]
        if rng.random() < 0.4:
            phones.append((rng.choice(["home", "work"]), _phone(rng)))
        if rng.random() < dirt.invalid_phone:
            phones[0] = ("mobile", rng.choice(["555-CALL-NOW", "12345", "+1 (000) 000-0000"]))
            dirty.add("invalid_phone")
        if out and rng.random() < dirt.duplicate_email:
            emails[0] = ("work", rng.choice(out[-50:]).email or emails[0][1])
            dirty.add("duplicate_email")
        if rng.random() < dirt.missing_email:
            emails = []
            dirty.add("missing_email")
            if rng.random() < 0.5:
                phones = []
                dirty.add("missing_phone")
        addresses = [_address(fake, rng, "home")]
        if rng.random() < 0.3:
            addresses.append(_address(fake, rng, "work"))
        company = fake.company() if rng.random() < 0.5 else None
        title = fake.job()[:60] if company else None
        if rng.random() < dirt.empty_strings:
            company, addresses[0].city = "", ""
            dirty.add("empty_strings")
        created = base + timedelta(minutes=uid * 37 + rng.randint(0, 30))
        if "zip_plus4" in shapes:
            addresses[0].zip += f"-{shape_rng.randint(1, 9999):04d}"
        if "no_city" in shapes:
            addresses[0].city = ""
        out.append(Person(
            uid=uid, first_name=first, last_name=last, emails=emails, phones=phones,
            addresses=addresses, company=company, title=title,
            birthday=fake.date_of_birth(minimum_age=22, maximum_age=85) if rng.random() < 0.6 else None,
            anniversary=fake.date_between(date(1990, 1, 1), date(2023, 12, 31)) if rng.random() < 0.3 else None,
            tags=sorted(rng.sample(TAGS, rng.randint(0, 3))),
            notes=[fake.sentence(nb_words=rng.randint(6, 18)) for _ in range(rng.choice([0, 0, 1, 1, 2]))],
            status=rng.choice(STATUSES), source=rng.choice(SOURCES),
            created_at=created, updated_at=created + timedelta(days=rng.randint(0, 400)),
            dirty=frozenset(dirty), written_name=written, shapes=frozenset(shapes),
            primary_phone=_phone(shape_rng) if "primary_phone" in shapes else None))
        if "long_note" in shapes:
            out[-1].notes.append(_long_note(shape_rng))
    return tuple(out)


def _shapes(uid: int, dirt: Dirt) -> set[str]:
    out = set()
    for name, offset in _SHAPE_OFFSET.items():
        rate = getattr(dirt, name)
        if rate > 0 and (uid + offset) % max(1, round(1 / rate)) == 0:
            out.add(name)
    return out


def _long_note(rng: random.Random) -> str:
    """A note of 10,200 to 11,000 characters, as some CRMs let an agent paste an e-mail thread."""
    size = rng.randint(10_200, 11_000)
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(NOTE_WORDS)
        words.append(word)
        length += len(word) + 1
    return (" ".join(words))[:size].rstrip() + "."


def people(n: int, seed: int = 0, dirt: Dirt = CLEAN) -> list[Person]:
    """``n`` people, the same for the same (n, seed, dirt). Fresh copies each call."""
    import copy
    return copy.deepcopy(list(_people(n, seed, dirt)))


def properties(persons: list[Person], seed: int = 0, share: float = 0.4) -> list[Property]:
    """Properties owned by roughly ``share`` of the given people."""
    fake = Faker("en_US")
    fake.seed_instance(seed + 7919)
    rng = random.Random(seed + 7919)
    out: list[Property] = []
    for p in persons:
        if rng.random() >= share:
            continue
        a = _address(fake, rng, "home")
        out.append(Property(uid=len(out) + 1, street=a.street, city=a.city, state=a.state,
                            zip=a.zip, owner_uid=p.uid, bedrooms=rng.randint(1, 6),
                            bathrooms=rng.randint(1, 4), sqft=rng.randint(600, 6000),
                            list_price=rng.randrange(90_000, 2_500_000, 1000),
                            tags=sorted(rng.sample(["rental", "flip", "primary", "vacant", "pool"],
                                                   rng.randint(0, 2)))))
    return out
