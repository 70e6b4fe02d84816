"""transformer-serve (transformer/serve.py): request checks as plain functions, the batcher in-process, then real
servers in subprocesses on free loopback ports, one per task, answering as the Predictor does in-process, batching
concurrent requests, and refusing every bad request with a one-line 4xx while staying up."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import ROOT, run_script
from prometheus_client.parser import text_string_to_metric_families

from transformer.decoding import DecodingConfig, mix_seed
from transformer.errors import ConfigError, UserError
from transformer.inference import Predictor
from transformer.schema import ServeConfig
from transformer.serve import Batcher, Job, ModelError, RequestError, build_app, listen, parse_request
from transformer.serve import server as make_server

LIMITS = ["max_texts=4", "max_chars=200", "max_request_bytes=8192", "max_beam_size=5", "max_nbest=3"]
TIMEOUTS = ["idle_timeout=1", "body_timeout=1"]  # short, for the tests of stalled and idle clients
CONFIG = ServeConfig(ckpt="unused", max_texts=4, max_chars=200, max_request_bytes=8192, max_beam_size=5, max_nbest=3)

# (body, status, part of the one-line reason): every way a request can be wrong
BAD_REQUESTS = [
    (b'{"text": "a"', 400, "malformed JSON"),
    (b"", 400, "malformed JSON"),
    (b"[" * 5000, 400, "nested too deeply"),
    (b'{"text": "a", "decoding": {"top_p": NaN}}', 400, "NaN is not a JSON number"),
    (b'{"text": "a", "decoding": {"top_p": 1e999}}', 400, "beyond the range of a float"),
    (b'["a"]', 400, "the body must be a JSON object"),
    (b'{"decoding": {}}', 400, 'missing field "text"'),
    (b'{"text": "a", "texts": ["b"]}', 400, "unknown field 'texts'"),
    (b'{"text": 5}', 400, '"text" must be a string or a list of strings, got a JSON number'),
    (b'{"text": ["a", null]}', 400, '"text"[1] must be a string, got a JSON null'),
    (b'{"text": []}', 400, '"text" is an empty list'),
    (b'{"text": " "}', 400, '"text" is blank'),
    (b'{"text": "\\ud800"}', 400, "lone surrogate"),
    (json.dumps({"text": ["a"] * 5}).encode(), 413, '"text" has 5 texts, over max_texts=4'),
    (json.dumps({"text": ["a", "b" * 201]}).encode(), 413, '"text"[1] has 201 characters, over max_chars=200'),
    (b'{"text": "a", "decoding": [1]}', 400, '"decoding" must be an object'),
    (b'{"text": "a", "decoding": {"beams": 2}}', 400, "unknown decoding option 'beams'"),
    (b'{"text": "a", "decoding": {"beam_size": "2"}}', 400, "'beam_size' must be an integer, got a JSON string"),
    (b'{"text": "a", "decoding": {"beam_size": 2.5}}', 400, "'beam_size' must be an integer"),
    (b'{"text": "a", "decoding": {"sampling": 1}}', 400, "'sampling' must be true or false"),
    (b'{"text": "a", "decoding": {"temperature": true}}', 400, "'temperature' must be a number"),
    (
        b'{"text": "a", "decoding": {"beam_size": 6}}',
        400,
        "decoding.beam_size=6 is over the server's limit max_beam_size=5",
    ),
    (b'{"text": "a", "decoding": {"sampling": true, "nbest": 4}}', 400, "limit max_nbest=3"),
    (b'{"text": "a", "decoding": {"max_len_b": 300}}', 400, "decoding.max_len_b=300 is over the server's limit"),
    (b'{"text": "a", "decoding": {"sampling": true, "temperature": 0}}', 400, "temperature=0.0 is outside [0.01"),
    (b'{"text": "a", "decoding": {"sampling": true, "temperature": -1.5}}', 400, "temperature=-1.5 is outside"),
    (b'{"text": "a", "decoding": {"sampling": true, "temperature": 1e-300}}', 400, "temperature=1e-300 is outside"),
    (b'{"text": "a", "decoding": {"sampling": true, "top_p": 1e-300}}', 400, "top_p=1e-300 is outside [1e-06, 1]"),
    (b'{"text": "a", "decoding": {"max_len_a": 1e308}}', 400, "max_len_a=1e+308 is outside [0, 100]"),
    (b'{"text": "a", "decoding": {"beam_size": 2, "nbest": 3}}', 400, "decoding.nbest=3 must be between 1 and"),
    (b'{"text": "a", "decoding": {"beam_size": 0}}', 400, "beam sizes must be >= 1"),
    (b'{"text": "a", "decoding": {"length_penalty": -200}}', 400, "length_penalty=-200.0 is outside [-10, 10]"),
]


# --- checking requests, without HTTP ---


@pytest.mark.parametrize(("body", "status", "reason"), BAD_REQUESTS, ids=[r for _, _, r in BAD_REQUESTS])
def test_parse_request_refuses_each_bad_request_in_one_line(body, status, reason):
    with pytest.raises(RequestError) as caught:
        parse_request(body, CONFIG, DecodingConfig())
    assert caught.value.status == status
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_parse_request_reads_texts_and_applies_options_to_the_defaults():
    defaults = DecodingConfig(beam_size=4, max_len_b=10)
    job = parse_request(b'{"text": "a dog"}', CONFIG, defaults)
    assert (job.texts, job.single, job.decoding, job.seeds) == (["a dog"], True, defaults, None)

    body = {"text": ["a", "b"], "decoding": {"beam_size": 3, "nbest": 2, "length_penalty": 1}}
    job = parse_request(json.dumps(body).encode(), CONFIG, defaults)
    assert (job.texts, job.single) == (["a", "b"], False)
    assert job.decoding == dataclasses.replace(defaults, beam_size=3, nbest=2, length_penalty=1.0)

    sample = {"text": ["a", "b", "c"], "decoding": {"sampling": True, "seed": 7}}
    job = parse_request(json.dumps(sample).encode(), CONFIG, defaults)
    assert job.seeds == [mix_seed(7, i) for i in range(3)]  # by position in the request, not in a batch
    unseeded = [parse_request(b'{"text": "a", "decoding": {"sampling": true}}', CONFIG, defaults) for _ in range(2)]
    assert unseeded[0].seeds != unseeded[1].seeds  # fresh draws


def test_a_classifier_takes_no_decoding_options():
    assert parse_request(b'{"text": "fine", "decoding": {}}', CONFIG, None).decoding is None
    with pytest.raises(RequestError, match="this is a classifier: it takes no decoding options"):
        parse_request(b'{"text": "fine", "decoding": {"beam_size": 2}}', CONFIG, None)


def test_server_settings_are_checked():
    with pytest.raises(ConfigError, match="max_batch_size must be >= 1"):
        ServeConfig(ckpt="x", max_batch_size=0)
    with pytest.raises(ConfigError, match="port must be between 0"):
        ServeConfig(ckpt="x", port=70000)
    with pytest.raises(ConfigError, match="batch_timeout must be >= 0"):
        ServeConfig(ckpt="x", batch_timeout=-1)
    with pytest.raises(ConfigError, match="max_queued must be >= 1, got 0"):
        ServeConfig(ckpt="x", max_queued=0)
    for key in ("body_timeout", "request_timeout", "idle_timeout", "shutdown_timeout"):
        for bad in (0.0, -1.0, math.inf, math.nan):
            with pytest.raises(ConfigError, match=f"^{key} must be a positive number of seconds, got"):
                ServeConfig(ckpt="x", **{key: bad})
    with socket.create_server(("127.0.0.1", 0)) as taken, pytest.raises(UserError, match="cannot listen on"):
        listen("127.0.0.1", taken.getsockname()[1])


# --- the batcher, in-process, on a stand-in model ---


class FakePredictor:
    """Echoes its texts and records its calls; fails on any text containing "boom"."""

    max_source_len = 3
    decoding, objective, label_names, path, artifacts = (
        None,
        "classification",
        ["x"],
        "fake.ckpt",
        SimpleNamespace(task="fake"),
    )

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], Any, Any]] = []

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [[0] * len(text.split()) for text in texts]

    def __call__(self, texts, decoding=None, seeds=None):
        self.calls.append((texts, decoding, seeds))
        if any("boom" in text for text in texts):
            raise RuntimeError("boom\nsecond line")
        return [{"output": text} for text in texts]


def run_jobs(batcher: Batcher, jobs: list[Job]) -> list[Any]:
    """Submit all jobs at once, return each one's results or exception."""

    async def main():
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit(job) for job in jobs), return_exceptions=True)
        await batcher.stop()
        return answers

    return asyncio.run(main())


def test_batcher_runs_each_decoding_as_one_call_and_answers_in_order():
    fake = FakePredictor()
    beam2, beam3 = DecodingConfig(beam_size=2), DecodingConfig(beam_size=3)
    sampled = [DecodingConfig(sampling=True, seed=seed) for seed in (1, 2)]
    jobs = [
        Job(["a", "b"], False, beam2),
        Job(["c"], True, beam3),
        Job(["d one two three"], True, beam2),
        Job(["e"], True, sampled[0], [11]),
        Job(["f", "g"], False, sampled[1], [21, 22]),  # another seed, the same draws: one call
    ]
    answers = run_jobs(Batcher(fake, max_batch_size=32, timeout=0.05), jobs)
    assert [[r["output"] for r in answer] for answer in answers] == [
        ["a", "b"],
        ["c"],
        ["d one two three"],
        ["e"],
        ["f", "g"],
    ]
    assert [r["truncated"] for r in answers[2]] == [True]  # 4 tokens, over max_source_len=3
    assert sorted((texts, seeds) for texts, _, seeds in fake.calls) == [
        (["a", "b", "d one two three"], None),
        (["c"], None),
        (["e", "f", "g"], [11, 21, 22]),
    ]


def test_batcher_keeps_batches_within_max_batch_size_and_never_splits_a_request():
    fake = FakePredictor()
    jobs = [Job(["a", "b"], False), Job(["c", "d"], False), Job(["e", "f", "g"], False), Job(["h"], True)]
    batcher = Batcher(fake, max_batch_size=3, timeout=0.05)
    run_jobs(batcher, jobs)
    assert [texts for texts, _, _ in fake.calls] == [["a", "b"], ["c", "d"], ["e", "f", "g"], ["h"]]
    assert batcher.stats == {"requests": 4, "texts": 8, "batches": 4, "largest_batch": 1}


def test_a_model_error_fails_only_its_call_with_a_logged_traceback(caplog):
    fake = FakePredictor()
    jobs = [Job(["fine"], True), Job(["boom"], True), Job(["fine too"], True, DecodingConfig(beam_size=2))]
    with caplog.at_level(logging.ERROR, logger="transformer.serve"):
        answers = run_jobs(Batcher(fake, max_batch_size=32, timeout=0.05), jobs)
    assert isinstance(answers[0], ModelError) and isinstance(answers[1], ModelError)  # one model call
    assert str(answers[1]) == (
        "the model failed on this request's batch (RuntimeError: boom); the traceback is in the server log"
    )
    assert answers[2][0]["output"] == "fine too"
    assert "Traceback" in caplog.text and "RuntimeError: boom" in caplog.text


class GatedPredictor(FakePredictor):
    """A FakePredictor whose model call on a text containing "hold" blocks until `gate` is set: a model that is
    busy exactly as long as a test wants."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.holding = threading.Event(), threading.Event()

    def __call__(self, texts, decoding=None, seeds=None):
        results = super().__call__(texts, decoding, seeds)  # the call is recorded as it starts
        if any("hold" in text for text in texts):
            self.holding.set()
            assert self.gate.wait(60), "the test never opened the gate"
        return results


class InProcess:
    """The app on a real uvicorn server (serve.server: its protocol, timeouts and graceful shutdown) on a free
    loopback port, in a thread of the test process; `stop()` is what SIGTERM does (uvicorn's should_exit)."""

    def __init__(self, predictor, **settings: Any) -> None:
        self.config = dataclasses.replace(CONFIG, **settings)
        sock = listen("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.server = make_server(build_app(predictor, self.config), self.config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]})
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started, "the in-process server did not start"

    def request(self, body: bytes | dict, method: str = "POST", path: str = "/predict") -> tuple[int, dict, Any]:
        return exchange(self.port, method, path, json.dumps(body).encode() if isinstance(body, dict) else body)

    def in_background(self, body: dict) -> Any:
        """A request sent from another thread: a future of (status, headers, answer)."""
        return self.pool.submit(self.request, body)

    @property
    def pool(self) -> ThreadPoolExecutor:
        if not hasattr(self, "_pool"):
            self._pool = ThreadPoolExecutor(8)
        return self._pool

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.request(b"", "GET", "/metrics"), name, **labels)

    def stop(self) -> None:
        self.server.should_exit = True

    def close(self) -> None:
        self.stop()
        self.thread.join(timeout=60)
        if hasattr(self, "_pool"):
            self._pool.shutdown(wait=False)


def wait_until(condition, timeout: float = 10, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.02)


def metric_value(response: tuple[int, dict, Any], name: str, **labels: str) -> float:
    """One sample of a /metrics answer (parsed by prometheus_client's own parser); 0 if absent."""
    status, headers, text = response
    assert status == 200 and headers["content-type"].startswith("text/plain; version=")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_a_model_error_is_a_one_line_500_and_the_server_goes_on(caplog):
    app = InProcess(FakePredictor())
    try:
        failed, fine = (app.request(body) for body in (b'{"text": "boom"}', b'{"text": "fine"}'))
    finally:
        app.close()
    assert failed[0] == 500 and failed[2]["error"].startswith("the model failed on this request's batch (RuntimeError")
    assert fine[::2] == (200, {"output": "fine", "truncated": False})
    assert "Traceback" in caplog.text


def test_a_full_queue_gets_a_503_with_retry_after_and_the_queued_requests_are_answered():
    model = GatedPredictor()
    app = InProcess(model, max_queued=2, max_batch_size=1, batch_timeout=0)
    try:
        running = app.in_background({"text": "hold"})
        assert model.holding.wait(10)
        queued = [app.in_background({"text": text}) for text in ("b", "c")]
        wait_until(lambda: app.metric("transformer_serve_queue_depth") == 2, what="two queued requests")
        status, headers, refused = app.request({"text": "d"})
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert refused["error"].startswith("the server is busy: 2 requests wait for the model (max_queued); retry in")
        model.gate.set()
        answers = [future.result(timeout=30) for future in (running, *queued)]
        assert [(status, answer["output"]) for status, _, answer in answers] == [(200, "hold"), (200, "b"), (200, "c")]
        assert app.metric("transformer_serve_requests_total", path="/predict", code="503") == 1
    finally:
        model.gate.set()
        app.close()
    assert [texts for texts, _, _ in model.calls] == [["hold"], ["b"], ["c"]]  # "d" was never queued


def test_requests_whose_client_left_or_that_timed_out_never_reach_the_model(caplog):
    model = GatedPredictor()
    app = InProcess(model, max_batch_size=1, batch_timeout=0, request_timeout=1)
    try:
        with caplog.at_level(logging.INFO, logger="transformer.serve"):
            running = app.in_background({"text": "hold"})
            assert model.holding.wait(10)
            leaving = socket.create_connection(("127.0.0.1", app.port), timeout=10)
            leaving.sendall(http_request(b'{"text": "left"}'))
            client_port = leaving.getsockname()[1]
            wait_until(lambda: app.metric("transformer_serve_queue_depth") == 1, what="the request queued")
            leaving.close()  # the client gives up while its request waits
            wait_until(lambda: app.metric("transformer_serve_requests_total", code="499") == 1, what="the 499")
            status, _, late = app.request({"text": "late"})  # queued behind "hold" for over request_timeout
            assert status == 504 and late["error"].startswith("no answer within request_timeout=1s: the server is busy")
            model.gate.set()
            assert running.result(timeout=30)[0] == 504  # it timed out too, inside the model: its answer is discarded
            assert app.request({"text": "next"})[::2] == (200, {"output": "next", "truncated": False})
            assert app.metric("transformer_serve_dropped_requests_total", reason="client_gone") == 1
            assert app.metric("transformer_serve_dropped_requests_total", reason="timeout") == 1
    finally:
        model.gate.set()
        app.close()
    assert [texts for texts, _, _ in model.calls] == [["hold"], ["next"]]
    lines = [line for line in caplog.text.splitlines() if f":{client_port}:" in line]
    assert (
        len(lines) == 1
        and "went away while its request waited for the model: dropped before its model call" in (lines[0])
    )


def test_shutdown_answers_the_accepted_requests_and_refuses_a_stalled_body():
    model = GatedPredictor()
    app = InProcess(model, max_batch_size=1, batch_timeout=0, shutdown_timeout=20)
    try:
        running = app.in_background({"text": "hold"})
        assert model.holding.wait(10)
        queued = app.in_background({"text": "queued"})
        stalled = socket.create_connection(("127.0.0.1", app.port), timeout=10)
        stalled.sendall(http_request(b'{"text": "never finished"}')[:-5])
        wait_until(lambda: app.metric("transformer_serve_requests_in_progress", path="/predict") == 3, what="3 in")
        app.stop()  # what SIGTERM does
        status, _, answer = read_response(stalled)
        assert status == 503 and answer["error"].startswith("the server is shutting down: send the request again")
        time.sleep(0.3)
        assert app.thread.is_alive()  # draining: the accepted requests are still to be answered
        model.gate.set()
        assert [future.result(timeout=30)[::2] for future in (running, queued)] == [
            (200, {"output": "hold", "truncated": False}),
            (200, {"output": "queued", "truncated": False}),
        ]
        app.thread.join(timeout=10)
        assert not app.thread.is_alive()
    finally:
        model.gate.set()
        app.close()


def test_shutdown_ends_within_shutdown_timeout_even_if_the_model_does_not(caplog):
    model = GatedPredictor()
    app = InProcess(model, max_batch_size=1, batch_timeout=0, shutdown_timeout=1)
    try:
        running = app.in_background({"text": "hold"})
        assert model.holding.wait(10)
        queued = app.in_background({"text": "queued"})
        wait_until(lambda: app.metric("transformer_serve_queue_depth") == 1, what="the request queued")
        start = time.monotonic()
        app.stop()
        answers = [future.result(timeout=30) for future in (running, queued)]
        app.thread.join(timeout=10)
        took = time.monotonic() - start
        assert not app.thread.is_alive() and took < 1 + 2, took  # shutdown_timeout, and a second of slack
        assert [status for status, _, _ in answers] == [503, 503]
        assert answers[1][2]["error"].startswith("the server shut down before this request's turn")
    finally:
        model.gate.set()
        app.close()
    assert [texts for texts, _, _ in model.calls] == [["hold"]]
    assert "Traceback" not in caplog.text  # every handler answered: uvicorn had nothing to cancel


def http_request(body: bytes, path: str = "/predict") -> bytes:
    """The bytes of a POST with a JSON body, as a client sends them."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_response(sock: socket.socket) -> tuple[int, dict, Any]:
    """(status, headers, parsed JSON) of the response on a raw socket."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())


def exchange(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, dict, Any]:
    """(status, headers with lower-case names, the answer: parsed JSON, text for /metrics) of one request."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        data = response.read()
        return response.status, headers, data.decode() if path == "/metrics" else json.loads(data)
    finally:
        connection.close()


def call(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """(status, parsed JSON answer) of one request to a loopback server."""
    status, _, answer = exchange(port, method, path, body)
    return status, answer


# --- real servers ---


class Server:
    """scripts/serve.py in a subprocess on a free loopback port (port=0: its startup line gives the URL)."""

    def __init__(self, log_path: Path, *overrides: str) -> None:
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
        with log_path.open("w") as log:  # a file, not a pipe: a full pipe would block the server
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "scripts" / "serve.py"), "port=0", *overrides],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=log_path.parent,
                env={**env, "PYTHONWARNINGS": "ignore"},
            )
        self.port = 0

    def wait_until_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not self.port:
            found = re.search(r"at http://127\.0\.0\.1:(\d+) ", self.log())
            if found:
                self.port = int(found.group(1))
            elif self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start:\n{self.log()[-3000:]}")
            else:
                time.sleep(0.2)
        assert self.request("GET", "/health") == (200, {"status": "ok"})

    def log(self) -> str:
        return self.log_path.read_text()

    def request(self, method: str, path: str, body: bytes | dict | list | None = None) -> tuple[int, Any]:
        """(status, parsed JSON answer)."""
        data = json.dumps(body).encode() if isinstance(body, dict | list) else body
        return call(self.port, method, path, data)

    def predict(self, body: dict) -> Any:
        status, answer = self.request("POST", "/predict", body)
        assert status == 200, answer
        return answer

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(exchange(self.port, "GET", "/metrics"), name, **labels)

    def rss_mib(self) -> float:
        """The server process' resident memory."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def servers(runs, tmp_path_factory):
    """A server for each run, started side by side; batch_timeout is long enough for concurrent requests to meet."""
    folder = tmp_path_factory.mktemp("servers")
    started = {
        task: Server(folder / f"{task}.log", f"ckpt={run}", "batch_timeout=0.1", *LIMITS, *TIMEOUTS)
        for task, run in runs.items()
    }
    try:
        for server in started.values():
            server.wait_until_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def predictors(runs) -> dict[str, Predictor]:
    """The same checkpoints in-process: the answers the servers must give."""
    return {task: Predictor(str(run)) for task, run in runs.items()}


def without_flag(results: list[dict]) -> list[dict]:
    assert all(result.pop("truncated") is False for result in results)
    return results


def same_class(answer: dict, expected: dict) -> bool:
    """A server's classification answer is the in-process one (probabilities up to float rounding)."""
    probabilities = answer.pop("probabilities")
    return answer == pytest.approx(
        {k: v for k, v in expected.items() if k != "probabilities"}, abs=1e-5
    ) and probabilities == pytest.approx(expected["probabilities"], abs=1e-5)


def test_health_and_info_describe_each_model(servers, predictors):
    for task, server in servers.items():
        assert server.request("GET", "/health") == (200, {"status": "ok"})
        status, info = server.request("GET", "/info")
        assert status == 200
        assert (info["task"], info["objective"]) == (task, predictors[task].objective)
        assert info["max_source_tokens"] == predictors[task].max_source_len
        assert info["limits"]["max_texts"] == 4 and info["limits"]["max_beam_size"] == 5
    sentiment = servers["sentiment"].request("GET", "/info")[1]
    assert sentiment["labels"] == predictors["sentiment"].label_names and sentiment["decoding"] is None
    translation = servers["translation"].request("GET", "/info")[1]
    assert translation["decoding"]["beam_size"] == predictors["translation"].decoding.beam_size


def test_classification_answers_as_the_predictor_does(servers, predictors):
    texts = ["a wonderful film", "dull and far too long", "it was fine"]
    expected = predictors["sentiment"](texts)
    one = servers["sentiment"].predict({"text": texts[0]})
    assert isinstance(one, dict) and one["label"] in predictors["sentiment"].label_names
    assert same_class(without_flag([one])[0], expected[0])
    answers = servers["sentiment"].predict({"text": texts})
    assert len(answers) == 3 and all(map(same_class, without_flag(answers), expected))  # a list, in order


def test_translation_answers_as_the_predictor_does_with_request_options(servers, predictors):
    predictor, server = predictors["translation"], servers["translation"]
    texts = ["Two dogs run in the park.", "A man is sleeping."]
    one = server.predict({"text": texts[0]})
    assert without_flag([one]) == predictor(texts[:1])
    options = {"beam_size": 3, "nbest": 2, "max_len_b": 5}
    answers = server.predict({"text": texts, "decoding": options})
    assert without_flag(answers) == predictor(texts, decoding=dataclasses.replace(predictor.decoding, **options))
    assert all(len(answer["nbest"]) == 2 for answer in answers)


def test_inputs_over_the_source_length_are_truncated_and_say_so(servers, predictors):
    texts = ["a great film", "x y " * 50]  # 200 characters, 200 tokens
    assert [len(ids) > predictors["sentiment"].max_source_len for ids in predictors["sentiment"].encode(texts)] == [
        False,
        True,
    ]
    answers = servers["sentiment"].predict({"text": texts})
    assert [answer["truncated"] for answer in answers] == [False, True]


def same_outputs(answers: list[dict], expected: list[dict]) -> bool:
    """Seq2seq answers with the same outputs, scores equal up to float rounding (padding differs by batch)."""

    def outputs(results):
        return [[result["output"]] + [hyp["output"] for hyp in result["nbest"]] for result in results]

    def scores(results):
        return [score for result in results for score in [result["score"]] + [hyp["score"] for hyp in result["nbest"]]]

    return outputs(answers) == outputs(expected) and scores(answers) == pytest.approx(scores(expected), abs=1e-5)


def at_once(port: int, bodies: list[dict]) -> list[tuple[int, dict, Any]]:
    """POST the bodies to /predict at the same moment, one thread each: (status, headers, answer) of each."""
    start = threading.Barrier(len(bodies))

    def send(body):
        start.wait()
        return exchange(port, "POST", "/predict", json.dumps(body).encode())

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def concurrently(server: Server, bodies: list[dict]) -> list[tuple[int, Any]]:
    """Send the bodies at the same moment, one thread each: (status, answer) of each."""
    return [(status, answer) for status, _, answer in at_once(server.port, bodies)]


def test_concurrent_requests_are_batched_and_answered_in_order(servers, predictors):
    server = servers["sentiment"]
    texts = [f"review number {i} was {'good' if i % 2 else 'bad'}" for i in range(8)]
    before = server.request("GET", "/info")[1]["stats"]
    answers = concurrently(server, [{"text": text} for text in texts])
    after = server.request("GET", "/info")[1]["stats"]
    assert [status for status, _ in answers] == [200] * 8
    for (_, answer), expected in zip(answers, predictors["sentiment"](texts), strict=True):
        assert same_class(without_flag([answer])[0], expected)
    assert after["requests"] - before["requests"] == 8
    assert after["largest_batch"] > 1 and after["batches"] - before["batches"] < 8


def test_seeded_sampling_is_reproducible_and_independent_of_its_batch(servers, predictors):
    server, predictor = servers["translation"], predictors["translation"]
    options = {"sampling": True, "seed": 7, "nbest": 2, "top_p": 0.9, "max_len_b": 6}
    request = {"text": ["A dog.", "The cat sleeps on the warm mat."], "decoding": options}
    alone = server.predict(request)
    assert server.predict(request) == alone
    others = [
        {"text": ["Some children play football in a field today."], "decoding": {**options, "seed": 8}},
        {"text": ["Hello."], "decoding": {**options, "seed": None}},
        {"text": ["A woman reads."]},
    ]
    together = concurrently(server, [request, *others])
    assert together[0][0] == 200 and same_outputs(together[0][1], alone)
    decoding = dataclasses.replace(predictor.decoding, **options)
    expected = predictor(request["text"], decoding=decoding, seeds=[mix_seed(7, i) for i in range(2)])
    assert same_outputs(without_flag(alone), expected)


@pytest.mark.parametrize(("body", "status", "reason"), BAD_REQUESTS, ids=[r for _, _, r in BAD_REQUESTS])
def test_bad_requests_get_a_one_line_4xx_and_the_server_stays_up(servers, body, status, reason):
    server = servers["translation"]
    answer = server.request("POST", "/predict", body)
    assert answer[0] == status and reason in answer[1]["error"] and "\n" not in answer[1]["error"]
    assert server.request("GET", "/health") == (200, {"status": "ok"})


def test_size_limits_paths_and_methods_get_a_4xx(servers):
    server = servers["sentiment"]
    status, answer = server.request("POST", "/predict", json.dumps({"text": ["a " * 90] * 4 * 12}).encode())
    assert (status, answer) == (
        413,
        {"error": "the request body is over max_request_bytes=8192: send fewer or shorter texts"},
    )
    assert server.request("POST", "/predict", {"text": "a", "decoding": {"nbest": 2}}) == (
        400,
        {"error": "this is a classifier: it takes no decoding options"},
    )
    assert server.request("GET", "/predict") == (405, {"error": "Method Not Allowed"})
    assert server.request("GET", "/nowhere") == (404, {"error": "Not Found"})
    assert server.request("GET", "/health") == (200, {"status": "ok"})


def test_a_bad_request_does_not_fail_the_good_ones_in_its_batch(servers):
    server = servers["translation"]
    bodies = [{"text": "A dog runs."}, {"text": "a", "decoding": {"beam_size": 99}}, {"text": 3}, {"text": "A cat."}]
    answers = concurrently(server, bodies)
    assert [status for status, _ in answers] == [200, 400, 400, 200]
    for task, s in servers.items():
        assert "Traceback" not in s.log(), f"{task} server log:\n{s.log()[-3000:]}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ckpt=/nonexistent/model.ckpt"], "error: checkpoint /nonexistent/model.ckpt does not exist"),
        (["ckpt=unused.ckpt", "max_batch_size=0"], "error: max_batch_size must be >= 1, got 0"),
    ],
)
def test_cli_bad_settings_end_in_one_line_with_status_2(args, message, tmp_path):
    result = run_script("serve.py", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message) and len(result.stderr.strip().splitlines()) == 1


# --- the real servers under abuse ---


def test_a_text_without_tokens_is_refused_alone_and_its_batch_neighbours_succeed(servers, predictors):
    """The poison test: per round, 8 ordinary requests sent at the same moment as two that hold a text without
    tokens (which once made a translation batch fail whole, and a classifier answer NaN)."""
    texts = [f"A dog runs in the park number {i}." for i in range(8)]
    poison = [{"text": "\u200b"}, {"text": ["A cat.", "\x01\x02"]}]
    for task, server in servers.items():
        expected = predictors[task](texts)
        for _ in range(3):
            answers = concurrently(server, [*({"text": text} for text in texts), *poison])
            assert [status for status, _ in answers] == [200] * 8 + [400, 400], answers
            for (_, answer), result in zip(answers[:8], expected, strict=True):
                if task == "sentiment":
                    assert same_class(without_flag([answer])[0], result)
                else:
                    assert same_outputs(without_flag([answer]), [result])
            assert answers[8][1]["error"].startswith('"text" yields no tokens (it holds only characters the tokenizer')
            assert answers[9][1]["error"].startswith('"text"[1] yields no tokens')
        assert "Traceback" not in server.log()


def test_metrics_follow_the_prometheus_text_format(servers):
    server = servers["sentiment"]
    codes = ("200", "400")
    before = {code: server.metric("transformer_serve_requests_total", path="/predict", code=code) for code in codes}
    assert server.request("POST", "/predict", {"text": "fine"})[0] == 200
    assert server.request("POST", "/predict", {"text": 5})[0] == 400
    assert server.request("GET", "/nowhere/123")[0] == 404
    status, headers, text = exchange(server.port, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    ours = [name for name in families if name.startswith("transformer_serve_") and not name.endswith("_created")]
    assert {name: families[name].type for name in ours} == {
        "transformer_serve_requests": "counter",
        "transformer_serve_request_duration_seconds": "histogram",
        "transformer_serve_requests_in_progress": "gauge",
        "transformer_serve_queue_depth": "gauge",
        "transformer_serve_batch_size": "histogram",
        "transformer_serve_model_call_duration_seconds": "histogram",
        "transformer_serve_dropped_requests": "counter",
    }
    after = {code: metric_value((status, headers, text), "transformer_serve_requests_total", path="/predict",
                                code=code) for code in codes}  # fmt: skip
    assert after == {code: before[code] + 1 for code in codes}
    assert metric_value((status, headers, text), "transformer_serve_requests_total", path="other", code="404") >= 1
    assert metric_value((status, headers, text), "transformer_serve_batch_size_count") >= 1
    assert metric_value((status, headers, text), "transformer_serve_queue_depth") == 0


def test_idle_connections_are_closed_after_idle_timeout(servers):
    server = servers["sentiment"]
    silent, half, kept = server.connect(), server.connect(), server.connect()
    half.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")  # a request head that never ends
    kept.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")  # keep-alive after a whole exchange
    assert read_response(kept)[::2] == (200, {"status": "ok"})
    start = time.monotonic()
    for sock in (silent, half, kept):
        with sock:
            assert sock.recv(1) == b"", "the server closes the connection"
    assert time.monotonic() - start < 1 + 3  # idle_timeout=1, with slack for a busy machine


def test_a_stalled_body_gets_a_408_after_body_timeout(servers):
    server = servers["sentiment"]
    body = b'{"text": "it stops here and never ends"}'
    with server.connect() as stalled:
        stalled.sendall(http_request(body)[:-10])
        start = time.monotonic()
        status, headers, answer = read_response(stalled)
        assert time.monotonic() - start < 1 + 3
        assert stalled.recv(1) == b""  # and closes the connection
    assert (status, headers["connection"]) == (408, "close")
    assert answer["error"] == (
        f"the request body did not arrive within body_timeout=1s ({len(body) - 10} of {len(body)} bytes came): send "
        f"the whole body at once"
    )
    assert server.request("GET", "/health") == (200, {"status": "ok"})


def test_a_client_that_disconnects_mid_body_is_one_log_line(servers):
    server = servers["translation"]
    body = b'{"text": "A dog runs in the park."}'
    with server.connect() as leaving:
        leaving.sendall(http_request(body)[:-10])
        client_port = leaving.getsockname()[1]
    wait_until(lambda: f":{client_port}:" in server.log(), what="the log line")
    lines = [line for line in server.log().splitlines() if f":{client_port}" in line]
    assert len(lines) == 1 and lines[0].endswith(
        f"client 127.0.0.1:{client_port}: disconnected after sending {len(body) - 10} of {len(body)} body bytes; "
        f"nothing was computed"
    )
    assert "Traceback" not in server.log()
    assert server.request("GET", "/health") == (200, {"status": "ok"})


@pytest.fixture(scope="module")
def busy(runs, tmp_path_factory):
    """A translation server with room for 2 waiting requests, running one request per model call."""
    folder = tmp_path_factory.mktemp("busy")
    server = Server(folder / "busy.log", f"ckpt={runs['translation']}", "max_queued=2", "max_batch_size=1",
                    "batch_timeout=0", *LIMITS)  # fmt: skip
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.stop()


def test_overload_gets_503s_answers_every_accepted_request_and_keeps_memory_flat(busy):
    """Rounds of 24 heavy requests at once against a queue of 2: the rest get a 503 at once, with Retry-After; each
    accepted one is answered; the server's memory after the last round is that after the first."""
    heavy = {"text": "A man is sleeping.", "decoding": {"beam_size": 5, "min_len": 40, "max_len_b": 60}}
    refused = 0
    for round_number in range(4):
        if round_number == 1:
            memory = busy.rss_mib()  # after a first round has warmed up the allocator and the caches
        answers = at_once(busy.port, [heavy] * 24)
        statuses = [status for status, _, _ in answers]
        assert set(statuses) == {200, 503}, statuses  # some answered, some refused, none failed or timed out
        for status, headers, answer in answers:
            if status == 200:
                assert len(answer["nbest"]) == 1 and isinstance(answer["output"], str)
            else:
                assert int(headers["retry-after"]) >= 1 and answer["error"].startswith("the server is busy")
        refused += statuses.count(503)
    assert busy.rss_mib() - memory < 50, (memory, busy.rss_mib())
    assert busy.metric("transformer_serve_requests_total", path="/predict", code="503") == refused
    assert busy.metric("transformer_serve_queue_depth") == 0
    assert "Traceback" not in busy.log()


def test_sigterm_with_a_client_stalled_mid_body_ends_the_server_within_shutdown_timeout(runs, tmp_path):
    server = Server(tmp_path / "server.log", f"ckpt={runs['sentiment']}", "shutdown_timeout=3", "body_timeout=300")
    try:
        server.wait_until_ready()
        with server.connect() as stalled:
            stalled.sendall(http_request(b'{"text": "it stops here"}')[:-5])
            wait_until(lambda: server.metric("transformer_serve_requests_in_progress", path="/predict") == 1)
            start = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            status, _, answer = read_response(stalled)
            assert status == 503 and answer["error"].startswith("the server is shutting down")
        server.process.wait(timeout=3 + 10)  # shutdown_timeout, and slack for the interpreter's exit
        assert time.monotonic() - start < 3 + 10
    finally:
        server.stop()
    assert "Traceback" not in server.log()
