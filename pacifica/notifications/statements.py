"""INSERT statements written once per shape and reused.

peewee writes a statement afresh for every query, and for a small insert
writing it costs more than running it.  The hot paths (events stored by
intake, subscriptions created) insert rows of the same few shapes over and
over, so the statement text is kept by shape: database type, model, columns
and number of rows; only the values change.
"""

from __future__ import annotations

from collections.abc import Sequence

from peewee import Field, Model

from .binding import DB

#: Statement texts by (database type, model, column names, number of rows, conflicts ignored).
_TEXTS: dict[tuple[type, type, tuple[str, ...], int, bool], str] = {}

#: Most rows a kept statement has: a larger insert is rare, and its writing costs little per row.
KEEP_UP_TO = 256


def insert(rows: Sequence[Model], ignore_conflicts: bool = False) -> int:
    """Insert model instances (all with the same fields set) in one statement; return how many went in.

    With ``ignore_conflicts`` a row that would break a unique constraint is
    skipped instead of failing the statement.  Fields left unset are left to
    the database, as ``Model.save`` leaves them.
    """
    model = type(rows[0])
    fields: list[Field] = [field for field in model._meta.sorted_fields if field.name in rows[0].__data__]
    shape = (type(DB.obj), model, tuple(field.name for field in fields), len(rows), ignore_conflicts)
    text = _TEXTS.get(shape)
    if text is None:
        query = model.insert_many([[None] * len(fields)] * len(rows), fields=fields).as_rowcount()
        text = (query.on_conflict_ignore() if ignore_conflicts else query).sql()[0]
        if len(rows) <= KEEP_UP_TO:
            _TEXTS[shape] = text
    params = [field.db_value(row.__data__[field.name]) for row in rows for field in fields]
    return DB.execute_sql(text, params).rowcount
