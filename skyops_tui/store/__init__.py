"""The durable state store (SQLite via sqlite-utils): schema, migrations, the write path
the engine persists through, and the read queries the screens and commands use."""

from .db import Store
from .records import ActionRecord, EventRecord, TransactionRecord
from .schema import SCHEMA_VERSION, SchemaTooNew, StoreError

__all__ = [
    "SCHEMA_VERSION",
    "ActionRecord",
    "EventRecord",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "TransactionRecord",
]
