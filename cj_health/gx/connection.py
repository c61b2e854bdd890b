"""The SQLAlchemy URL that GX's PostgreSQL data source connects with.

The checked-in great_expectations.yml names the connection string only as the config
variable `${CJ_GX_CONNECTION_STRING}`; `cj-health check` sets that variable in its own
process environment from `resolve_database()`, so no password is ever written to a file.
The URL names its driver (`postgresql+psycopg`: a driverless `postgresql://` picks psycopg2
from SQLAlchemy 2.1 on) and sets `search_path` to the monitoring schema, then the source
schema, so the unqualified relation names of the generated rules resolve.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL

from cj_health.db import Database, monitoring_schema, source_schema
from cj_health.errors import CjHealthError

CONNECTION_VARIABLE = "CJ_GX_CONNECTION_STRING"
DRIVER = "postgresql+psycopg"
_PLAIN_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_URL_PARTS = ("host", "port", "user", "password", "dbname")


def search_path() -> str:
    schemas = [monitoring_schema(), source_schema()]
    for schema in schemas:
        if not _PLAIN_IDENTIFIER.match(schema):
            raise CjHealthError(
                f"schema name {schema!r} must be a plain lowercase identifier for the GX checks"
            )
    return ",".join(dict.fromkeys(schemas))


def sqlalchemy_url(database: Database) -> str:
    """`database` as a `postgresql+psycopg://` URL with the search_path option (holds the
    password when the database URL does: pass it only through the environment)."""
    params = database.params
    query = {key: value for key, value in params.items() if key not in _URL_PARTS}
    host = params.get("host")
    if host and (host.startswith("/") or "," in host):
        query["host"] = host  # a unix-socket directory (or a host list) goes in the query
        host = None
    options = f"-csearch_path={search_path()}"
    query["options"] = f"{query['options']} {options}" if query.get("options") else options
    url = URL.create(
        DRIVER,
        username=params.get("user"),
        password=params.get("password"),
        host=host,
        port=int(params["port"]) if params.get("port") and host else None,
        database=database.dbname,
        query=query,
    )
    if params.get("port") and not host:
        url = url.update_query_dict({"port": params["port"]})
    return url.render_as_string(hide_password=False)
