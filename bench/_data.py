"""Fast synthetic CSV exports for benchmarks (no Faker: millions of rows in seconds)."""
from __future__ import annotations

import csv
from pathlib import Path

HEADER = ["id", "First Name", "Last Name", "Email", "Phone", "Street", "City", "State", "Zip",
          "Tags", "Status", "Birthday"]
FIRST = ["James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "José", "Zoë"]
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Muñoz", "O'Brien"]
STATES = ["CA", "Texas", "NY", "florida", "WA", "Ohio", "IL", "GA", "NC", "AZ"]


def write_contacts_csv(path: Path, n: int) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(1, n + 1):
            f, l = FIRST[i % 10], LAST[(i // 10) % 10]
            w.writerow([i, f, l, f" {f}.{l}{i}@Example.com ".lower(), f"(415) 55{i % 10}-{i % 10000:04d}",
                        f"{i} Main St", "Springfield", STATES[i % 10], f"{10000 + i % 89999:05d}",
                        "buyer, vip" if i % 3 else "seller", ["Lead", "Client", "Past Client"][i % 3],
                        f"19{50 + i % 50}-0{1 + i % 9}-1{i % 9}"])
    return path


MAPPING = """\
source: csv
target: jsonl
streams:
  contacts:
    match_on: [email]
    fields:
      first_name: {path: First Name, transform: [strip, title]}
      last_name: {path: Last Name, transform: [strip]}
      email: {path: Email, transform: [strip, lower]}
      phone: {path: Phone, transform: [phone_e164]}
      address: {template: "{Street}, {City}, {State} {Zip}"}
      city: City
      state: {path: State, transform: [state_abbrev]}
      zip: {path: Zip, transform: [zip5]}
      tags: {path: Tags, transform: [split, unique]}
      status: {path: Status, map: {Lead: new_lead, Client: active, Past Client: active}, default: new_lead}
      birthday: {path: Birthday, transform: [{date: {format: "%d/%m/%Y"}}]}
      source: {value: "CSV import"}
"""


def write_job(root: Path, rows: int, concurrency: int = 8) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_contacts_csv(root / "contacts.csv", rows)
    (root / "mapping.yaml").write_text(MAPPING)
    (root / "job.yaml").write_text(f"""name: bench
source: {{system: csv, path: contacts.csv, id_column: id}}
target: {{system: jsonl, path: out.jsonl}}
mapping: mapping.yaml
checkpoint: bench.ckpt.sqlite
reports: reports
concurrency: {concurrency}
""")
    return root / "job.yaml"


def write_contacts_jsonl(path: Path, n: int, seed: int = 1) -> Path:
    """``n`` seeded people as JSON lines with the generic export's columns (what
    mappings/csv-to-rei.yaml reads), empty values left out as JSON exports do.

    Seeded (Faker), not synthetic: every record is valid for REI Software, so a benchmark
    counts writes, not refusals. About 1 s per 1,000 rows; meant for sizes up to ~10k."""
    import orjson

    from migrator.sandbox.data import CLEAN, people
    from migrator.sandbox.exports import GENERIC_COLUMNS, generic_row

    with open(path, "wb") as fh:
        for p in people(n, seed, CLEAN):
            fh.write(orjson.dumps({k: v for k, v in zip(GENERIC_COLUMNS, generic_row(p)) if v}) + b"\n")
    return path
