"""crm-migrator: move a real-estate team's CRM data from one system to another, once,
with nothing lost and nothing doubled."""
__version__ = "0.1.0"
