"""Six made-up export shapes of other CRMs (Google-, Outlook-, Salesforce-like, German,
Spanish, French, lower_snake), with seeded Faker rows, and what a person would say each
column holds (None: nothing a contact field should take)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable

from faker import Faker

Col = tuple[str, str | None, Callable[[Faker, int], str]]


def _phone(f: Faker, i: int) -> str:
    return f.numerify("(%##) %##-####")


def _state(f: Faker, i: int) -> str:
    return f.state_abbr(include_territories=False)


def _tags(sep: str) -> Callable[[Faker, int], str]:
    words = ["buyer", "seller", "investor", "sphere", "vip", "open house"]
    return lambda f, i: sep.join(f.random_elements(words, length=1 + i % 3, unique=True))


def _date(fmt: str) -> Callable[[Faker, int], str]:
    return lambda f, i: f.date_of_birth(minimum_age=25, maximum_age=80).strftime(fmt)


def _c(v: str) -> Callable[[Faker, int], str]:
    return lambda f, i: v


EXPORTS: dict[str, tuple[str, list[Col]]] = {
    "google": ("en_US", [
        ("Name", "full_name", lambda f, i: f"{f.first_name()} {f.last_name()}"),
        ("Given Name", "first_name", lambda f, i: f.first_name()),
        ("Additional Name", "middle_name", lambda f, i: f.first_name() if i % 3 == 0 else ""),
        ("Family Name", "last_name", lambda f, i: f.last_name()),
        ("Name Prefix", "salutation", lambda f, i: f.prefix()),
        ("E-mail 1 - Type", None, _c("* Home")),
        ("E-mail 1 - Value", "email", lambda f, i: f.email()),
        ("E-mail 2 - Value", "email2", lambda f, i: f.company_email() if i % 2 else ""),
        ("Phone 1 - Type", None, _c("Mobile")),
        ("Phone 1 - Value", "phone", _phone),
        ("Address 1 - Street", "street", lambda f, i: f.street_address()),
        ("Address 1 - City", "city", lambda f, i: f.city()),
        ("Address 1 - Region", "state", _state),
        ("Address 1 - Postal Code", "zip", lambda f, i: f.zipcode()),
        ("Address 1 - Country", "country", _c("United States")),
        ("Organization 1 - Name", "company", lambda f, i: f.company()),
        ("Birthday", "birthday", _date("%Y-%m-%d")),
        ("Group Membership", "tags", _tags(" ; ")),
        ("Notes", "notes", lambda f, i: f.sentence()),
    ]),
    "outlook": ("en_US", [
        ("Title", "salutation", lambda f, i: f.random_element(["Mr.", "Ms.", "Mrs.", "Dr."])),
        ("First Name", "first_name", lambda f, i: f.first_name()),
        ("Middle Name", "middle_name", lambda f, i: ""),
        ("Last Name", "last_name", lambda f, i: f.last_name()),
        ("Company", "company", lambda f, i: f.company()),
        ("Job Title", "title", lambda f, i: f.job()),
        ("E-mail Address", "email", lambda f, i: f.email()),
        ("E-mail 2 Address", "email2", lambda f, i: f.free_email() if i % 3 else ""),
        ("Mobile Phone", "phone_mobile", _phone),
        ("Home Phone", "phone_home", lambda f, i: _phone(f, i) if i % 2 else ""),
        ("Business Phone", "phone_work", _phone),
        ("Home Street", "street", lambda f, i: f.street_address()),
        ("Home City", "city", lambda f, i: f.city()),
        ("Home State", "state", _state),
        ("Home Postal Code", "zip", lambda f, i: f.zipcode()),
        ("Business Street", "work_street", lambda f, i: f.street_address()),
        ("Business City", "work_city", lambda f, i: f.city()),
        ("Business State", "work_state", _state),
        ("Business Postal Code", "work_zip", lambda f, i: f.zipcode_plus4()),
        ("Birthday", "birthday", _date("%m/%d/%Y")),
        ("Anniversary", "anniversary", _date("%m/%d/%Y")),
        ("Categories", "tags", _tags(";")),
        ("Notes", "notes", lambda f, i: f.sentence()),
        ("Web Page", "website", lambda f, i: f.url()),
    ]),
    "german": ("de_DE", [
        ("Kundennummer", "id", lambda f, i: f"K-{1000 + i}"),
        ("Anrede", "salutation", lambda f, i: f.random_element(["Herr", "Frau"])),
        ("Vorname", "first_name", lambda f, i: f.first_name()),
        ("Nachname", "last_name", lambda f, i: f.last_name()),
        ("E-Mail-Adresse", "email", lambda f, i: f.email()),
        ("Telefon (privat)", "phone_home", _phone),
        ("Handy", "phone_mobile", _phone),
        ("Telefon (geschäftlich)", "phone_work", lambda f, i: _phone(f, i) if i % 2 else ""),
        ("Firma", "company", lambda f, i: f.company()),
        ("Position", "title", lambda f, i: f.job()),
        ("Straße", "street", lambda f, i: f.street_address()),
        ("PLZ", "zip", lambda f, i: f"{10000 + i * 37:05d}"),
        ("Ort", "city", lambda f, i: f.city()),
        ("Bundesland", "state", lambda f, i: f.random_element(["California", "Texas", "New York", "Florida"])),
        ("Geburtstag", "birthday", _date("%d.%m.%Y")),
        ("Notizen", "notes", lambda f, i: f.sentence()),
        ("Gruppen", "tags", _tags(", ")),
        ("Quelle", "source", lambda f, i: f.random_element(["Website", "Empfehlung", "Messe"])),
        ("Erstellt am", None, _date("%d.%m.%Y")),
    ]),
    "spanish": ("es_ES", [
        ("Nombre", "first_name", lambda f, i: f.first_name()),
        ("Apellidos", "last_name", lambda f, i: f.last_name()),
        ("Correo electrónico", "email", lambda f, i: f.email()),
        ("Teléfono", "phone", _phone),
        ("Móvil", "phone_mobile", _phone),
        ("Empresa", "company", lambda f, i: f.company()),
        ("Cargo", "title", lambda f, i: f.job()),
        ("Dirección", "street", lambda f, i: f.street_address()),
        ("Ciudad", "city", lambda f, i: f.city()),
        ("Estado", "state", lambda f, i: f.random_element(["TX", "CA", "FL", "AZ", "NM"])),
        ("Código Postal", "zip", lambda f, i: f"{70000 + i * 13:05d}"),
        ("Fecha de nacimiento", "birthday", _date("%d/%m/%Y")),
        ("Etiquetas", "tags", _tags(", ")),
        ("Notas", "notes", lambda f, i: f.sentence()),
        ("Origen", "source", lambda f, i: f.random_element(["Web", "Referido", "Zillow"])),
    ]),
    "french": ("fr_FR", [
        ("Identifiant", "id", lambda f, i: str(700 + i)),
        ("Civilité", "salutation", lambda f, i: f.random_element(["M.", "Mme"])),
        ("Prénom", "first_name", lambda f, i: f.first_name()),
        ("Nom", "last_name", lambda f, i: f.last_name()),
        ("Courriel", "email", lambda f, i: f.email()),
        ("Téléphone portable", "phone_mobile", _phone),
        ("Téléphone travail", "phone_work", lambda f, i: _phone(f, i) if i % 2 else ""),
        ("Société", "company", lambda f, i: f.company()),
        ("Adresse", "street", lambda f, i: f.street_address()),
        ("Ville", "city", lambda f, i: f.city()),
        ("État", "state", lambda f, i: f.random_element(["LA", "ME", "VT", "NH"])),
        ("Code postal", "zip", lambda f, i: f"{3000 + i * 7:05d}"),
        ("Anniversaire", "birthday", _date("%d/%m/%Y")),
        ("Étiquettes", "tags", _tags(";")),
        ("Remarques", "notes", lambda f, i: f.sentence()),
        ("Statut", "status", lambda f, i: f.random_element(["Lead", "Client", "Prospect"])),
    ]),
    "salesforce": ("en_US", [
        ("Contact ID", "id", lambda f, i: f"003{i:012d}"),
        ("Salutation", "salutation", lambda f, i: f.prefix()),
        ("First Name", "first_name", lambda f, i: f.first_name()),
        ("Last Name", "last_name", lambda f, i: f.last_name()),
        ("Account Name", "company", lambda f, i: f.company()),
        ("Title", "title", lambda f, i: f.job()),
        ("Email", "email", lambda f, i: f.email()),
        ("Phone", "phone", _phone),
        ("Mobile", "phone_mobile", _phone),
        ("Home Phone", "phone_home", lambda f, i: _phone(f, i) if i % 4 else ""),
        ("Mailing Street", "street", lambda f, i: f.street_address()),
        ("Mailing City", "city", lambda f, i: f.city()),
        ("Mailing State/Province", "state", lambda f, i: f.state()),
        ("Mailing Zip/Postal Code", "zip", lambda f, i: f.zipcode()),
        ("Mailing Country", "country", _c("USA")),
        ("Birthdate", "birthday", _date("%m/%d/%Y")),
        ("Lead Source", "source", lambda f, i: f.random_element(["Web", "Referral", "Open House"])),
        ("Description", "notes", lambda f, i: f.sentence()),
        ("Contact Owner", None, lambda f, i: f.name()),
        ("Created Date", None, _date("%m/%d/%Y %I:%M %p")),
    ]),
    "snake": ("en_US", [
        ("id", "id", lambda f, i: str(i)),
        ("first_name", "first_name", lambda f, i: f.first_name()),
        ("last_name", "last_name", lambda f, i: f.last_name()),
        ("email", "email", lambda f, i: f.email()),
        ("alt_email", "email2", lambda f, i: f.free_email() if i % 2 else ""),
        ("phone_number", "phone", _phone),
        ("cell", "phone_mobile", _phone),
        ("company_name", "company", lambda f, i: f.company()),
        ("street_address", "street", lambda f, i: f.street_address()),
        ("city", "city", lambda f, i: f.city()),
        ("state", "state", _state),
        ("zip_code", "zip", lambda f, i: f.zipcode()),
        ("dob", "birthday", _date("%Y-%m-%d")),
        ("tags", "tags", _tags(",")),
        ("notes", "notes", lambda f, i: f.sentence()),
        ("lead_status", "status", lambda f, i: f.random_element(["Lead", "Client", "Past Client"])),
        ("lead_score", None, lambda f, i: str(i % 100)),
    ]),
    "hubspot": ("en_US", [
        ("Record ID", "id", lambda f, i: str(51000 + i)),
        ("First name", "first_name", lambda f, i: f.first_name()),
        ("Last name", "last_name", lambda f, i: f.last_name()),
        ("Email", "email", lambda f, i: f.email()),
        ("Phone Number", "phone", _phone),
        ("Mobile Phone Number", "phone_mobile", lambda f, i: _phone(f, i) if i % 2 else ""),
        ("Street Address", "street", lambda f, i: f.street_address()),
        ("City", "city", lambda f, i: f.city()),
        ("State/Region", "state", _state),
        ("Postal Code", "zip", lambda f, i: f.zipcode()),
        ("Company Name", "company", lambda f, i: f.company()),
        ("Job Title", "title", lambda f, i: f.job()),
        ("Lifecycle Stage", "status", lambda f, i: f.random_element(["lead", "customer", "subscriber"])),
        ("Contact owner", None, lambda f, i: f.name()),
        ("Create Date", None, _date("%Y-%m-%d %H:%M")),
    ]),
    "italian": ("it_IT", [
        ("Nome", "first_name", lambda f, i: f.first_name()),
        ("Cognome", "last_name", lambda f, i: f.last_name()),
        ("Email", "email", lambda f, i: f.email()),
        ("Telefono cellulare", "phone_mobile", _phone),
        ("Indirizzo", "street", lambda f, i: f.street_address()),
        ("Città", "city", lambda f, i: f.city()),
        ("CAP", "zip", lambda f, i: f"{33000 + i * 11:05d}"),
        ("Provincia", "state", lambda f, i: f.random_element(["FL", "NJ", "NY"])),
        ("Data di nascita", "birthday", _date("%d/%m/%Y")),
        ("Note", "notes", lambda f, i: f.sentence()),
    ]),
}


def rows(name: str, n: int = 60, seed: int = 21) -> tuple[list[str], list[dict[str, str]]]:
    locale, cols = EXPORTS[name]
    fake = Faker(locale)
    fake.seed_instance(seed)
    header = [c[0] for c in cols]
    return header, [{h: gen(fake, i) for h, _, gen in cols} for i in range(1, n + 1)]


def truth(name: str) -> dict[str, str | None]:
    return {h: concept for h, concept, _ in EXPORTS[name][1]}


def write(path: Path, name: str, n: int = 60, *, delimiter: str = ",", encoding: str = "utf-8") -> Path:
    header, data = rows(name, n)
    with open(path, "w", newline="", encoding=encoding) as fh:
        w = csv.DictWriter(fh, fieldnames=header, delimiter=delimiter)
        w.writeheader()
        w.writerows(data)
    return path


def as_records(name: str, n: int = 60) -> list[dict[str, Any]]:
    return rows(name, n)[1]
