"""A model's hot one-row statements with their SQL built once: read a row by key (locked, if asked), insert
one, update one, without the ORM compiling each statement anew.

The ORM compiles a statement's SQL for every execution: a ``.get(pk=...)``, a ``.create()`` or a
``.filter(pk=...).update()`` costs 0.26-0.40 ms of CPU here against 0.07 for the statement itself, and a
chat message runs a dozen of them (BENCHMARKS.md section 14). These helpers build the SQL of each (model,
fields) shape once from the model's own metadata, prepare every value as the ORM does
(``Field.pre_save`` and ``Field.get_db_prep_save``: ``auto_now`` times, JSON, foreign keys), turn rows into
instances as a queryset does (``Model.from_db``, with the backend's and fields' converters, e.g. SQLite's
times), and run through :func:`core.prepared.fetch_all` (prepared on PostgreSQL where that is on; inside
Django's cursor wrapper, so query logging and ``CaptureQueriesContext`` see them). No signals are sent: use
them for models without ``post_save`` receivers. Column and table names come from model metadata, never from
a request.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from django.db import connection, models

from core import prepared

M = TypeVar("M", bound=models.Model)


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


@functools.cache
def _columns(model: type[models.Model]) -> tuple[tuple[models.Field, ...], str]:
    """The model's concrete fields and its select list."""
    fields = tuple(model._meta.concrete_fields)
    return fields, ", ".join(_q(f.column) for f in fields)


@functools.cache
def _converters(model: type[models.Model], vendor: str) -> tuple[tuple[int, tuple, Any], ...]:
    """Per column that needs them: (position, converters, expression), as the ORM's compiler applies them.
    ``vendor``: converters differ by backend (SQLite's times and decimals)."""
    out = []
    fields, _ = _columns(model)
    for i, field in enumerate(fields):
        expression = field.get_col(model._meta.db_table)
        found = tuple(connection.ops.get_db_converters(expression) + expression.get_db_converters(connection))
        if found:
            out.append((i, found, expression))
    return tuple(out)


def instance(model: type[M], row: tuple) -> M:
    """The instance of a row read with :func:`select_list`'s columns, as a queryset makes it."""
    return _instance(model, row)


def select_list(model: type[models.Model], alias: str) -> str:
    """The model's columns, each qualified by ``alias`` (a table or a ``WITH`` query of the statement), in
    the order :func:`instance` reads them."""
    return ", ".join(f"{alias}.{_q(f.column)}" for f in _columns(model)[0])


def column(model: type[models.Model], name: str) -> str:
    """The quoted column of field ``name`` (``pk``: the primary key)."""
    return _q(_field(model, name).column)


def table(model: type[models.Model]) -> str:
    return _q(model._meta.db_table)


def _instance(model: type[M], row: tuple) -> M:
    converters = _converters(model, connection.vendor)
    if converters:
        values = list(row)
        for i, found, expression in converters:
            for convert in found:
                values[i] = convert(values[i], expression, connection)
        row = tuple(values)
    fields, _ = _columns(model)
    return model.from_db(connection.alias, [f.attname for f in fields], row)


def _field(model: type[models.Model], name: str) -> models.Field:
    return model._meta.pk if name == "pk" else model._meta.get_field(name)


@functools.cache
def _select_sql(model: type[models.Model], keys: tuple[str, ...], lock: bool, vendor: str) -> str:
    fields, select = _columns(model)
    where = " AND ".join(f"{_q(_field(model, k).column)} = %s" for k in keys)
    sql = f"SELECT {select} FROM {_q(model._meta.db_table)} WHERE {where} LIMIT 1"  # noqa: S608 - metadata
    return sql + " FOR UPDATE" if lock and connection.features.has_select_for_update else sql


def row_get(model: type[M], *, lock: bool = False, **equal: Any) -> M | None:
    """The row whose fields equal ``equal`` (a key: the primary key, or fields under a unique constraint),
    or None; ``lock``: ``SELECT ... FOR UPDATE`` where the database has it (in a transaction)."""
    keys = tuple(equal)
    values = [_prep(_field(model, k), v) for k, v in equal.items()]
    rows = prepared.fetch_all(_select_sql(model, keys, lock, connection.vendor), values)
    return _instance(model, rows[0]) if rows else None


def _prep(field, value: Any) -> Any:
    if isinstance(value, models.Model):
        value = value.pk
    return field.get_db_prep_save(value, connection)


@functools.cache
def _insert_sql(model: type[models.Model], vendor: str) -> tuple[tuple[models.Field, ...], str]:
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key)
    columns = ", ".join(_q(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    pk = _q(model._meta.pk.column)
    table = _q(model._meta.db_table)
    return fields, f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING {pk}"  # noqa: S608 - metadata


@functools.cache
def insert_select(model: type[models.Model], vendor: str) -> tuple[str, str]:
    """The ``(columns, marks)`` of an ``INSERT INTO table (columns) SELECT marks FROM ... WHERE ...``: a row
    of ``model`` stored only where the statement's own condition holds, its values those of
    :func:`insert_values`, each mark typed (a parameter in a select list has no column to take its type
    from)."""
    fields = _insert_sql(model, vendor)[0]
    columns = ", ".join(_q(f.column) for f in fields)
    marks = ", ".join(f"CAST(%s AS {_typed(f)})" for f in fields)
    return columns, marks


def insert_values(obj: models.Model) -> list[Any]:
    """``obj``'s values as :func:`insert` stores them (prepared as ``save()`` prepares them, ``auto_now``
    times set on ``obj``), in :func:`insert_select`'s order."""
    fields = _insert_sql(type(obj), connection.vendor)[0]
    return [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]


def prep(model: type[models.Model], name: str, value: Any) -> Any:
    """``value`` prepared for field ``name``'s column, as an update prepares it."""
    return _prep(_field(model, name), value)


def stored(obj: M, pk: Any) -> M:
    """``obj`` marked stored, with the primary key its insert returned."""
    obj.pk = pk
    obj._state.adding, obj._state.db = False, connection.alias
    return obj


def insert(obj: M) -> M:
    """``obj`` stored as a new row (its primary key set from the database), as ``obj.save()`` would store it
    without signals: values prepared as ``save()`` prepares them (``auto_now_add`` and ``auto_now`` times set
    on ``obj``)."""
    ((pk,),) = prepared.fetch_all(_insert_sql(type(obj), connection.vendor)[1], insert_values(obj))
    return stored(obj, pk)


@functools.cache
def _update_sql(model: type[models.Model], names: tuple[str, ...], returning: bool, vendor: str) -> str:
    sets = ", ".join(f"{_q(model._meta.get_field(n).column)} = %s" for n in names)
    pk = _q(model._meta.pk.column)
    back = _columns(model)[1] if returning else pk
    return f"UPDATE {_q(model._meta.db_table)} SET {sets} WHERE {pk} = %s RETURNING {back}"  # noqa: S608


def _update(model: type[models.Model], pk: Any, values: Mapping[str, Any], returning: bool) -> list[tuple]:
    names = tuple(values)
    params = [_prep(model._meta.get_field(n), v) for n, v in values.items()]
    return prepared.fetch_all(_update_sql(model, names, returning, connection.vendor), [*params, pk])


def row_update(model: type[models.Model], pk: Any, **values: Any) -> bool:
    """``model.objects.filter(pk=pk).update(**values)`` for one row (no ``auto_now`` added: name
    ``updated_at`` where it should change); whether the row was there."""
    return bool(_update(model, pk, values, returning=False))


def row_update_returning(model: type[M], pk: Any, **values: Any) -> M | None:
    """:func:`row_update`, giving the row as it is after (locked until the transaction ends, as an update
    locks it: the read and the lock of ``row_get(lock=True)`` in one statement), or None."""
    rows = _update(model, pk, values, returning=True)
    return _instance(model, rows[0]) if rows else None


def _typed(field: models.Field) -> str:
    """``field``'s column type for a cast, a string's without its length: the column's own assignment refuses
    a value too long for it, as an ``INSERT ... VALUES`` does, where a cast to varchar(n) would cut it
    silently."""
    return re.sub(r"^varchar\(\d+\)$", "varchar", str(field.db_type(connection)))


@functools.cache
def _rows_update_sql(model: type[models.Model], names: tuple[str, ...], rows: int, vendor: str) -> str:
    fields = [model._meta.pk, *(model._meta.get_field(n) for n in names)]
    row = "(" + ", ".join(f"CAST(%s AS {_typed(f)})" for f in fields) + ")"
    columns = ", ".join(_q(f.column) for f in fields)
    sets = ", ".join(f"{_q(f.column)} = v.{_q(f.column)}" for f in fields[1:])
    table, pk = _q(model._meta.db_table), _q(model._meta.pk.column)
    return (
        f"UPDATE {table} SET {sets} FROM (VALUES {', '.join([row] * rows)}) AS v ({columns})"  # noqa: S608
        f" WHERE {table}.{pk} = v.{pk}"
    )


def rows_update(objs: list[M], names: list[str]) -> None:
    """``Model.objects.bulk_update(objs, names)``: each object's ``names`` fields written from the object (as
    given: no ``auto_now`` added), in ONE ``UPDATE ... FROM (VALUES ...)`` on PostgreSQL. ``bulk_update``
    compiles a ``CASE WHEN pk = ... THEN ...`` per field and row: 0.66 ms of CPU a document for the finance
    monitor's classified batches (BENCHMARKS.md section 16, twelfth-session addendum). Other databases get
    ``bulk_update``."""
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model._base_manager.bulk_update(objs, names)
        return
    fields = [model._meta.get_field(n) for n in names]
    params: list[Any] = []
    for obj in objs:
        params.append(obj.pk)
        params.extend(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(_rows_update_sql(model, tuple(names), len(objs), connection.vendor), params)
