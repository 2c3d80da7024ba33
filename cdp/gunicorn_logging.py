"""gunicorn's access log without secrets (`cdp.logredact`): loaded by `gunicorn.conf.py`,
which `dev.py start`, the Docker entrypoint and a bare `gunicorn cdp.wsgi` run from the
project directory all read."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from cdp.logredact import REDACTED, query_redacted, request_line_redacted, url_redacted

# Request headers (`%({name}i)s`) and environ variables (`%({NAME}e)s`) that hold secrets.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
_SECRET_ENVIRON = frozenset({"http_authorization", "http_proxy_authorization", "http_cookie", "http_x_api_key"})
_URL_ENVIRON = frozenset({"raw_uri", "http_referer"})


class RedactingLogger(Logger):
    """gunicorn's logger, with every atom that can carry a secret redacted: the request line
    (`%(r)s`), the query (`%(q)s`), the referer (`%(f)s`), the Basic-auth user (`%(u)s`,
    always `-`: it is a write key or an access token), and secret headers and variables."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        atoms["r"] = request_line_redacted(str(atoms.get("r") or ""))
        atoms["q"] = query_redacted(str(atoms.get("q") or ""))
        atoms["f"] = url_redacted(str(atoms.get("f") or "-"))
        atoms["u"] = "-"
        for key in list(atoms):
            if not key.startswith("{"):
                continue
            name, kind = key[1:-2], key[-1]
            if (kind == "i" and name in _SECRET_HEADERS) or (kind == "e" and name in _SECRET_ENVIRON):
                atoms[key] = REDACTED
            elif kind == "e" and name in _URL_ENVIRON:
                atoms[key] = url_redacted(str(atoms[key]))
            elif kind == "e" and name == "query_string":
                atoms[key] = query_redacted(str(atoms[key]))
            elif kind == "i" and name == "referer":
                atoms[key] = url_redacted(str(atoms[key]))
        return atoms
