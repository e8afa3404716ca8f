"""A mapping proposed from any CRM's export: what each column means, and where it goes.

Most teams leave a CRM this tool has no connector for, with a CSV from its UI. Its
headers are in the vendor's words and often in the user's language ("E-mail Address",
"Cell", "Nachname", "Courriel"), so each column is read twice: by its name, against
synonyms in several languages, and by what its values look like (e-mails, phones,
dates, US states, ZIP codes, full names, lists). Both readings give a *concept* (first
name, mobile phone, home ZIP …); a per-target table then says which target field a
concept fills and with which transforms. Pure: no I/O, the same input gives the same
proposal, so a test can measure it and a user can rerun it.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import phonenumbers
from dateutil import parser as dateparser
from email_validator import EmailNotValidError, validate_email
from nameparser import HumanName

from .transforms import TransformError, build_transform

__all__ = ["Choice", "ColumnGuess", "Proposal", "classify", "propose", "target_stream", "CONCEPTS"]

# What a column can mean. Address parts come twice: home (the unqualified one) and work.
CONCEPTS = ("id", "first_name", "middle_name", "last_name", "full_name", "salutation",
            "email", "email2", "phone", "phone2", "phone_mobile", "phone_home", "phone_work",
            "company", "title", "street", "city", "state", "zip", "country",
            "work_street", "work_city", "work_state", "work_zip", "work_country",
            "birthday", "anniversary", "tags", "notes", "status", "source", "website")

# Header words, normalised (lower case, no accents, letters and digits only), per concept.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "id": ("id", "contactid", "recordid", "externalid", "uid", "contactnumber", "kontaktid",
           "kundennummer", "identifiant", "identificador", "leadid", "personid"),
    "first_name": ("firstname", "first", "givenname", "forename", "fname", "vorname", "prenom",
                   "nombre", "nombrepila", "primernombre", "nome"),
    "middle_name": ("middlename", "middle", "additionalname", "secondname", "zweitname",
                    "deuxiemeprenom", "segundonombre"),
    "last_name": ("lastname", "last", "surname", "familyname", "lname", "nachname", "familienname",
                  "nom", "nomdefamille", "apellido", "apellidos", "primerapellido", "cognome"),
    "full_name": ("name", "fullname", "contactname", "displayname", "contact", "nomcomplet",
                  "nombrecompleto", "vollstandigername", "kontaktname", "leadname"),
    "salutation": ("salutation", "prefix", "nameprefix", "anrede", "civilite", "tratamiento",
                   "saludo"),
    "email": ("email", "emailaddress", "mail", "email1", "primaryemail", "emailmain", "emailadresse",
              "courriel", "adresseemail", "adressecourriel", "correo", "correoelectronico",
              "emailprincipal", "mainemail", "emailhome", "personalemail"),
    "email2": ("email2", "email2address", "secondaryemail", "otheremail", "alternateemail",
               "altemail", "emailadresse2", "courriel2", "correo2", "emailwork", "workemail",
               "businessemail", "email3"),
    "phone": ("phone", "telephone", "telefon", "telefono", "tel", "phonenumber", "primaryphone",
              "phone1", "telefonnummer", "numerodetelephone", "numero", "mainphone", "contactphone"),
    "phone2": ("phone2", "otherphone", "alternatephone", "phone3", "telefon2", "telephone2",
               "telefono2", "additionalphone"),
    "phone_mobile": ("mobile", "mobilephone", "cell", "cellphone", "cellular", "mobil", "mobiltelefon",
                     "handy", "portable", "telephoneportable", "telephonemobile", "movil", "celular",
                     "telefonomovil", "telefonocelular", "mobilenumber", "cellnumber", "mobilnummer",
                     "cellulare", "telefonocellulare"),
    "phone_home": ("homephone", "phonehome", "privatephone", "telefonprivat", "privattelefon",
                   "telephonedomicile", "telephoneperso", "telefonocasa", "telefonoparticular",
                   "telefonodecasa", "residencephone", "telefonofijo", "festnetz"),
    "phone_work": ("workphone", "businessphone", "officephone", "phonework", "phonebusiness",
                   "telefongeschaftlich", "telefonbuero", "telefonburo", "geschaftlichestelefon",
                   "telephonetravail", "telephonebureau", "telephoneprofessionnel", "telefonotrabajo",
                   "telefonooficina", "officenumber", "directline"),
    "company": ("company", "companyname", "organization", "organisation", "organizationname",
                "firma", "unternehmen", "firmenname", "entreprise", "societe", "empresa", "compania",
                "account", "accountname", "employer", "brokerage", "currentlyat"),
    "title": ("title", "jobtitle", "position", "role", "beruf", "berufsbezeichnung", "poste",
              "fonction", "cargo", "puesto", "occupation"),
    "street": ("street", "address", "address1", "streetaddress", "addressline1", "street1",
               "strasse", "strassehausnummer", "anschrift", "adresse", "rue", "direccion", "calle",
               "domicilio", "mailingstreet", "homeaddress", "mailingaddress", "propertyaddress", "indirizzo",
               "calleynumero"),
    "city": ("city", "town", "locality", "ort", "stadt", "wohnort", "ville", "ciudad", "localidad",
             "poblacion", "mailingcity", "citta"),
    "state": ("state", "region", "province", "stateprovince", "stateregion", "bundesland", "provincia",
              "estado", "etat", "mailingstate", "st"),
    "zip": ("zip", "zipcode", "postalcode", "postcode", "plz", "postleitzahl", "codepostal", "cp",
            "codigopostal", "mailingzip", "mailingpostalcode", "zippostalcode", "cap"),
    "country": ("country", "land", "pays", "pais", "countryregion", "mailingcountry"),
    "birthday": ("birthday", "birthdate", "dateofbirth", "dob", "geburtstag", "geburtsdatum",
                 "anniversaire", "datedenaissance", "fechadenacimiento", "cumpleanos", "nacimiento",
                 "fechacumpleanos", "datanascita", "compleanno"),
    "anniversary": ("anniversary", "jahrestag", "hochzeitstag", "weddinganniversary",
                    "homeanniversary", "homepurchaseanniversary", "closinganniversary",
                    "anniversairedemariage", "aniversario", "closedate"),
    "tags": ("tags", "tag", "labels", "label", "groups", "groupmembership", "categories", "category",
             "schlagworte", "schlagworter", "etiketten", "kategorien", "gruppen", "etiquettes",
             "groupes", "etiquetas", "grupos", "keywords"),
    "notes": ("notes", "note", "comments", "comment", "notizen", "notiz", "bemerkungen", "bemerkung",
              "remarques", "commentaires", "notas", "nota", "comentarios", "observaciones",
              "description", "referrernotes", "memo"),
    "status": ("status", "stage", "leadstatus", "contactstatus", "lifecyclestage", "pipelinestage",
               "statut", "estatus", "situacion", "etape"),
    "source": ("source", "leadsource", "origin", "quelle", "herkunft", "leadquelle", "origine",
               "fuente", "origen", "referredby", "referral", "referralsource", "contactsource"),
    "website": ("website", "web", "url", "homepage", "webpage", "webseite", "internetseite",
                "siteweb", "sitioweb", "paginaweb"),
}

# Words that make an address part (or a phone, or an e-mail) the work one, or the home one.
_WORK_WORDS = ("work", "business", "office", "company", "geschaftlich", "geschaft", "buro", "buero",
               "arbeit", "firma", "travail", "bureau", "professionnel", "pro", "trabajo", "oficina",
               "empresa", "laboral")
_HOME_WORDS = ("home", "private", "personal", "privat", "privee", "domicile", "perso", "casa",
               "particular", "residence", "mailing", "main", "primary")
_PART_CONCEPTS = ("street", "city", "state", "zip", "country")
_NOISE = ("value", "address", "1", "0")  # "E-mail 1 - Value", "Home Address Street"
# Words that say nothing of the meaning: "Mobile Phone Number", "Teléfono de la oficina".
_FILLER = ("number", "nummer", "numero", "no", "nr", "num", "de", "del", "la", "le", "di", "y", "of",
           "the", "du", "des", "der", "die", "das", "el")

_SYN_INDEX = {word: concept for concept, words in _SYNONYMS.items() for word in words}
_SALUTATIONS = {"mr", "mrs", "ms", "miss", "dr", "prof", "herr", "frau", "m", "mme", "mlle", "sr",
                "sra", "srta", "don", "dona", "mx"}
_STATE = build_transform("state_abbrev")
_ZIP = build_transform("zip5")
_SEPARATORS = (";", ",", "|")


def _words(header: str) -> list[str]:
    """Lower-case ASCII words of a header: "E-mail Adresse (Privat)" -> e, mail, adresse, privat;
    camelCase and snake_case split alike ("MailingPostalCode", "first_name")."""
    text = header.replace("ß", "ss").replace("ẞ", "SS")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).lower()
    return [w for w in re.split(r"[^a-z0-9]+", text) if w]


def _key(words: Iterable[str]) -> str:
    return "".join(words)


@dataclass(frozen=True)
class ColumnGuess:
    """What one column was read as: its concept, why, and how sure (high, medium, low)."""

    column: str
    concept: str | None
    why: str
    confidence: str
    shape: str | None = None           # what the values look like, when they look like one thing
    separator: str | None = None       # the list separator its values use
    dayfirst: bool = False             # dates written day first (31.12.1980)


@dataclass(frozen=True)
class Choice:
    """One target field: the column(s) it is read from, the transforms, why, how sure."""

    target: str
    columns: tuple[str, ...]
    path: str
    transforms: tuple[Any, ...]
    why: str
    confidence: str
    on_error_drop: bool = False
    extra: dict[str, Any] = field(default_factory=dict)   # map/default for enum fields


@dataclass(frozen=True)
class Proposal:
    """The whole guess: field choices, the columns nothing reads, the target fields left empty."""

    target: str
    stream: str
    target_stream: str
    id_column: str | None
    choices: tuple[Choice, ...]
    columns: tuple[ColumnGuess, ...]
    unmapped: tuple[ColumnGuess, ...]
    empty_fields: tuple[str, ...]
    match_on: tuple[str, ...] = ()


# ---- reading values --------------------------------------------------------------------------

def _is_email(v: str) -> bool:
    if "@" not in v:
        return False
    try:
        validate_email(v, check_deliverability=False)
        return True
    except EmailNotValidError:
        return False


def _is_phone(v: str) -> bool:
    digits = sum(c.isdigit() for c in v)
    if digits < 7 or any(c.isalpha() for c in v.replace("ext", "").replace("x", "")):
        return False
    try:
        return phonenumbers.is_possible_number(phonenumbers.parse(v, "US"))
    except phonenumbers.NumberParseException:
        return False


_DATE_SHAPE = re.compile(r"\d{1,4}[./\-]\d{1,2}[./\-]\d{1,4}|\d{1,2}\.? [A-Za-z]+\.? \d{4}|[A-Za-z]+\.? \d{1,2},? \d{4}")


def _is_date(v: str) -> bool:
    if not _DATE_SHAPE.fullmatch(v.strip()):
        return False
    try:
        dateparser.parse(v, dayfirst=True)
        return True
    except (ValueError, OverflowError):
        return False


def _day_first(values: Sequence[str]) -> bool:
    """True when some date can only be day-first (31/12/1980), or dots separate it (German)."""
    for v in values:
        m = re.match(r"\s*(\d{1,2})[./\-](\d{1,2})[./\-]\d{2,4}", v)
        if m and (int(m[1]) > 12 or "." in v):
            return True
    return False


def _is_state(v: str) -> bool:
    if not v.strip() or any(c.isdigit() for c in v):
        return False
    try:
        _STATE(v)
        return True
    except TransformError:
        return False


def _is_zip(v: str) -> bool:
    try:
        return _ZIP(v) is not None and len(v.strip()) >= 5
    except TransformError:
        return False


def _is_full_name(v: str) -> bool:
    words = v.split()
    if not 2 <= len(words) <= 4 or any(c.isdigit() or c in "@/;|" for c in v):
        return False
    name = HumanName(v)
    return bool(name.first and name.last)


def _list_separator(values: Sequence[str]) -> str | None:
    """The separator of short items, when a good share of values hold several of them."""
    for sep in _SEPARATORS:
        several = [v for v in values if sep in v]
        if several and len(several) * 3 >= len(values):
            items = [i.strip() for v in several for i in v.split(sep)]
            if all(0 < len(i) <= 30 and not any(c.isdigit() for c in i) for i in items):
                return sep
    return None


_SHAPES = (("email", _is_email), ("phone", _is_phone), ("date", _is_date), ("zip", _is_zip),
           ("state", _is_state), ("full_name", _is_full_name))


def _shape(values: Sequence[str]) -> str | None:
    """What at least 80% of the non-empty sample values look like."""
    if not values:
        return None
    for name, test in _SHAPES:
        if sum(1 for v in values if test(v)) * 5 >= len(values) * 4:
            return name
    return None


# What a concept's values should look like; a name match whose values disagree is doubted.
_EXPECTED = {"email": "email", "email2": "email", "phone": "phone", "phone2": "phone",
             "phone_mobile": "phone", "phone_home": "phone", "phone_work": "phone",
             "birthday": "date", "anniversary": "date", "zip": "zip", "work_zip": "zip",
             "state": "state", "work_state": "state"}
_SHAPE_CONCEPT = {"email": "email", "phone": "phone"}


def _by_name(header: str) -> str | None:
    """The concept a header names: the whole header as a synonym, else without its home/work
    qualifier, its noise ("1 - Value") and its filler words ("Number", "de la")."""
    words = _words(header)
    if not words:
        return None
    whole = _key(words)
    if whole in _SYN_INDEX:
        return _SYN_INDEX[whole]
    qualifier = None
    rest = []
    for w in words:
        if w in _WORK_WORDS and qualifier is None:
            qualifier = "work"
        elif w in _HOME_WORDS and qualifier is None:
            qualifier = "home"
        else:
            rest.append(w)
    plain = [w for w in rest if w not in _FILLER]
    for cut in (rest, [w for w in rest if w not in _NOISE], plain, [w for w in plain if w not in _NOISE]):
        if not cut:
            continue
        key = _key(cut)
        concept = _SYN_INDEX.get(key)
        if concept is None:
            continue
        if qualifier == "work":
            if concept in _PART_CONCEPTS:
                concept = "work_" + concept
            elif concept in ("phone", "phone2"):
                concept = "phone_work"
            elif concept in ("email", "email2"):
                concept = "email2"
            elif concept in ("street",):
                concept = "work_street"
        elif qualifier == "home" and concept in ("phone", "phone2"):
            concept = "phone_home"
        return concept
    return None


def classify(header: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[ColumnGuess]:
    """What each column means, from its name and its values. Columns that name the same
    concept twice (two "E-mail" columns) take the next free slot (email2, phone2), else stay
    unmapped; a concept is never read from two columns."""
    taken: set[str] = set()
    pending: list[tuple[str, list[str], str | None, str | None]] = []
    for col in header:
        values = [str(r.get(col)).strip() for r in rows
                  if r.get(col) not in (None, "") and not isinstance(r.get(col), (dict, list))
                  and str(r.get(col)).strip()]
        # a column with no name cannot be named by a path: it is listed, never mapped
        pending.append((col, values, _shape(values) if col.strip() else None, _by_name(col)))
    # name matches first (in column order), then shapes fill what is left
    out: dict[str, ColumnGuess] = {}
    for col, values, shape, concept in pending:
        if concept is None:
            continue
        if concept == "title" and values and sum(v.lower().strip(".") in _SALUTATIONS for v in values) * 2 > len(values):
            concept = "salutation"
        expected = _EXPECTED.get(concept)
        if expected and shape and shape != expected:
            if shape in _SHAPE_CONCEPT:
                concept = _SHAPE_CONCEPT[shape]
                why = f"its values look like {shape}s (its name '{col}' says otherwise)"
                conf = "medium"
            else:
                out[col] = ColumnGuess(col, None, f"its name '{col}' suggests {concept}, but its values "
                                       f"look like {shape}s", "low", shape)
                continue
        elif expected and not values:
            why, conf = f"its name '{col}' (no values in the sample to confirm it)", "medium"
        elif expected:
            why, conf = f"its name '{col}' and its values ({expected}s)", "high"
        else:
            why, conf = f"its name '{col}'", "high"
        concept = _free(concept, taken)
        if concept is None:
            out[col] = ColumnGuess(col, None, f"its name '{col}' names a field another column already "
                                   "fills", "low", shape)
            continue
        taken.add(concept)
        out[col] = _guess(col, concept, why, conf, shape, values)
    for col, values, shape, concept in pending:
        if col in out:
            continue
        if shape in _SHAPE_CONCEPT:
            c = _free(_SHAPE_CONCEPT[shape], taken)
            if c is not None:
                taken.add(c)
                out[col] = _guess(col, c, f"its values look like {shape}s (its name '{col}' says nothing "
                                  "known)", "low", shape, values)
                continue
        why = (f"its values look like {shape.replace('_', ' ')}s, but its name '{col}' does not say "
               "whose" if shape else "neither its name nor its values say what it holds")
        out[col] = ColumnGuess(col, None, why, "low", shape)
    return [out[col] for col in header]


_NEXT = {"email": ("email", "email2"), "email2": ("email2",),
         "phone": ("phone", "phone2"), "phone2": ("phone2",)}


def _free(concept: str, taken: set[str]) -> str | None:
    for c in _NEXT.get(concept, (concept,)):
        if c not in taken:
            return c
    return None


def _guess(col: str, concept: str, why: str, conf: str, shape: str | None,
           values: Sequence[str]) -> ColumnGuess:
    sep = _list_separator(values) if concept in ("tags",) else None
    if concept == "tags" and sep is None:
        sep = ";" if any(";" in v for v in values) else ","
    dayfirst = _day_first(values) if concept in ("birthday", "anniversary") else False
    return ColumnGuess(col, concept, why, conf, shape, sep, dayfirst)


# ---- per target ------------------------------------------------------------------------------

def _q(column: str) -> str:
    """A column name as a JMESPath: bare when it is a plain identifier, else quoted."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", column):
        return column
    return '"' + column.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(columns: Sequence[str]) -> str:
    return "[" + ", ".join(_q(c) for c in columns) + "]"


# concept -> transforms for a plain one-column field; formats come from the target's schema
_PLAIN = {"email": ["strip", "lower"], "email2": ["strip", "lower"], "state": ["state_abbrev"],
          "work_state": ["state_abbrev"]}

# Per target: field -> concepts it is read from, in order of preference. The first concept
# present wins; a list field (phones) takes the first non-empty of several columns.
_TABLES: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "rei": ("contacts", {
        "firstName": ("first_name",), "lastName": ("last_name",), "email": ("email",),
        "phone": ("phone_mobile", "phone", "phone_home", "phone_work", "phone2"),
        "companyName": ("company",), "address1": ("street",), "city": ("city",), "state": ("state",),
        "postalCode": ("zip",), "dateOfBirth": ("birthday",),
        "source": ("source",), "website": ("website",), "tags": ("tags",)}),
    "brokerkit": ("leads", {
        "first_name": ("first_name",), "last_name": ("last_name",), "email": ("email",),
        "phone": ("phone_mobile", "phone"), "other_phone": ("phone_home", "phone2"),
        "office_phone": ("phone_work",), "birthday": ("birthday",), "currently_at": ("company",),
        "source": ("source",), "note": ("notes",), "alt_address": ("street",), "alt_city": ("city",),
        "alt_state": ("state",), "alt_zip": ("zip",), "office_address": ("work_street",),
        "office_city": ("work_city",), "office_state": ("work_state",), "office_zip": ("work_zip",)}),
    "spark": ("contacts", {
        "GivenName": ("first_name",), "MiddleName": ("middle_name",), "FamilyName": ("last_name",),
        "Salutation": ("salutation",), "PrimaryEmail": ("email",), "SecondaryEmails": ("email2",),
        "PrimaryPhoneNumber": ("phone_mobile", "phone", "phone_home", "phone_work"),
        "MobilePhoneNumber": ("phone_mobile",), "HomePhoneNumber": ("phone_home",),
        "WorkPhoneNumber": ("phone_work",), "OtherPhoneNumber": ("phone2",),
        "HomeStreetAddress": ("street",), "HomeLocality": ("city",), "HomeRegion": ("state",),
        "HomePostalCode": ("zip",), "WorkStreetAddress": ("work_street",), "WorkLocality": ("work_city",),
        "WorkRegion": ("work_state",), "WorkPostalCode": ("work_zip",), "Organization": ("company",),
        "Position": ("title",), "Birthday": ("birthday",), "Anniversary": ("anniversary",),
        "Status": ("status",), "ReferredBy": ("source",), "Tags": ("tags",), "Note": ("notes",)}),
    "realvolve": ("contacts", {
        "first_name": ("first_name",), "last_name": ("last_name",), "company": ("company",),
        "title": ("title",), "contact_source": ("source",), "work_email": ("email",),
        "home_email": ("email2",), "home_phone": ("phone_mobile", "phone", "phone_home"),
        "work_phone": ("phone_work",), "birth_date": ("birthday",),
        "home_purchase_anniversary": ("anniversary",), "tags": ("tags",), "notes": ("notes",)}),
    "realeflow": ("contacts", {
        "Email": ("email",), "CompanyName": ("company",),
        "Phone": ("phone_mobile", "phone", "phone_work", "phone_home"), "Source": ("source",),
        "Address": ("street",), "City": ("city",), "State": ("state",), "ZipCode": ("zip",),
        "Tags": ("tags",)}),
}

# Fields built from several concepts: (field, concepts, transforms).
_ADDRESS_LINES = {"realvolve": (("home_address", ("street", "city", "state", "zip")),
                                ("work_address", ("work_street", "work_city", "work_state", "work_zip")))}

# Enum fields: the usual CRM stage words -> the target's own (from the shipped csv-to-* mappings).
_STATUS = {
    "brokerkit": ("status", "new_lead", {
        "suspect": "new_lead", "prospect": "contact_attempt", "lead": "contact_made", "client": "active",
        "past client": "onboarding", "new": "new_lead", "new lead": "new_lead",
        "contact attempt": "contact_attempt", "contact made": "contact_made", "appt set": "appt_set",
        "needs evaluated": "needs_evaluated", "onboarding": "onboarding", "active": "active"}),
    "realvolve": ("contact_status_id", 3, {
        "suspect": 1, "prospect": 2, "lead": 3, "client": 4, "past client": 5}),
}

_PHONES = ("phone_mobile", "phone", "phone_home", "phone_work", "phone2")
_DATES = ("birthday", "anniversary")
_MATCH_ON = {"rei": ("email", "phone"), "brokerkit": ("email",), "spark": ("PrimaryEmail",)}


def target_stream(target: str) -> str:
    """The stream of ``target`` an export's contacts go to (Brokerkit: leads)."""
    return _TABLES.get(target, ("contacts", {}))[0]


def _file_fields() -> dict[str, tuple[str, ...]]:
    """A file target takes the concepts under their own names."""
    return {c: (c,) for c in CONCEPTS if c != "id"}


def propose(header: Sequence[str], rows: Sequence[dict[str, Any]], target: str,
            schema: Any = None) -> Proposal:
    """The proposed mapping of an export with ``header`` (and sample ``rows``) into
    ``target`` (a system name; ``schema`` its stream schema, None for a file target)."""
    guesses = classify(header, rows)
    by_concept = {g.concept: g for g in guesses if g.concept}
    stream, table = _TABLES.get(target, ("contacts", _file_fields()))
    file_target = target not in _TABLES
    fmt = {}
    names: list[str] = []
    if schema is not None and not file_target:
        for row in schema.describe():
            names.append(row["name"])
            fmt[row["name"]] = row.get("format") or ""
    used: set[str] = set()
    choices: list[Choice] = []

    def add(choice: Choice, cols: Iterable[str]) -> None:
        choices.append(choice)
        used.update(cols)

    has_parts = "first_name" in by_concept or "last_name" in by_concept
    full = by_concept.get("full_name")
    for name, concepts in table.items():
        if names and name not in names:
            continue
        present = [by_concept[c] for c in concepts if c in by_concept]
        if name in ("first_name", "firstName", "GivenName") and not present and full is not None:
            add(Choice(name, (full.column,), full.column, ("first_name",),
                       f"the first name split from {full.column!r} ({full.why})", full.confidence), [full.column])
            continue
        if name in ("last_name", "lastName", "FamilyName") and not present and full is not None:
            add(Choice(name, (full.column,), full.column, ("last_name",),
                       f"the last name split from {full.column!r} ({full.why})", full.confidence), [full.column])
            continue
        if not present:
            continue
        first = present[0]
        concept = first.concept or ""
        why, conf = first.why, first.confidence
        date_fmt = fmt.get(name, "")
        if concept in _PHONES and len(present) > 1:
            cols = tuple(g.column for g in present)
            tr: tuple[Any, ...] = ("first", "strip") if file_target else ("first", "phone_e164")
            add(Choice(name, cols, _list(cols), tr,
                       "the first non-empty of " + ", ".join(repr(c) for c in cols) + f" ({why})", conf,
                       on_error_drop=not file_target), cols)
            continue
        col = first.column
        if concept in _PHONES:
            tr = ("strip",) if file_target else ("phone_e164",)
        elif concept in _DATES:
            spec: dict[str, Any] = {"format": date_fmt[5:] if date_fmt.startswith("date:") else "%Y-%m-%d"}
            if first.dayfirst:
                spec["dayfirst"] = True
                why += "; day first (a date such as 31.12. says so)"
            tr = ({"date": spec},)
        elif concept == "tags":
            tr = ({"split": first.separator or ","}, "unique")
            why += f"; split on {first.separator or ','!r}"
        elif concept == "email2" and name == "SecondaryEmails":
            tr = ("strip", "lower", "drop_empty")
            add(Choice(name, (col,), _list([col]), tr, why, conf), [col])
            continue
        elif concept == "notes" and target == "realvolve":
            tr = ({"split": " | "},)
        elif concept == "zip" or concept == "work_zip":
            tr = ("zip5",) if fmt.get(name) == "zip5" else (("zip",) if not file_target else ("strip",))
        elif concept in ("state", "work_state") and (file_target or target == "spark"):
            tr = ("strip",)
        else:
            tr = tuple(_PLAIN.get(concept, ["strip"]))
        drop = concept in ("state", "work_state", "zip", "work_zip") and not file_target and target != "realeflow"
        if concept in _PHONES and target == "spark":
            drop = True
        add(Choice(name, (col,), col, tr, why, conf, on_error_drop=drop), [col])

    # Fields that join several columns.
    def parts_of(concepts: Sequence[str]) -> list[ColumnGuess]:
        return [by_concept[c] for c in concepts if c in by_concept]

    for name, concepts in _ADDRESS_LINES.get(target, ()):
        got = parts_of(concepts)
        if got:
            cols = [by_concept[c].column if c in by_concept else None for c in concepts]
            path = "[" + ", ".join(_q(c) if c else "null" for c in cols) + "]"
            add(Choice(name, tuple(g.column for g in got), path, ("join_address",),
                       "one line from " + ", ".join(repr(g.column) for g in got), _least(got)),
                [g.column for g in got])
    parts = parts_of(("first_name", "middle_name", "last_name")) if has_parts else []
    if target == "realeflow":
        if full is not None:
            add(Choice("FullName", (full.column,), full.column, ("strip",), full.why, full.confidence), [full.column])
        elif parts:
            cols = tuple(g.column for g in parts)
            add(Choice("FullName", cols, _list(cols), ("join_name",),
                       "joined from " + ", ".join(repr(c) for c in cols), _least(parts)), cols)
    if target == "spark":
        email = by_concept.get("email")
        tail = f" || [{_q(email.column)}]" if email else ""
        if parts:
            cols = tuple(g.column for g in parts)
            add(Choice("DisplayName", cols, _list(cols) + "[?@]" + tail, ("join_name", {"truncate": 75}),
                       "joined from " + ", ".join(repr(c) for c in cols) + (", else the e-mail" if email else ""),
                       _least(parts)), cols)
        elif full is not None:
            add(Choice("DisplayName", (full.column,), full.column, ("strip", {"truncate": 75}), full.why,
                       full.confidence), [full.column])
    if target in _STATUS and "status" in by_concept:
        g = by_concept["status"]
        fname, default, words = _STATUS[target]
        values = sorted({str(r.get(g.column)).strip() for r in rows if str(r.get(g.column) or "").strip()})
        table_ = {v: words[v.lower()] for v in values if v.lower() in words}
        unknown = [v for v in values if v.lower() not in words]
        why = g.why + (f"; values the table does not know ({', '.join(unknown[:5])}) become {default!r}"
                       if unknown else "")
        add(Choice(fname, (g.column,), g.column, (), why, "medium" if unknown else g.confidence,
                   extra={"map": table_ or dict(list(words.items())[:5]), "default": default}), [g.column])

    if target == "rei" and "country" in by_concept:
        g = by_concept["country"]
        values = sorted({str(r.get(g.column)).strip() for r in rows if str(r.get(g.column) or "").strip()})
        table_ = {v: _alpha2(v) for v in values if _alpha2(v)}
        unknown = [v for v in values if not _alpha2(v)]
        why = g.why + "; REI takes ISO 3166 alpha-2 codes" + (
            f"; values the table does not know ({', '.join(unknown[:5])}) are left out" if unknown else "")
        add(Choice("country", (g.column,), g.column, (), why, "medium" if unknown else g.confidence,
                   on_error_drop=True, extra={"map": table_ or {"United States": "US"}}), [g.column])
    id_guess = by_concept.get("id")
    id_column = id_guess.column if id_guess else None
    if id_column:
        used.add(id_column)
    unmapped = tuple(_left(g) for g in guesses if g.column not in used)
    chosen = {c.target for c in choices}
    empty = tuple(n for n in (names or []) if n not in chosen and not n.endswith("*"))
    match_on = tuple(m for m in _MATCH_ON.get(target, ()) if m in chosen)
    order = {n: i for i, n in enumerate(names or list(table))}
    choices.sort(key=lambda c: order.get(c.target, len(order)))
    return Proposal(target, "contacts", stream, id_column, tuple(choices), tuple(guesses), unmapped,
                    empty, match_on)


_US_NAMES = {"us", "usa", "u s", "u s a", "united states", "united states of america", "america",
             "etats unis", "estados unidos", "vereinigte staaten", "stati uniti"}


def _alpha2(value: str) -> str | None:
    """An ISO 3166 alpha-2 code for a country value: a code as it is, the US by its names."""
    words = " ".join(_words(value))
    if words in _US_NAMES:
        return "US"
    if len(value.strip()) == 2 and value.strip().isalpha():
        return value.strip().upper()
    return None


def _left(g: ColumnGuess) -> ColumnGuess:
    """An unread column, with why: the target has no field for what it holds, or nothing matched."""
    if g.concept is None:
        return g
    if g.concept == "full_name":
        why = f"{g.why}: a full name; the name is read from its parts instead"
    else:
        why = f"{g.why}: {g.concept.replace('_', ' ')}, which this target has no field for"
    return ColumnGuess(g.column, g.concept, why, g.confidence, g.shape, g.separator, g.dayfirst)


_RANK = {"high": 2, "medium": 1, "low": 0}


def _least(guesses: Sequence[ColumnGuess]) -> str:
    return min((g.confidence for g in guesses), key=_RANK.__getitem__)
