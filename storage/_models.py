"""SQL metadata: typed SQLAlchemy models for sweeps, runs, their links and the file manifest.

Every table is prefixed ``fs_`` (and Alembic's version table is ``fs_alembic_version``)
so an Optuna study can share the database without a name clash. Schema changes go
through ``storage/migrations``; a test checks these models and the migrations agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Callable

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, MetaData, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

#: Alembic's version table for this schema (Optuna keeps its own ``alembic_version``).
VERSION_TABLE = "fs_alembic_version"
TABLE_PREFIX = "fs_"

RUN_STATUSES = ("pending", "running", "done", "failed")
SWEEP_STATUSES = ("running", "interrupted", "done", "failed", "cancelled")


def comparable_on(dialect: str) -> Callable[..., bool]:
    """An Alembic ``include_object`` hook for a ``dialect`` database: it skips model objects
    declared for other databases only (``info["dialects"]``, e.g. the PostgreSQL hash index)."""

    def include(obj: object, _name: object, _type: str, reflected: bool, _compare_to: object) -> bool:
        dialects = getattr(obj, "info", {}).get("dialects")
        return reflected or dialects is None or dialect in dialects

    return include


# Named constraints, so Alembic batch mode on SQLite can find them again.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC on the way out, whatever the backend keeps (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; storage keeps UTC-aware times")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


RunId = Annotated[str, mapped_column(String(64))]
SweepName = Annotated[str, mapped_column(String(128))]
RelPath = Annotated[str, mapped_column(String(512))]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime}


class SweepRow(Base):
    """A sweep, search, calibration or report: one named piece of work and its provenance."""

    __tablename__ = "fs_sweeps"
    __table_args__ = (
        CheckConstraint(f"status IN {SWEEP_STATUSES!r}", name="status"),
    )

    name: Mapped[SweepName] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    spec_hash: Mapped[str] = mapped_column(String(64))
    spec_text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    created: Mapped[dt.datetime]
    updated: Mapped[dt.datetime]
    code_version: Mapped[str] = mapped_column(String(200))
    package_versions: Mapped[str] = mapped_column(Text)  # JSON object, name -> version
    host: Mapped[str] = mapped_column(String(255))

    links: Mapped[list["SweepRunRow"]] = relationship(back_populates="sweep_row", passive_deletes=True)


#: PostgreSQL fills fs_runs pages only to this percentage, so the updates a run goes
#: through (running, done, compacted) are HOT: the new row version fits on the same
#: page and no index is touched. This is what makes committing a batch cheap; it
#: costs disk space (about 3x) on a table of narrow rows.
RUNS_FILLFACTOR = 30


class RunRow(Base):
    """One run's state, shared by every sweep that asks for it; ``run_id`` is the config's content hash.

    Narrow on purpose (the config lives in ``fs_run_configs``) and with no index on
    a column that changes: committing a batch updates a thousand of these rows, and
    that update is the hot path of a sweep. On PostgreSQL a hash index serves the
    run_id look-ups (cheaper than the primary key's B-tree for random hashes).
    """

    __tablename__ = "fs_runs"
    __table_args__ = (
        CheckConstraint(f"status IN {RUN_STATUSES!r}", name="status"),
        Index("ix_fs_runs_run_id_hash", "run_id", postgresql_using="hash", info={"dialects": ("postgresql",)})
        .ddl_if(dialect="postgresql"),
        {"postgresql_with": {"fillfactor": RUNS_FILLFACTOR}},
    )

    run_id: Mapped[RunId] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    node: Mapped[str | None] = mapped_column(String(255))
    created: Mapped[dt.datetime]
    started: Mapped[dt.datetime | None]
    finished: Mapped[dt.datetime | None]
    result_file: Mapped[RelPath | None]

    links: Mapped[list["SweepRunRow"]] = relationship(back_populates="run_row", passive_deletes=True)


class RunConfigRow(Base):
    """What a run is: its config and baseline, written once when the run is registered."""

    __tablename__ = "fs_run_configs"

    run_id: Mapped[RunId] = mapped_column(ForeignKey("fs_runs.run_id", ondelete="CASCADE"), primary_key=True)
    config: Mapped[str] = mapped_column(Text)  # canonical JSON, so resuming needs no spec expansion
    # No foreign key: a baseline may be registered in the same batch, or later.
    baseline_run_id: Mapped[RunId | None]


class SweepRunRow(Base):
    """Which sweeps asked for which runs: a run computed once serves every sweep linked to it."""

    __tablename__ = "fs_sweep_runs"
    __table_args__ = (Index("ix_fs_sweep_runs_run_id", "run_id"),)

    sweep: Mapped[SweepName] = mapped_column(ForeignKey("fs_sweeps.name", ondelete="CASCADE"), primary_key=True)
    run_id: Mapped[RunId] = mapped_column(ForeignKey("fs_runs.run_id", ondelete="CASCADE"), primary_key=True)

    sweep_row: Mapped[SweepRow] = relationship(back_populates="links")
    run_row: Mapped[RunRow] = relationship(back_populates="links")


class FileRow(Base):
    """The manifest: a Parquet file is part of the results exactly when it has a row here."""

    __tablename__ = "fs_files"

    path: Mapped[RelPath] = mapped_column(primary_key=True)  # relative to the store directory
    sweep: Mapped[SweepName]
    rows: Mapped[int]
    bytes: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str] = mapped_column(String(64))  # sha256 of the whole file
    schema_version: Mapped[int]
    created: Mapped[dt.datetime]
    # Column names and types of the file; files that share it are read without union_by_name.
    schema_hash: Mapped[str | None] = mapped_column(String(64))


class ColumnRow(Base):
    """The result columns seen so far and their Arrow type, which stays fixed once chosen."""

    __tablename__ = "fs_columns"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    arrow_type: Mapped[str] = mapped_column(String(16))  # bool, int64, float64, string
    first_seen: Mapped[dt.datetime]


class StoreInfoRow(Base):
    """Store-wide facts, e.g. the id that ties this database to its store directory."""

    __tablename__ = "fs_store_info"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


__all__ = [
    "Base",
    "ColumnRow",
    "FileRow",
    "RUN_STATUSES",
    "RUNS_FILLFACTOR",
    "RunConfigRow",
    "RunRow",
    "SWEEP_STATUSES",
    "StoreInfoRow",
    "SweepRow",
    "SweepRunRow",
    "TABLE_PREFIX",
    "VERSION_TABLE",
    "comparable_on",
]
