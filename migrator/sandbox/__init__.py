"""Faithful simulators of the five CRM APIs, served on loopback (see ``server.py``).

Nothing but the CLI and the tests import this package, and it imports no connector."""
