"""The real-vs-generated study (``nanogen study``): the Wilson interval against its definition
and its coverage, the summary against a direct count, the append-only answer file (two writers,
a cut line, a killed server), the HTTP routes (4xx for malformed requests, 404 for every path
outside them), and the page itself in headless Chromium driven by Selenium.

The browser test needs Chromium and chromedriver from the system's packages (Debian:
``apt-get install chromium chromium-driver``; ``tests/run.sh`` installs them where it can).
Where they are missing it fails, saying so, rather than skipping: the page is the feature.
"""
import http.client
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given
from PIL import Image
from hypothesis import strategies as st
from scipy.stats import binom

from nanogen.study import (Z95, AnswerStore, ImagePool, StudyServer, pool_from_runs,
                           read_answers, summarize, wilson_interval)
from nanogen.study.server import MAX_BODY

from .test_cli import run_cli

REAL_LABEL, MODELS = "real:digits/test", ("runs/model-a", "runs/model-b")
HEX16 = re.compile(r"[0-9a-f]{16}")


# -- the statistics --------------------------------------------------------------------------------
def wilson_by_roots(k, n, z=Z95):
    """The interval as the roots of (k/n - p)^2 = z^2 p (1 - p) / n, solved as a quadratic
    a p^2 + b p + c = 0 (another algebraic route than the module's centre +- half)."""
    a = 1 + z * z / n
    b = -(2 * k / n + z * z / n)
    c = (k / n) ** 2
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_is_the_pair_of_roots_of_the_score_equation(case):
    k, n = case
    low, high = wilson_interval(k, n)
    ref_low, ref_high = wilson_by_roots(k, n)
    assert low == pytest.approx(max(0.0, ref_low), abs=1e-12)
    assert high == pytest.approx(min(1.0, ref_high), abs=1e-12)
    assert 0.0 <= low <= k / n <= high <= 1.0
    assert high > low                                      # never empty, even at k = 0 or n
    mirrored = wilson_interval(n - k, n)                   # "real" and "generated" swap
    assert mirrored[0] == pytest.approx(1 - high, abs=1e-12)
    assert mirrored[1] == pytest.approx(1 - low, abs=1e-12)


def test_wilson_interval_written_out_values():
    z2 = Z95 ** 2
    assert Z95 == pytest.approx(1.959963984540054, abs=1e-15)
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))    # 0.2775
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0))
    assert wilson_interval(5, 10) == pytest.approx((0.2365931, 0.7634069), abs=1e-7)


@pytest.mark.parametrize("n, p", [(20, 0.5), (50, 0.1), (100, 0.3), (100, 0.85)])
def test_wilson_interval_covers_the_true_fraction_about_95_percent_of_the_time(n, p):
    """Exact coverage: the binomial probability of the k whose interval contains p."""
    coverage = sum(binom.pmf(k, n, p) for k in range(n + 1)
                   if wilson_interval(k, n)[0] <= p <= wilson_interval(k, n)[1])
    assert 0.92 <= coverage <= 0.98, coverage


@pytest.mark.parametrize("k, n, message", [(1, 0, "no answers"), (3, 2, "exceeds"),
                                           (-1, 5, "non-negative"), (True, 5, "non-negative"),
                                           (1, 2.0, "non-negative")])
def test_wilson_interval_refuses_bad_counts(k, n, message):
    with pytest.raises(ValueError, match=message):
        wilson_interval(k, n)


def test_summary_matches_a_direct_count():
    rng = np.random.default_rng(3)
    sources = [(REAL_LABEL, "real"), (MODELS[0], "generated"), (MODELS[1], "generated")]
    records = []
    for _ in range(300):
        source, truth = sources[rng.integers(3)]
        records.append({"source": source, "truth": truth,
                        "answer": ["real", "generated"][rng.integers(2)]})
    rows = summarize(records[::-1])                 # order of appearance must not matter...
    assert [row["source"] for row in rows][0] == REAL_LABEL     # ...except real comes first
    assert {row["source"] for row in rows} == {s for s, _ in sources}
    for row in rows:
        mine = [r for r in records if r["source"] == row["source"]]
        judged_real = sum(r["answer"] == "real" for r in mine)
        assert row["answers"] == len(mine) and row["judged_real"] == judged_real
        assert row["fraction_real"] == judged_real / len(mine)
        assert row["ci95"] == pytest.approx(wilson_by_roots(judged_real, len(mine)))


# -- the answer file -------------------------------------------------------------------------------
def answer(i, source=MODELS[0], writer="a"):
    return {"source": source, "truth": "generated", "answer": "real", "i": i, "writer": writer}


def test_two_writers_on_one_file_keep_every_answer(tmp_path):
    path = tmp_path / "study.jsonl"
    stores = [AnswerStore(path), AnswerStore(path)]          # as two servers would hold

    def write(store, writer):
        for i in range(150):
            store.append(answer(i, writer=writer))

    threads = [threading.Thread(target=write, args=(s, w)) for s, w in zip(stores, "ab")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers, damaged = read_answers(path)
    assert damaged == 0 and len(answers) == 300
    for writer in "ab":
        assert [r["i"] for r in answers if r["writer"] == writer] == list(range(150))


def test_two_processes_append_to_one_file(tmp_path):
    path = tmp_path / "study.jsonl"
    AnswerStore(path).append(answer(-1, writer="before"))
    script = ("import sys; from nanogen.study.store import AnswerStore\n"
              "s = AnswerStore(sys.argv[1])\n"
              "for i in range(100): s.append({'source': 'm', 'truth': 'generated', "
              "'answer': 'real', 'i': i, 'writer': sys.argv[2], 'pad': 'x' * 300})\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), w]) for w in "ab"]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    answers, damaged = read_answers(path)
    assert damaged == 0 and len(answers) == 201 and answers[0]["writer"] == "before"
    for writer in "ab":
        assert [r["i"] for r in answers if r["writer"] == writer] == list(range(100))


def test_a_line_cut_short_costs_only_itself(tmp_path):
    path = tmp_path / "study.jsonl"
    store = AnswerStore(path)
    store.append(answer(0))
    with open(path, "ab") as f:                       # a crash in the middle of a write
        f.write(b'{"source": "runs/model-a", "tru')
    assert read_answers(path) == ([answer(0)], 1)
    store.append(answer(1))                           # starts on a line of its own
    store.append(answer(2))
    assert read_answers(path) == ([answer(0), answer(1), answer(2)], 1)
    with open(path, "ab") as f:                       # JSON, but not an answer
        f.write(b'[1, 2]\n{"source": "x", "truth": 1, "answer": "real"}\n\n')
    assert read_answers(path) == ([answer(0), answer(1), answer(2)], 3)
    assert read_answers(tmp_path / "none.jsonl") == ([], 0)


# -- a server on a pool of made-up images ----------------------------------------------------------
@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    return ImagePool({REAL_LABEL: ("real", rng.random((4, 1, 28, 28))),
                      MODELS[0]: ("generated", rng.random((3, 1, 28, 28))),
                      MODELS[1]: ("generated", np.zeros((3, 1, 28, 28)))})


@contextmanager
def serving(pool, out):
    server = StudyServer(pool, out, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def request(server, method, path, body=None, headers=None):
    """``(status, headers, body bytes)`` of one raw request: http.client sends the path as
    written (no normalisation of '..'), and only the headers given (plus Host)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True,
                              skip_host="Host" in (headers or {}))
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def post_answer(server, fields, raw=None, content_type="application/json"):
    body = raw if raw is not None else json.dumps(fields).encode()
    status, _, data = request(server, "POST", "/api/answer", body,
                              {"Content-Type": content_type, "Content-Length": len(body)})
    return status, json.loads(data)


def new_session(server):
    status, _, data = request(server, "GET", "/api/order")
    assert status == 200
    return json.loads(data)


def test_the_routes_serve_the_page_the_images_by_id_and_store_answers(pool, tmp_path):
    out = tmp_path / "study.jsonl"
    with serving(pool, out) as server:
        status, headers, page = request(server, "GET", "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b"Real or generated?" in page
        assert not re.search(rb"""(src|href)=["']?(https?:)?//""", page)   # nothing from the net
        first, second = new_session(server), new_session(server)
        assert sorted(first["ids"]) == sorted(second["ids"]) and len(first["ids"]) == 10
        assert first["ids"] != second["ids"]            # each page its own order (p = 1/10!)
        assert first["session"] != second["session"]
        assert all(HEX16.fullmatch(i) for i in first["ids"])          # ids say nothing
        for image_id in first["ids"]:
            status, headers, png = request(server, "GET", f"/image/{image_id}.png")
            assert status == 200 and headers["Content-Type"] == "image/png"
            assert png == pool[image_id][2] and png.startswith(b"\x89PNG\r\n\x1a\n")
        status, headers, body = request(server, "HEAD", "/")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(page)
        given_answers = []
        for image_id, choice in zip(first["ids"][:6], ["real", "generated"] * 3):
            status, reply = post_answer(server, {"session": first["session"], "image": image_id,
                                                 "answer": choice, "ms": 1500})
            assert status == 200, reply
            given_answers.append((image_id, choice))
        assert reply["answered"] == 6
        answers, damaged = read_answers(out)
        assert damaged == 0
        assert [(r["image"], r["answer"]) for r in answers] == given_answers
        assert [r["source"] for r in answers] == [pool[i][0] for i, _ in given_answers]
        assert all(r["session"] == first["session"] and r["ms"] == 1500 for r in answers)
        assert reply["summary"] == summarize(answers)
        status, _, data = request(server, "GET", "/api/summary")
        assert status == 200 and json.loads(data)["summary"] == summarize(answers)


def test_malformed_requests_get_a_4xx_and_store_nothing(pool, tmp_path):
    out = tmp_path / "study.jsonl"
    with serving(pool, out) as server:
        order = new_session(server)
        session, image_id = order["session"], order["ids"][0]
        good = {"session": session, "image": image_id, "answer": "real"}
        cases = {
            "not JSON": (400, None, b"{not json"),
            "not UTF-8": (400, None, b'{"answer": "\xff"}'),
            "a list": (400, None, b"[1, 2]"),
            "unknown image": (400, {**good, "image": "0123456789abcdef"}, None),
            "image not a string": (400, {**good, "image": 7}, None),
            "unknown session": (400, {**good, "session": "f" * 32}, None),
            "session not an id": (400, {**good, "session": "../../etc"}, None),
            "answer not real/generated": (400, {**good, "answer": "maybe"}, None),
            "answer missing": (400, {"session": session, "image": image_id}, None),
            "an extra field": (400, {**good, "source": "real"}, None),
            "negative ms": (400, {**good, "ms": -1}, None),
            "ms a bool": (400, {**good, "ms": True}, None),
        }
        for name, (expected, fields, raw) in cases.items():
            status, reply = post_answer(server, fields, raw)
            assert status == expected and reply["error"], name
        status, reply = post_answer(server, good, content_type="text/plain")
        assert status == 415, reply
        status, _, _ = request(server, "POST", "/api/answer", b"x" * (MAX_BODY + 1),
                               {"Content-Type": "application/json",
                                "Content-Length": MAX_BODY + 1})
        assert status == 413
        status, _, _ = request(server, "POST", "/api/answer", None,
                               {"Content-Type": "application/json"})
        assert status == 411
        status, _, _ = request(server, "POST", "/api/answer", b"{}",
                               {"Content-Type": "application/json", "Content-Length": "-2"})
        assert status == 400
        for method, path in [("GET", "/api/answer"), ("PUT", "/"), ("DELETE", "/api/order"),
                             ("POST", "/"), ("PATCH", f"/image/{image_id}.png")]:
            status, headers, _ = request(server, method, path)
            assert status == 405 and headers["Allow"], (method, path)
        for host in ("evil.example", "evil.example:%d" % server.port, "127.0.0.1:1"):
            status, _, body = request(server, "GET", "/", headers={"Host": host})
            assert status == 403 and b"Real or generated" not in body, host
        assert not out.exists()                       # nothing was stored...
        assert post_answer(server, good)[0] == 200    # ...and the server still works
        assert post_answer(server, good)[0] == 409    # the same image twice in a session
        assert len(read_answers(out)[0]) == 1


def test_nothing_outside_the_routes_is_served(pool, tmp_path):
    out = tmp_path / "study.jsonl"
    (tmp_path / "secret.txt").write_text("SECRET")
    image_id = pool.shuffled_ids()[0]
    outside = ["/..", "/../", "/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
               "/image/../secret.txt", "/image/..%2f..%2fsecret.txt", f"/image/{image_id}",
               f"/image/{image_id.upper()}.png", f"/image/{image_id}.png/..",
               f"/image/../image/{image_id}.png", "/image/0000000000000000.png",
               "/page.html", "/nanogen/study/page.html", "/study.jsonl", f"/{out}",
               f"/{tmp_path}/secret.txt", "/secret.txt", "//etc/passwd", "/api", "/api/",
               "/api/order/..", "/favicon.ico", f"/{MODELS[0]}", f"/{MODELS[0]}/checkpoint.npz"]
    with serving(pool, out) as server:
        for path in outside:
            for method in ("GET", "HEAD"):
                status, _, body = request(server, method, path)
                assert status == 404, (method, path, status)
                assert b"SECRET" not in body and b"Real or generated" not in body


# -- the command, its answer file, a killed server -------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A VAE trained for 2 steps: enough for the study to draw samples of it."""
    out = tmp_path_factory.mktemp("study-run") / "vae"
    status, _, err = run_cli("train", "vae", "--arg", "latent_dim=3", "--arg", "channels=[4,8]",
                             "--batch-size", 8, "--steps", 2, "--no-progress", "--out", out)
    assert status == 0, err
    return out


def decoded(png: bytes, scale: int = 1) -> bytes:
    """A PNG's pixels (uint8), every ``scale``-th row and column: the image before enlarging."""
    with Image.open(io.BytesIO(png)) as picture:
        return np.asarray(picture)[::scale, ::scale].tobytes()


def test_the_pool_holds_the_samples_nanogen_sample_draws_and_real_images_like_them(tiny_run,
                                                                                   tmp_path):
    pool, real_label = pool_from_runs([str(tiny_run)], num_samples=4, seed=0)
    assert real_label == "real:mnist5k/test" and len(pool) == 8
    assert pool.counts == {real_label: 4, str(tiny_run): 4}
    by_source = {}
    for image_id in pool.shuffled_ids():
        label, truth, png = pool[image_id]
        assert truth == ("real" if label == real_label else "generated")
        by_source.setdefault(label, []).append(decoded(png, scale=10))
    # the run's samples are the ones `nanogen sample --seed 0` draws (a 2 x 2 grid, padding 2)
    grid_file = tmp_path / "grid.png"
    status, _, err = run_cli("sample", tiny_run, "--n", 4, "--seed", 0, "--out", grid_file)
    assert status == 0, err
    with Image.open(grid_file) as picture:
        grid = np.asarray(picture)
    tiles = [grid[2 + 30 * r:30 + 30 * r, 2 + 30 * c:30 + 30 * c].tobytes()
             for r in range(2) for c in range(2)]
    assert sorted(by_source[str(tiny_run)]) == sorted(tiles)
    # a VAE is trained on binarized digits, so the real digits it is compared with are binary
    for pixels in by_source[real_label]:
        assert set(np.frombuffer(pixels, np.uint8)) <= {0, 255}
    again, _ = pool_from_runs([str(tiny_run)], num_samples=4, seed=0)     # seeded: the same
    assert sorted(decoded(again[i][2]) for i in again.shuffled_ids()) == \
        sorted(decoded(pool[i][2]) for i in pool.shuffled_ids())


def _interruptible():
    """In the child before it runs: SIGINT back to its default action.  A shell that starts a
    job in the background without job control (CI runners, `cmd &` in a script) ignores SIGINT
    in it, and Python installs its KeyboardInterrupt handler only where SIGINT is not ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def study_process(run_dir, out, num_samples=4):
    """``nanogen study RUN --port 0`` in a process of its own; yields (process, port)."""
    process = subprocess.Popen([sys.executable, "-m", "nanogen", "study", str(run_dir),
                                "--port", "0", "--num-samples", str(num_samples), "--out",
                                str(out)], stderr=subprocess.PIPE, text=True,
                               preexec_fn=_interruptible)
    try:
        line = process.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line + process.stderr.read() if process.poll() is not None else line
        assert str(out) in line and f"{num_samples} real:mnist5k/test" in line, line
        yield process, int(match.group(1))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        process.stderr.close()


class _Port:
    """What :func:`request` needs of a server: its port."""

    def __init__(self, port):
        self.port = port


def test_a_killed_server_loses_no_answer_and_a_second_server_appends(tiny_run, tmp_path):
    out = tmp_path / "study.jsonl"
    sent = []
    with study_process(tiny_run, out) as (process, port):
        server = _Port(port)
        order = new_session(server)
        assert len(order["ids"]) == 8                # 4 samples of the run, 4 real images
        for image_id in order["ids"][:5]:
            status, _ = post_answer(server, {"session": order["session"], "image": image_id,
                                             "answer": "generated"})
            assert status == 200
            sent.append(image_id)
        process.send_signal(signal.SIGKILL)          # no chance to flush or close anything
        process.wait(timeout=30)
    first = read_answers(out)
    assert first[1] == 0 and [r["image"] for r in first[0]] == sent
    assert {r["source"] for r in first[0]} <= {"real:mnist5k/test", str(tiny_run)}
    before = out.read_bytes()
    with study_process(tiny_run, out) as (process, port):
        server = _Port(port)
        order = new_session(server)
        assert order["summary"] == summarize(first[0])     # the old answers count
        for image_id in order["ids"][:2]:
            assert post_answer(server, {"session": order["session"], "image": image_id,
                                        "answer": "real"})[0] == 200
        process.send_signal(signal.SIGINT)           # Ctrl-C: a clean stop
        assert process.wait(timeout=30) == 0
    assert out.read_bytes().startswith(before)       # appended, not overwritten
    answers, damaged = read_answers(out)
    assert damaged == 0 and len(answers) == 7
    assert len({r["server"] for r in answers}) == 2


def test_study_command_errors_are_one_line(tiny_run, tmp_path):
    from .test_cli import assert_one_line_error
    status, _, err = run_cli("study", tiny_run, "--num-samples", 0)
    assert_one_line_error(status, err, "--num-samples")
    status, _, err = run_cli("study", tiny_run, tiny_run)
    assert_one_line_error(status, err, "named twice")
    status, _, err = run_cli("study", tiny_run, "--num-samples", 2, "--out",
                             tmp_path / "no" / "such" / "dir.jsonl")
    assert_one_line_error(status, err, "--out")
    status, _, err = run_cli("study", tmp_path / "not-a-run")
    assert_one_line_error(status, err)
    with StudyServer(ImagePool({"r": ("real", np.zeros((1, 1, 4, 4)))}), tmp_path / "x",
                     port=0) as busy:                 # a port someone already listens on
        status, _, err = run_cli("study", tiny_run, "--num-samples", 2, "--port", busy.port,
                                 "--out", tmp_path / "s.jsonl")
    assert_one_line_error(status, err, "cannot listen", "--port")


# -- the page in a real browser --------------------------------------------------------------------
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = ("install Chromium and its driver from the system's packages (Debian: apt-get "
           "install chromium chromium-driver; tests/run.sh does it where apt-get is usable) "
           "and Selenium (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium under Selenium.  Missing pieces fail the test, naming what to
    install: the study page is the feature this test exists for."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"the study page's browser test needs selenium: {INSTALL}")
    binary = next(filter(None, map(shutil.which, BROWSERS)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.fail(f"the study page's browser test needs Chromium and chromedriver, and "
                    f"{'chromedriver' if binary else 'Chromium'} is not on PATH: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


def test_the_page_in_a_browser_records_each_click_and_sums_up_the_answers(pool, tmp_path,
                                                                          browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    out = tmp_path / "study.jsonl"
    wait = WebDriverWait(browser, 20)

    def ready(expected_answers):
        """The page has stored ``expected_answers`` and shows the next image, buttons on."""
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute(
            "data-answered") == str(expected_answers) and
            d.find_element(By.ID, "answer-real").is_enabled())
        image = browser.find_element(By.ID, "study-image")
        assert browser.execute_script("return arguments[0].complete && "
                                      "arguments[0].naturalWidth", image) == 280
        return image.get_attribute("data-id")

    with serving(pool, out) as server:
        browser.get(server.url)
        assert browser.title.startswith("Real or generated?")
        clicks = ["real", "generated", "generated", "real", "real"]
        shown = []
        for i, choice in enumerate(clicks):
            shown.append(ready(i))
            assert shown[-1] in pool and shown[-1] not in shown[:-1]
            if i == 4:      # the keyboard works too
                browser.find_element(By.TAG_NAME, "body").send_keys("r")
            else:
                browser.find_element(By.ID, f"answer-{choice}").click()
            wait.until(lambda d: len(read_answers(out)[0]) == i + 1)   # stored at once
            record = read_answers(out)[0][-1]
            assert (record["image"], record["answer"]) == (shown[-1], choice)
            assert record["source"] == pool[shown[-1]][0]
        ready(len(clicks))
        progress = browser.find_element(By.ID, "progress").text
        assert progress == f"Image {len(clicks) + 1} of {len(pool)}"

        browser.find_element(By.CSS_SELECTOR, "#results summary").click()
        rows = browser.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
        table = {row.get_attribute("data-source"): [td.text for td in
                                                    row.find_elements(By.TAG_NAME, "td")]
                 for row in rows}
        expected = {}
        for image_id, choice in zip(shown, clicks):
            label = pool[image_id][0]
            n, k = expected.get(label, (0, 0))
            expected[label] = (n + 1, k + (choice == "real"))
        assert set(table) == set(expected)
        for label, (n, k) in expected.items():
            low, high = wilson_by_roots(k, n)
            assert table[label] == [label, str(n), str(k), f"{100 * k / n:.1f}%",
                                    f"{100 * max(0, low):.1f}% - {100 * min(1, high):.1f}%"]

        origins = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
        assert set(origins) <= {server.url.rstrip("/")}, origins     # nothing from elsewhere
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
