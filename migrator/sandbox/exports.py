"""CSV exports as users get them from a CRM's UI, written from seeded people.

Realeflow's API returns only the 25 newest records and Brokerkit's has no read
endpoint, so their users migrate from a CSV export. No vendor publishes its export
columns; these follow the field labels each UI shows (the "field name in the user
interface" column of Brokerkit's doc, the parameter descriptions of Realeflow's doc).
The generic ``csv`` shape is the common "contacts.csv" most CRMs can produce.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Iterable

from .data import Person

REALEFLOW_COLUMNS = ["Contact ID", "Full Name", "Email", "Company Name", "Phone", "Phone Type",
                     "Lead Source", "Address", "City", "State", "Zip Code", "Contact Type", "Tags",
                     "Notes", "Created"]
BROKERKIT_COLUMNS = ["ID", "First Name", "Last Name", "Email (Main)", "Cell Phone", "Other Phone",
                     "Office Phone", "Birthday", "Status", "Bucket", "Source", "Company Name",
                     "Home address", "Home City", "Home State", "Home zip", "Office address",
                     "Office city", "Office state", "Office zip", "Rating", "Production Label",
                     "Agent ID", "Referrer Notes", "Tags"]
GENERIC_COLUMNS = ["id", "First Name", "Last Name", "Email", "Email 2", "Mobile Phone", "Home Phone",
                   "Work Phone", "Company", "Title", "Street", "City", "State", "Zip", "Work Street",
                   "Work City", "Work State", "Work Zip", "Birthday", "Anniversary", "Tags", "Notes",
                   "Status", "Source"]

BROKERKIT_STATUS = {"Suspect": "New Lead", "Prospect": "Contact Attempt", "Lead": "Contact Made",
                    "Client": "Active", "Past Client": "Onboarding"}


def _phone(p: Person, kind: str) -> str:
    return next((n for k, n in p.phones if k == kind), "")


def _addr(p: Person, kind: str):
    return next((a for a in p.addresses if a.kind == kind), None)


def realeflow_row(p: Person) -> list[str]:
    a = p.addresses[0]
    phone_kind, phone = (p.phones[0] if p.phones else ("", ""))
    return [str(5000 + p.uid), p.full_name, p.email or "", p.company or "", phone,
            {"mobile": "Mobile", "home": "Home", "work": "Work"}.get(phone_kind, ""), p.source,
            a.street, a.city, a.state, a.zip,
            "Seller" if "seller" in p.tags else "Buyer", ", ".join(p.tags), " | ".join(p.notes),
            p.created_at.strftime("%m/%d/%Y %I:%M %p")]


def brokerkit_row(p: Person) -> list[str]:
    home, work = _addr(p, "home"), _addr(p, "work")
    return [str(9000 + p.uid), p.first_name, p.last_name, p.email or "", _phone(p, "mobile"),
            _phone(p, "home"), _phone(p, "work"),
            p.birthday.strftime("%m/%d/%Y") if p.birthday else "", BROKERKIT_STATUS[p.status],
            "Normal", p.source, p.company or "",
            home.street if home else "", home.city if home else "", home.state if home else "",
            home.zip if home else "", work.street if work else "", work.city if work else "",
            work.state if work else "", work.zip if work else "", str(4 + p.uid % 7),
            ["Mega", "Super", "Mid", "Low", "New"][p.uid % 5], f"A{p.uid:06d}",
            " | ".join(p.notes), ", ".join(p.tags)]


def generic_row(p: Person) -> list[str]:
    home, work = _addr(p, "home"), _addr(p, "work")
    emails = [e for _, e in p.emails] + ["", ""]
    return [str(p.uid), p.first_name, p.last_name, emails[0], emails[1], _phone(p, "mobile"),
            _phone(p, "home"), _phone(p, "work"), p.company or "", p.title or "",
            home.street if home else "", home.city if home else "", home.state if home else "",
            home.zip if home else "", work.street if work else "", work.city if work else "",
            work.state if work else "", work.zip if work else "",
            p.birthday.isoformat() if p.birthday else "",
            p.anniversary.isoformat() if p.anniversary else "", ", ".join(p.tags),
            " | ".join(p.notes), p.status, p.source]


EXPORTS: dict[str, tuple[list[str], Callable[[Person], list[str]], str]] = {
    "realeflow-csv": (REALEFLOW_COLUMNS, realeflow_row, "Contact ID"),
    "brokerkit-csv": (BROKERKIT_COLUMNS, brokerkit_row, "ID"),
    "csv": (GENERIC_COLUMNS, generic_row, "id"),
}


def write_export(kind: str, path: Path, persons: Iterable[Person]) -> Path:
    """Write ``persons`` as the ``kind`` export; returns the path."""
    columns, row, _ = EXPORTS[kind]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for p in persons:
            w.writerow(row(p))
    return path


def id_column(kind: str) -> str:
    return EXPORTS[kind][2]
