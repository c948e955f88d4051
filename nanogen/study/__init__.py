"""A real-vs-generated study: ``nanogen study DIR [DIR ...]`` serves a page on localhost that
shows real test images and samples of the given runs one at a time, in random order, asks "real
or generated?", and keeps every answer in ``study.jsonl``; the page's summary gives, per model
and for the real images, the fraction judged real with a 95% Wilson interval -- the "% labeled
real" of the GAN papers' human studies (Salimans et al. 2016; Denton et al. 2015).

* :mod:`~nanogen.study.stats` -- the fraction judged real and its Wilson interval;
* :mod:`~nanogen.study.store` -- the append-only answer file (fsync'ed, safe with two servers);
* :mod:`~nanogen.study.pool` -- the images, drawn once at start-up and served by opaque ids;
* :mod:`~nanogen.study.server` -- the HTTP server (standard library) and its routes;
* ``page.html`` -- the page: inline HTML, CSS and JavaScript, nothing loaded from the network.
"""
from __future__ import annotations

import os
import sys

from .pool import ImagePool, pool_from_runs
from .server import StudyServer
from .stats import Z95, summarize, wilson_interval
from .store import AnswerStore, read_answers

__all__ = ["ImagePool", "pool_from_runs", "StudyServer", "AnswerStore", "read_answers",
           "summarize", "wilson_interval", "Z95", "serve"]


def serve(pool, out, port: int = 8000, announce=None) -> None:
    """Serve ``pool`` on 127.0.0.1:``port`` until interrupted (Ctrl-C), answers appended to
    ``out``.  ``announce(server)`` is called once the port is bound (default: a line on
    stderr).  A port that cannot be bound, or an ``out`` with no directory to live in, is a
    ValueError."""
    folder = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out) or not os.path.isdir(folder):
        raise ValueError(f"--out {out}: the answers go to a file in an existing directory")
    try:
        server = StudyServer(pool, out, port)
    except OSError as e:
        raise ValueError(f"cannot listen on 127.0.0.1:{port} ({e.strerror or e}); pick another "
                         f"--port, or 0 for any free one") from None
    with server:
        (announce or _announce)(server)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def _announce(server):
    counts = ", ".join(f"{n} {label}" for label, n in server.pool.counts.items())
    print(f"study: {len(server.pool)} images ({counts}) at {server.url} ; answers appended to "
          f"{os.path.abspath(server.store.path)} ; Ctrl-C stops", file=sys.stderr, flush=True)
