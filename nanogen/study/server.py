"""The study's web server: the page, the images by id, and the answers, on localhost only.

Routes (anything else is 404, a known route with another method 405):

=========================  ==================================================================
``GET /``                  the page (``page.html``: inline CSS and JS, nothing from the network)
``GET /api/order``         a new participant session: ``{"session", "ids", "summary"}``, every
                           image id once in a fresh random order
``GET /image/<id>.png``    one image of the pool (404 for an id not in it)
``GET /api/summary``       ``{"summary", "damaged_lines", "file"}`` over every answer in the file
``POST /api/answer``       ``{"session", "image", "answer": "real"|"generated", "ms"?}``: the
                           answer is appended to the file (fsync'ed) before the reply
                           ``{"answered", "summary"}``
=========================  ==================================================================

Refused with a 4xx and ``{"error": ...}``: a Host header other than this server's own loopback
address (a web page elsewhere cannot reach the study through DNS rebinding), a POST that is not
``application/json`` (so no other site's form can post answers), no Content-Length (411), a
body over 4 KiB (413), bad JSON or fields (400), an unknown session or image (400), the same
image answered twice in one session (409).

The server binds 127.0.0.1: the study is for the person at this machine (or a colleague
sitting at it); nothing is sent anywhere, and the answers stay in the one file.
"""
from __future__ import annotations

import json
import re
import secrets
import threading
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import urlsplit

from .pool import REAL, GENERATED
from .stats import summarize
from .store import AnswerStore

__all__ = ["StudyServer", "MAX_BODY"]

MAX_BODY = 4096                          # bytes; an answer is about 100
MAX_MILLISECONDS = 24 * 3600 * 1000      # the longest believable time spent on one image
IMAGE_ROUTE = re.compile(r"/image/([0-9a-f]{16})\.png")
SESSION = re.compile(r"[0-9a-f]{32}")
GET_ROUTES = ("/", "/api/order", "/api/summary")
POST_ROUTES = ("/api/answer",)
ANSWER_KEYS = {"session", "image", "answer", "ms"}


class StudyServer(ThreadingHTTPServer):
    """Serves ``pool`` (an :class:`~nanogen.study.pool.ImagePool`) and appends the answers to
    ``out`` (a path; see :mod:`nanogen.study.store`).  ``port`` 0 takes a free port;
    :attr:`url` says which."""

    daemon_threads = True

    def __init__(self, pool, out, port: int = 8000):
        self.pool = pool
        self.store = AnswerStore(out)
        self.server_id = secrets.token_hex(8)       # tells two servers' lines apart
        self.page = resources.files(__package__).joinpath("page.html").read_bytes()
        self._sessions: dict[str, set] = {}         # session -> the images it answered
        self._sessions_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), StudyHandler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def allowed_hosts(self) -> set:
        return {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost")}

    def new_session(self) -> str:
        session = secrets.token_hex(16)
        with self._sessions_lock:
            self._sessions[session] = set()
        return session

    def summary(self) -> dict:
        answers, damaged = self.store.read()
        return {"summary": summarize(answers), "damaged_lines": damaged,
                "file": self.store.path}

    def record(self, session: str, image_id: str, answer: str, ms) -> int:
        """Store one answer; returns how many this session has given.  Raises KeyError for an
        unknown session and :class:`AlreadyAnswered` for an image answered twice."""
        label, truth, _ = self.pool[image_id]
        with self._sessions_lock:
            answered = self._sessions[session]
            if image_id in answered:
                raise AlreadyAnswered(f"image {image_id} was already answered in this session")
            answered.add(image_id)
        record = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                  "server": self.server_id, "session": session, "image": image_id,
                  "source": label, "truth": truth, "answer": answer}
        if ms is not None:
            record["ms"] = ms
        try:
            self.store.append(record)
        except OSError:
            with self._sessions_lock:                # not stored: it may be answered again
                answered.discard(image_id)
            raise
        return len(answered)


class AlreadyAnswered(Exception):
    """The session has answered this image before (a double click, a replayed request)."""


class RequestError(Exception):
    """A request refused with ``status`` and a one-line reason."""

    def __init__(self, status: HTTPStatus, message: str, allow=None):
        super().__init__(message)
        self.status, self.allow = status, allow


class StudyHandler(BaseHTTPRequestHandler):
    server: StudyServer
    server_version = "nanogen-study"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # -- dispatch ----------------------------------------------------------------------------
    def do_GET(self):
        self._serve(self._get)

    def do_HEAD(self):
        self._serve(self._get, head=True)

    def do_POST(self):
        self._serve(self._post)

    def __getattr__(self, name):
        """Every other method (PUT, DELETE, OPTIONS, anything) on a route: 405, else 404 --
        instead of http.server's 501 for a method it has no do_ for."""
        if name.startswith("do_"):
            return lambda: self._serve(self._other)
        raise AttributeError(name)

    def _serve(self, action, head=False):
        try:
            self._check_host()
            status, content_type, body = action(urlsplit(self.path).path)
        except RequestError as e:
            if self.command == "POST":          # the body may be unread: do not reuse the link
                self.close_connection = True
            status, content_type = e.status, "application/json"
            body = json.dumps({"error": str(e)}).encode()
            allow = e.allow
        else:
            allow = None
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if allow:
            self.send_header("Allow", allow)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _check_host(self):
        if self.headers.get("Host") not in self.server.allowed_hosts():
            raise RequestError(HTTPStatus.FORBIDDEN, f"the study answers requests to "
                               f"{self.server.url} only, not to Host "
                               f"{self.headers.get('Host')!r}")

    def _allowed_methods(self, path):
        """The methods ``path`` answers to; None for a path that is not a route (an image
        route is one only for an id in the pool)."""
        if path in POST_ROUTES:
            return "POST"
        image = IMAGE_ROUTE.fullmatch(path)
        if path in GET_ROUTES or (image and image.group(1) in self.server.pool):
            return "GET, HEAD"
        return None

    def _other(self, path):
        allowed = self._allowed_methods(path)
        if allowed is None:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no such page: {path}")
        raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} {path}: use "
                           f"{allowed}", allow=allowed)

    # -- the routes ----------------------------------------------------------------------------
    def _get(self, path):
        if path == "/":
            return HTTPStatus.OK, "text/html; charset=utf-8", self.server.page
        if path == "/api/order":
            return self._json({"session": self.server.new_session(),
                               "ids": self.server.pool.shuffled_ids(),
                               **self.server.summary()})
        if path == "/api/summary":
            return self._json(self.server.summary())
        match = IMAGE_ROUTE.fullmatch(path)
        if match and match.group(1) in self.server.pool:
            return HTTPStatus.OK, "image/png", self.server.pool[match.group(1)][2]
        return self._other(path)

    def _post(self, path):
        if path not in POST_ROUTES:
            return self._other(path)
        fields = self._json_body()
        session, image_id = fields.get("session"), fields.get("image")
        answer, ms = fields.get("answer"), fields.get("ms")
        if not (isinstance(session, str) and SESSION.fullmatch(session)):
            raise RequestError(HTTPStatus.BAD_REQUEST, "'session' must be the id /api/order "
                               "gave (32 hex digits)")
        if not isinstance(image_id, str) or image_id not in self.server.pool:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"unknown image {image_id!r}")
        if answer not in (REAL, GENERATED):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"'answer' must be {REAL!r} or "
                               f"{GENERATED!r}, got {answer!r}")
        if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int)
                               or not 0 <= ms <= MAX_MILLISECONDS):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"'ms' must be whole milliseconds "
                               f"from 0 to {MAX_MILLISECONDS}, got {ms!r}")
        try:
            answered = self.server.record(session, image_id, answer, ms)
        except KeyError:
            raise RequestError(HTTPStatus.BAD_REQUEST, "unknown session: reload the page "
                               "(/api/order starts one)") from None
        except AlreadyAnswered as e:
            raise RequestError(HTTPStatus.CONFLICT, str(e)) from None
        except OSError as e:                      # the disk is full, the file went away, ...
            raise RequestError(HTTPStatus.INTERNAL_SERVER_ERROR, f"the answer could not be "
                               f"stored: {e}") from None
        return self._json({"answered": answered, **self.server.summary()})

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _json(obj):
        return HTTPStatus.OK, "application/json", json.dumps(obj).encode()

    def _json_body(self) -> dict:
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the answer as "
                               "Content-Type: application/json")
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
        if not length.isdigit():
            raise RequestError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length!r}")
        if int(length) > MAX_BODY:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body has {length} "
                               f"bytes; an answer has at most {MAX_BODY}")
        raw = self.rfile.read(int(length))
        try:
            fields = json.loads(raw.decode("utf-8"))
        except ValueError:                     # not UTF-8 (UnicodeDecodeError), or not JSON
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(fields, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        unknown = set(fields) - ANSWER_KEYS
        if unknown:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"unknown field(s) "
                               f"{', '.join(sorted(unknown))}")
        return fields

    def log_message(self, format, *args):       # noqa: A002 - http.server's name
        """Quiet: the participant's clicks are not logged to the terminal."""
