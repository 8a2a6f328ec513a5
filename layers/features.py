"""Feature collections for the OGC API feed, generic over the layer registry.

Every query here is built from one-clause helpers with ``psycopg.sql``: identifiers come from
the registry (or the catalogue) and are quoted, values are bound. The items of a page are turned
into GeoJSON inside PostGIS (``ST_AsGeoJSON`` and ``row_to_json``, one text line per feature)
and read with ``COPY ... TO STDOUT``: Python never holds a feature, only blocks of bytes.

Paging is by keyset on immutable columns (``PAGE_KEYS``; the id column by default), never by
OFFSET, so a page is stable while rows are inserted. The caller runs the page's fingerprint
(``page``) and its rows (``stream``) in one REPEATABLE READ transaction, so both see the same
snapshot: the count in the envelope is exactly the number of rows streamed.

Public rows only: features carry ``LayerSpec.public`` columns and nothing else. Incidents in a
sensitive category (drugs, neighbour disputes) are published at their grid's centroid (or the
centre of the 0.01-degree cell when they have no grid), and their distance to the border is
withheld; every filter (bbox, CQL2, properties) is evaluated on those published values, so a
filter cannot be used to home in on the exact point.
"""

from __future__ import annotations

import os
import select
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import shapely
from psycopg import errors as pgerr
from psycopg import pq
from psycopg import sql as q
from psycopg.rows import tuple_row

from gis import cql, redaction
from gis.crs import geometry_from_wgs84
from gis.errors import InvalidInput, NotFound
from layers.db import Conn, data_detail, sql, translate_errors
from layers.registry import LayerSpec

PRECISION = 7  # decimal places of coordinates (about 1 cm)
# Parallel workers building one page's features beside the leader: one core is left to the
# web process that streams them (on two cores, one worker beat two in bench/feeds.py).
STREAM_WORKERS = max(1, min(4, (os.cpu_count() or 2) - 1))
COUNT_CAP = 1_000_000  # numberMatched is exact up to this many; above it, it is left out
CHUNK_BYTES = 1 << 19  # bytes per streamed block
# The public redaction rule (gis.redaction) is the one the SQL below applies.
CELL_DEG = redaction.CELL_DEG  # coarse cell for sensitive incidents without a grid

# Keyset order per layer: immutable, unique together, ideally in the order rows are written.
# Other layers page by their id column.
PAGE_KEYS: dict[str, tuple[str, ...]] = {"incidents": ("reported_at", "id")}

_KINDS: dict[str, cql.Kind] = {
    "bool": "boolean",
    "int2": "integer",
    "int4": "integer",
    "int8": "integer",
    "float4": "number",
    "float8": "number",
    "numeric": "number",
    "timestamptz": "datetime",
    "timestamp": "datetime",
    "date": "date",
    "text": "string",
    "varchar": "string",
    "bpchar": "string",
    "uuid": "string",
    "geometry": "geometry",
}


@dataclass(frozen=True)
class Collection:
    """What the feed knows about one layer's table at run time."""

    spec: LayerSpec
    pg_types: dict[str, str]  # every column -> its type, e.g. "timestamp with time zone"
    kinds: dict[str, str]  # public column -> JSON kind ("string", ..., "array", "object")
    page_key: tuple[str, ...]
    updated_column: str | None  # the column whose max says when the data last changed

    @property
    def queryables(self) -> dict[str, cql.Kind]:
        """Public properties a filter may use (JSON objects are shown, never filtered)."""
        out: dict[str, cql.Kind] = {
            c: k  # type: ignore[misc]
            for c, k in self.kinds.items()
            if k != "object"
        }
        out["geometry"] = "geometry"
        return out

    @property
    def has_updated_at(self) -> bool:
        return "updated_at" in self.pg_types


@dataclass(frozen=True)
class Query:
    """The selection of an items request. Coordinates in WGS84 degrees, times aware."""

    bbox: tuple[tuple[float, float, float, float], ...] = ()  # any of these envelopes
    interval: tuple[datetime | None, datetime | None] | None = None  # on the temporal column
    instant: datetime | None = None  # the temporal column equals this
    equals: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # property in values
    overlaps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # array && values
    ranges: Mapping[str, tuple[datetime | None, datetime | None]] = field(default_factory=dict)
    filter: cql.Node | None = None
    updated_since: datetime | None = None
    sensitive: frozenset[str] = frozenset()  # incident categories published at grid centroids


@dataclass(frozen=True)
class Page:
    """One page's fingerprint, read before its rows are streamed."""

    returned: int
    more: bool  # another page follows in the paging direction
    first_key: tuple[str, ...] | None
    last_key: tuple[str, ...] | None
    modified: datetime | None  # max of the updated column over the page (and one row beyond)


# -- description -------------------------------------------------------------------------

_DESCRIBED: dict[tuple[str, int, str, str], Collection] = {}


def describe(conn: Conn, spec: LayerSpec) -> Collection:
    """The table's column types for ``spec``, read from the catalog once per database."""
    key = (conn.info.host, conn.info.port, conn.info.dbname, spec.id)
    hit = _DESCRIBED.get(key)
    if hit is not None and hit.spec is spec:
        return hit
    with translate_errors(), conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(sql("ogc_columns"), {"table": spec.table}).fetchall()
    pg_types = {name: typ for name, typ, _, _ in rows}
    kinds: dict[str, str] = {}
    for name, _typ, typname, category in rows:
        if name not in spec.public:
            continue
        if category == "A":
            kinds[name] = "array"
        elif typname in ("json", "jsonb"):
            kinds[name] = "object"
        else:
            kinds[name] = _KINDS.get(typname, "string")
    missing = [c for c in (*spec.public, spec.geometry_column, spec.id_column) if c not in pg_types]
    if missing:
        raise ValueError(f"layer {spec.id}: table {spec.table} has no column(s) {missing}")
    page_key = PAGE_KEYS.get(spec.id, (spec.id_column,))
    updated = (
        "updated_at"
        if "updated_at" in pg_types
        else spec.temporal
        if spec.temporal in pg_types
        else None
    )
    coll = Collection(
        spec=spec,
        pg_types=pg_types,
        kinds={c: kinds[c] for c in spec.public},
        page_key=page_key,
        updated_column=updated,
    )
    _DESCRIBED[key] = coll
    return coll


# -- expressions -------------------------------------------------------------------------


class _Sql:
    """Builds one statement: expressions for the published columns, and bound parameters."""

    def __init__(self, coll: Collection, query: Query) -> None:
        self.coll = coll
        self.query = query
        self.params: dict[str, Any] = {}
        self.redacted = coll.spec.id == "incidents" and bool(query.sensitive)
        if self.redacted:
            self.params["_sensitive"] = sorted(query.sensitive)

    def bind(self, value: Any) -> q.Composable:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return q.Placeholder(name)

    def col(self, name: str) -> q.Composable:
        return q.SQL("t.{}").format(q.Identifier(name))

    def sensitive(self) -> q.Composable:
        return q.SQL("(t.category = ANY(%(_sensitive)s::text[]))")

    def geometry(self) -> q.Composable:
        """The published geometry (WGS84)."""
        geom = self.col(self.coll.spec.geometry_column)
        if not self.redacted:
            return geom
        return q.SQL(
            "(CASE WHEN {sens} THEN coalesce(ST_Centroid(_g.geom), "
            "ST_SetSRID(ST_MakePoint(floor(ST_X({g}) / {cell}) * {cell} + {half}, "
            "floor(ST_Y({g}) / {cell}) * {cell} + {half}), 4326)) ELSE {g} END)"
        ).format(
            sens=self.sensitive(),
            g=geom,
            cell=q.Literal(CELL_DEG),
            half=q.Literal(CELL_DEG / 2),
        )

    def value(self, name: str) -> q.Composable:
        """The published value of a public column."""
        if self.redacted and name in redaction.WITHHELD_IF_SENSITIVE:
            return q.SQL("(CASE WHEN {} THEN NULL ELSE {} END)").format(
                self.sensitive(), self.col(name)
            )
        return self.col(name)

    def typed(self, name: str, value: Any) -> q.Composable:
        """A bound value cast to the column's own type (so indexes apply)."""
        return q.SQL("CAST({} AS {})").format(self.bind(value), q.SQL(self.coll.pg_types[name]))

    def literal(self, name: str, value: Any) -> q.Composable:
        """A filter value for ``name``: text is cast to the column's type (uuid, varchar, ...);
        numbers, booleans and times bind as themselves, so 1.5 is never rounded to an integer
        column's type. A value the type refuses is a 400 (via translate_errors)."""
        if self.coll.kinds.get(name) == "string":
            return self.typed(name, value)
        return self.bind(value)

    def literals(self, name: str, values: tuple[Any, ...]) -> q.Composable:
        """An array of filter values for ``= ANY(...)``, typed like ``literal``."""
        if self.coll.kinds.get(name) == "string":
            return q.SQL("CAST({} AS {}[])").format(
                self.bind(list(values)), q.SQL(self.coll.pg_types[name])
            )
        return self.bind(list(values))

    # -- the spatial predicate ---------------------------------------------------------

    def on_geometry(self, make: Any) -> q.Composable:
        """``make(geometry_expression)`` on the published geometry, index-friendly.

        For redacted incidents the exact point is used for ordinary rows (GiST index) and the
        published point for sensitive ones, so a filter never reveals where a sensitive case
        really is.
        """
        raw = self.col(self.coll.spec.geometry_column)
        if not self.redacted:
            return make(raw)
        return q.SQL("(({sens} IS NOT TRUE AND {a}) OR ({sens} AND {b}))").format(
            sens=self.sensitive(), a=make(raw), b=make(self.geometry())
        )

    # -- WHERE -------------------------------------------------------------------------

    def where(self) -> q.Composable:
        qy = self.query
        parts: list[q.Composable] = []
        if qy.bbox:
            boxes = []
            for w, s, e, n in qy.bbox:
                env = q.SQL("ST_MakeEnvelope({}, {}, {}, {}, 4326)").format(
                    self.bind(w), self.bind(s), self.bind(e), self.bind(n)
                )
                boxes.append(
                    self.on_geometry(
                        lambda g, env=env: q.SQL(
                            "({g} && {env} AND ST_Intersects({g}, {env}))"
                        ).format(g=g, env=env)
                    )
                )
            parts.append(q.SQL("({})").format(q.SQL(" OR ").join(boxes)))
        temporal = self.coll.spec.temporal
        if temporal and qy.instant is not None:
            parts.append(q.SQL("{} = {}").format(self.col(temporal), self.bind(qy.instant)))
        if temporal and qy.interval is not None:
            parts.extend(self.interval(temporal, qy.interval))
        for name, values in qy.equals.items():
            parts.append(
                q.SQL("{} = ANY({})").format(self.value(name), self.literals(name, values))
            )
        for name, values in qy.overlaps.items():
            parts.append(
                q.SQL("{} && CAST({} AS text[])").format(self.value(name), self.bind(list(values)))
            )
        for name, rng in qy.ranges.items():
            parts.extend(self.interval(name, rng))
        if qy.updated_since is not None:
            parts.append(q.SQL("t.updated_at > {}").format(self.bind(qy.updated_since)))
        if qy.filter is not None:
            parts.append(self.cql(qy.filter))
        return q.SQL(" AND ").join(parts) if parts else q.SQL("true")

    def interval(
        self, name: str, rng: tuple[datetime | None, datetime | None]
    ) -> list[q.Composable]:
        out: list[q.Composable] = []
        start, end = rng
        if start is not None:
            out.append(q.SQL("{} >= {}").format(self.value(name), self.bind(start)))
        if end is not None:
            out.append(q.SQL("{} <= {}").format(self.value(name), self.bind(end)))
        return out

    def cql(self, node: cql.Node) -> q.Composable:
        if isinstance(node, cql.Const):
            return q.SQL("true" if node.value else "false")
        if isinstance(node, cql.And | cql.Or):
            joiner = q.SQL(" AND " if isinstance(node, cql.And) else " OR ")
            return q.SQL("({})").format(joiner.join(self.cql(a) for a in node.args))
        if isinstance(node, cql.Not):
            return q.SQL("(NOT {})").format(self.cql(node.arg))
        if isinstance(node, cql.Intersects):
            lit = q.SQL("ST_GeomFromWKB({}, 4326)").format(self.bind(shapely.to_wkb(node.geometry)))
            return self.on_geometry(lambda g: q.SQL("ST_Intersects({}, {})").format(g, lit))
        name = node.prop.name
        col = self.value(name)
        if isinstance(node, cql.Compare):
            return q.SQL("({} {} {})").format(col, q.SQL(node.op), self.literal(name, node.value))
        if isinstance(node, cql.Like):
            return q.SQL("({}::text LIKE {})").format(col, self.bind(node.pattern))
        if isinstance(node, cql.Between):
            return q.SQL("({} BETWEEN {} AND {})").format(
                col, self.bind(node.low), self.bind(node.high)
            )
        if isinstance(node, cql.In):
            return q.SQL("({} = ANY({}))").format(col, self.literals(name, node.values))
        if isinstance(node, cql.IsNull):
            return q.SQL("({} IS NULL)").format(col)
        if isinstance(node, cql.ArrayOp):
            op = "&&" if node.op == "a_overlaps" else "@>"
            return q.SQL("({} {} CAST({} AS text[]))").format(
                col, q.SQL(op), self.bind(list(node.values))
            )
        raise TypeError(f"unexpected filter node {node!r}")  # pragma: no cover

    # -- keyset ------------------------------------------------------------------------

    def key_cols(self) -> q.Composable:
        return q.SQL(", ").join(self.col(k) for k in self.coll.page_key)

    def key_row(self, values: tuple[str, ...]) -> q.Composable:
        return q.SQL(", ").join(
            self.typed(k, v) for k, v in zip(self.coll.page_key, values, strict=True)
        )

    def key_bound(self, op: str, values: tuple[str, ...]) -> q.Composable:
        """``(keys) op (values)``, with the same bound on the leading key column alone: the
        planner estimates row comparisons poorly (and then scans the whole table), but reads
        a plain range on the leading column from its histogram and its index."""
        lead = self.coll.page_key[0]
        return q.SQL("{c} {op} {v} AND ({keys}) {op2} ({row})").format(
            c=self.col(lead),
            op=q.SQL({">": ">=", ">=": ">=", "<": "<=", "<=": "<="}[op]),
            v=self.typed(lead, values[0]),
            keys=self.key_cols(),
            op2=q.SQL(op),
            row=self.key_row(values),
        )

    def key_select(self) -> q.Composable:
        """The page key's columns as k0, k1, ..."""
        return q.SQL(", ").join(
            q.SQL("{} AS {}").format(self.col(k), q.Identifier(f"k{i}"))
            for i, k in enumerate(self.coll.page_key)
        )

    def key_text(self) -> q.Composable:
        """k0, k1, ... as one text array (the cursor's form)."""
        return q.SQL("ARRAY[{}]").format(
            q.SQL(", ").join(
                q.SQL("{}::text").format(q.Identifier(f"k{i}"))
                for i in range(len(self.coll.page_key))
            )
        )

    def order(self, descending: bool = False) -> q.Composable:
        d = q.SQL(" DESC" if descending else "")
        return q.SQL(", ").join(q.SQL("{}{}").format(self.col(k), d) for k in self.coll.page_key)

    def updated(self) -> q.Composable:
        u = self.coll.updated_column
        return self.col(u) if u else q.SQL("NULL::timestamptz")

    # -- the feature text --------------------------------------------------------------

    def properties(self) -> q.Composable:
        """``SELECT`` list of the published properties (for ``row_to_json``)."""
        cols: list[q.Composable] = [
            q.SQL("{} AS {}").format(self.value(c), q.Identifier(c)) for c in self.coll.spec.public
        ]
        if "media" in self.coll.spec.linked:
            cols.append(self.media_links())
        return q.SQL(", ").join(cols)

    def media_links(self) -> q.Composable:
        """``media``: the public capability links of a case's stripped photos (layers.media),
        oldest first; none for a sensitive category."""
        links = q.SQL(
            "(SELECT array_agg('/media/public/' || m.public_token ORDER BY m.added_at, m.id)"
            " FROM media m WHERE m.incident_id = t.id)"
        )
        if not self.redacted:
            return q.SQL("{} AS media").format(links)
        return q.SQL("(CASE WHEN {} THEN NULL ELSE {} END) AS media").format(
            self.sensitive(), links
        )

    def feature(self) -> q.Composable:
        """One GeoJSON Feature as text; ``p`` is the LATERAL row of published properties."""
        return q.SQL(
            '\'{{"type":"Feature","id":\' || coalesce(to_json({id})::text, \'null\') || '
            "',\"geometry\":' || coalesce(ST_AsGeoJSON({geom}, {digits}), 'null') || "
            "',\"properties\":' || row_to_json(p)::text || '}}'"
        ).format(
            id=self.col(self.coll.spec.id_column),
            geom=self.geometry(),
            digits=q.Literal(PRECISION),
        )

    def source(self) -> q.Composable:
        return q.SQL("{} CROSS JOIN LATERAL (SELECT {}) p").format(self.table(), self.properties())

    def table(self, *, geometry: bool = True) -> q.Composable:
        """The layer's table as ``t``. For redacted incidents whose published geometry is
        needed (``geometry``, or a spatial filter), each sensitive row is joined to its grid
        (``_g``); the sensitivity test sits inside the LATERAL subquery, where PostgreSQL
        evaluates it once per row before probing grids, so ordinary rows cost nothing."""
        t = q.SQL("{} t").format(q.Identifier(self.coll.spec.table))
        spatial = bool(self.query.bbox) or _has_spatial(self.query.filter)
        if not self.redacted or not (geometry or spatial):
            return t
        return q.SQL("{} LEFT JOIN grids _g ON _g.code = t.grid_code AND {}").format(
            t, self.sensitive()
        )


def _has_spatial(node: cql.Node | None) -> bool:
    if node is None:
        return False
    if isinstance(node, cql.Intersects):
        return True
    if isinstance(node, cql.And | cql.Or):
        return any(_has_spatial(a) for a in node.args)
    if isinstance(node, cql.Not):
        return _has_spatial(node.arg)
    return False


# -- queries -----------------------------------------------------------------------------


def prepare(conn: Conn) -> None:
    """Settings for a feed transaction: no JIT (its compile time dwarfs a page's work)."""
    with translate_errors():
        conn.execute("SET LOCAL jit = off")
        # a page is 10,000 rows at most: starting parallel workers costs more than it saves
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")


def _parallel(conn: Conn) -> None:
    """Let PostgreSQL build a page's features in parallel workers. Most of a page's cost is
    the JSON of each row; the planner underrates a page (it multiplies the selectivities of
    the key bounds) and would never start workers for it at the default costs."""
    with translate_errors():
        conn.execute(
            q.SQL(
                "SET LOCAL max_parallel_workers_per_gather = {}; SET LOCAL parallel_setup_cost = 0;"
                " SET LOCAL parallel_tuple_cost = 0; SET LOCAL min_parallel_index_scan_size = 0;"
                " SET LOCAL min_parallel_table_scan_size = 0"
            ).format(q.Literal(STREAM_WORKERS))
        )


@contextmanager
def _guard() -> Iterator[None]:
    """translate_errors, plus: a value PostgreSQL cannot read as its column's type (a date, a
    uuid, a number out of range, from a filter or a cursor) is the caller's mistake, a 400."""
    try:
        with translate_errors():
            yield
    except pgerr.DataException as exc:
        raise InvalidInput(
            "a value in the request has the wrong form for its property", data_detail(exc)
        ) from exc


@contextmanager
def _no_jit(conn: Conn) -> Iterator[None]:
    """A transaction (or savepoint) without JIT, for a metadata query."""
    with _guard(), conn.transaction():
        conn.execute("SET LOCAL jit = off")
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        yield


def count(conn: Conn, coll: Collection, query: Query) -> tuple[int | None, datetime | None]:
    """(numberMatched, max of the updated column) over the whole selection.

    The count is exact up to ``COUNT_CAP``; above it, None (too costly to be worth it).
    """
    b = _Sql(coll, query)
    stmt = q.SQL(sql("ogc_count")).format(
        updated=b.updated(), table=b.table(geometry=False), where=b.where()
    )
    with _guard(), conn.cursor(row_factory=tuple_row) as cur:
        n, modified = cur.execute(stmt, {**b.params, "_cap": COUNT_CAP + 1}).fetchone()  # type: ignore[misc]
    return (None if n > COUNT_CAP else int(n)), modified


def page(
    conn: Conn,
    coll: Collection,
    query: Query,
    *,
    limit: int,
    after: tuple[str, ...] | None = None,
    before: tuple[str, ...] | None = None,
) -> Page:
    """The fingerprint of one page: how many rows, whether more follow, its first and last keys."""
    b = _Sql(coll, query)
    where = b.where()
    # keyset only: three index walks; filtered: one pass, kept in a CTE (see the two files)
    template = "ogc_page" if where == q.SQL("true") else "ogc_page_filtered"
    backwards = before is not None
    if after is not None:
        where = q.SQL("{} AND {}").format(where, b.key_bound(">", after))
    if before is not None:
        where = q.SQL("{} AND {}").format(where, b.key_bound("<", before))
    stmt = q.SQL(sql(template)).format(
        order=b.order(descending=backwards),
        keys=b.key_select(),
        keys_text=b.key_text(),
        updated=b.updated(),
        table=b.table(geometry=False),
        where=where,
    )
    with _guard(), conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(stmt, {**b.params, "_limit": limit, "_limit_more": limit + 1}).fetchone()
    c, modified, first, last = row  # type: ignore[misc]
    returned = min(int(c), limit)
    if backwards:
        first, last = last, first  # the page was read newest first
    return Page(
        returned=returned,
        more=int(c) > limit,
        first_key=tuple(first) if first else None,
        last_key=tuple(last) if last else None,
        modified=modified,
    )


def _page_statement(
    coll: Collection, query: Query, pg: Page, select: q.Composable | None = None
) -> tuple[q.Composed, dict[str, Any]]:
    b = _Sql(coll, query)
    where = b.where()
    assert pg.first_key is not None and pg.last_key is not None
    where = q.SQL("{} AND {} AND {}").format(
        where, b.key_bound(">=", pg.first_key), b.key_bound("<=", pg.last_key)
    )
    stmt = q.SQL(sql("ogc_features")).format(
        select=select if select is not None else b.feature(),
        source=b.source(),
        where=where,
        order=b.order(),
    )
    return stmt, dict(b.params)


def stream(conn: Conn, coll: Collection, query: Query, pg: Page) -> Iterator[bytes | memoryview]:
    """The page's features as comma-separated GeoJSON text, in blocks of about CHUNK_BYTES.

    ``COPY ... TO STDOUT`` in CSV form with a quote and a delimiter that JSON text cannot
    contain raw (0x01, 0x02), so each line arrives exactly as PostGIS wrote it; newlines
    (which JSON text cannot contain raw either) become the commas between features.
    COPY takes no server-side parameters, so psycopg binds them on the client, quoted by libpq.
    """
    if pg.returned == 0:
        return
    stmt, params = _page_statement(coll, query, pg)
    copy_stmt = q.SQL(
        "COPY ({}) TO STDOUT WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
    ).format(stmt)
    _parallel(conn)
    held: bytearray | None = None
    with _guard(), conn.cursor() as cur, cur.copy(copy_stmt, params):
        for block in _copy_blocks(conn):
            # every line ends in a newline: one pass turns them into the commas between
            # features; the block is held back one step so the very last comma can be dropped
            if held is not None:
                yield memoryview(held)
            held = block.replace(b"\n", b",")
    if held:
        yield memoryview(held)[:-1]


def _copy_blocks(conn: Conn) -> Iterator[bytearray]:
    """The data of a running ``COPY ... TO STDOUT`` in blocks of about CHUNK_BYTES.

    Reads the rows straight from libpq: psycopg's row-by-row reader costs about 2.5 us of
    Python per row, several times this loop. Waits on the socket with the GIL released, and
    reads the COPY's final result itself, raising its error if the query failed.
    """
    pgconn = conn.pgconn
    fd = pgconn.socket
    buf = bytearray()
    while True:
        nbytes, data = pgconn.get_copy_data(1)
        if nbytes > 0:
            buf += data
            if len(buf) >= CHUNK_BYTES:
                yield buf
                buf = bytearray()
        elif nbytes == 0:
            select.select([fd], [], [])
            pgconn.consume_input()
        else:
            break
    while pgconn.is_busy():
        select.select([fd], [], [])
        pgconn.consume_input()
    while (res := pgconn.get_result()) is not None:
        if res.status != pq.ExecStatus.COMMAND_OK:
            raise pgerr.error_from_result(res, encoding=conn.info.encoding)
    if buf:
        yield buf


def stream_converted(
    conn: Conn, coll: Collection, query: Query, pg: Page, *, crs: str, batch: int = 2000
) -> Iterator[bytes]:
    """Like ``stream``, with coordinates converted from WGS84 to ``crs`` (gcj02 or bd09).

    PostGIS writes everything but the geometry, which comes as WKB; each batch of rows is
    converted in one vectorised numpy pass with gis.crs (the same code that converts input),
    and written by GEOS. Much faster than a per-vertex PL/pgSQL function (see
    docs/performance.md), and exactly the conversion the rest of JointGrid uses.
    """
    if pg.returned == 0:
        return
    b = _Sql(coll, query)
    select = q.SQL(
        '\'{{"type":"Feature","id":\' || coalesce(to_json({id})::text, \'null\') || \',"geometry":\', '
        "ST_AsBinary({geom}), ',\"properties\":' || row_to_json(p)::text || '}}'"
    ).format(id=b.col(coll.spec.id_column), geom=b.geometry())
    stmt, params = _page_statement(coll, query, pg, select=select)
    first = True
    with _guard(), conn.cursor(name="ogc_converted", row_factory=tuple_row) as cur:
        cur.itersize = batch
        cur.execute(stmt, params)
        while rows := cur.fetchmany(batch):
            heads, wkbs, tails = zip(*rows, strict=True)
            geoms = shapely.from_wkb([None if w is None else bytes(w) for w in wkbs])
            moved = geometry_from_wgs84(geoms, crs)
            texts = shapely.to_geojson(moved)
            block = ",".join(
                h + ("null" if g is None else g) + t
                for h, g, t in zip(heads, texts, tails, strict=True)
            ).encode()
            yield block if first else b"," + block
            first = False


def rows(conn: Conn, coll: Collection, query: Query, pg: Page) -> list[dict[str, Any]]:
    """The page's features as parsed GeoJSON objects (for the HTML view, which is small)."""
    if pg.returned == 0:
        return []
    b = _Sql(coll, query)
    stmt, params = _page_statement(
        coll, query, pg, select=q.SQL("({})::json AS f").format(b.feature())
    )
    with _guard(), conn.cursor(row_factory=tuple_row) as cur:
        return [r[0] for r in cur.execute(stmt, params)]


def feature(
    conn: Conn, coll: Collection, fid: str, *, sensitive: frozenset[str], crs: str = "wgs84"
) -> str:
    """One feature's GeoJSON text by id (404 for an unknown id)."""
    b = _Sql(coll, Query(sensitive=sensitive))
    idcol = coll.spec.id_column
    typ = coll.pg_types[idcol]
    if typ == "uuid":
        try:
            fid = str(uuid.UUID(fid))
        except ValueError:
            raise NotFound(f"no feature {fid[:60]!r} in {coll.spec.id}", {"id": fid[:60]}) from None
    elif typ in ("integer", "bigint", "smallint") and (
        not fid.lstrip("-").isdigit() or len(fid) > 18
    ):
        raise NotFound(f"no feature {fid[:60]!r} in {coll.spec.id}", {"id": fid[:60]})
    where = q.SQL("t.{} = {}").format(q.Identifier(idcol), b.typed(idcol, fid))
    select: q.Composable
    if crs in ("gcj02", "bd09"):
        select = q.SQL(
            '\'{{"type":"Feature","id":\' || coalesce(to_json({id})::text, \'null\') || \',"geometry":\', '
            "ST_AsBinary({geom}), ',\"properties\":' || row_to_json(p)::text || '}}'"
        ).format(id=b.col(idcol), geom=b.geometry())
    else:
        select = b.feature()
    stmt = q.SQL("SELECT {} FROM {} WHERE {}").format(select, b.source(), where)
    with _no_jit(conn), conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(stmt, b.params).fetchone()
    if row is None:
        raise NotFound(f"no feature {fid[:60]!r} in {coll.spec.id}", {"id": fid[:60]})
    if len(row) == 1:
        return str(row[0])
    head, wkb, tail = row
    geom = geometry_from_wgs84(shapely.from_wkb(bytes(wkb)), crs)
    return str(head) + str(shapely.to_geojson(geom)) + str(tail)


def extent(
    conn: Conn, coll: Collection, *, sensitive: frozenset[str]
) -> tuple[tuple[float, float, float, float] | None, tuple[datetime | None, datetime | None]]:
    """(west, south, east, north) of the published geometries and (first, last) of the
    temporal column. Large tables use PostGIS's estimate from statistics for the box."""
    b = _Sql(coll, Query(sensitive=sensitive))
    temporal = coll.spec.temporal
    stmt = q.SQL(sql("ogc_extent")).format(
        geom=b.geometry(),
        temporal=b.col(temporal) if temporal else q.SQL("NULL::timestamptz"),
        source=b.table(),
        table=q.SQL("{} t").format(q.Identifier(coll.spec.table)),
        relation=q.Literal(coll.spec.table),
        column=q.Literal(coll.spec.geometry_column),
    )
    with _no_jit(conn), conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(stmt, b.params).fetchone()
    xmin, ymin, xmax, ymax, t0, t1 = row  # type: ignore[misc]
    box = None if xmin is None else (float(xmin), float(ymin), float(xmax), float(ymax))
    return box, (t0, t1)
