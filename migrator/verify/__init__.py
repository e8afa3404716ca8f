"""``migrator verify``: read the target back and prove what it holds (``runner``), by a
pure comparison of what was sent with what is held (``compare``), reported as JSON, a
drift CSV and a summary (``output``)."""
from .runner import VerifyOutcome, verify, verify_job

__all__ = ["VerifyOutcome", "verify", "verify_job"]
