"""transformer-serve: an HTTP server for a fine-tuned checkpoint (classification, translation, summarization).

    POST /predict  {"text": "..."} or {"text": ["...", ...]}, and optionally "decoding": {"beam_size": 5, ...}
                   -> one result, or for a list a list of results in the same order:
                   classification {"label", "probability", "probabilities": {label: p}, "truncated"},
                   seq2seq {"output", "score", "nbest": [{"output", "score"}, ...], "truncated"}
    GET  /health   {"status": "ok"} while the server answers predictions (503 once it is shutting down)
    GET  /info     the model (task, labels, source length), the decoding defaults, the limits and counters
    GET  /metrics  Prometheus metrics (text exposition format): requests by path and status code, latencies,
                   batch sizes, model-call time, queue depth, requests dropped before their model call

A bad request gets a 4xx and {"error": "<one line>"} (413 when over a size limit), a text that yields no tokens
included: it is refused alone, before it can join a batch. An exception inside the model fails the requests of that
model call with a 500, keeps its traceback in the server log, and the server goes on. An input longer than the
model's source length is truncated, as in training and predict.py, and its result says "truncated": true.

Dynamic batching (Batcher): a request waits up to batch_timeout seconds for others to join it, up to
max_batch_size texts; texts with the same decoding options then run as one model call. A seeded sampling request
draws its i-th text from mix_seed(seed, i), so its outputs do not depend on what else shares its batch.

Under load and abuse (ServeConfig's settings): at most max_queued requests wait for the model, and the next gets a
503 with Retry-After; a body must arrive within body_timeout seconds (408), an answer within request_timeout (504);
a request whose client has gone, or that timed out, is dropped before its model call; a client that disconnects
is one log line. A connection with no request in progress is closed after idle_timeout seconds, a new one that has
not sent a whole request head included (uvicorn's keep-alive timeout covers only connections that had a response).
SIGTERM or Ctrl-C stops accepting, answers 503 to requests still sending their body, answers the accepted ones,
and exits within shutdown_timeout seconds.

Why FastAPI and not LitServe: we tried LitServe (0.2.19) with this API first. It decodes requests inside the batch
worker, so one bad request in a dynamic batch turned every request of that batch into its 4xx; malformed JSON and
a JSON array gave 500s; it refuses port=0; and it runs three processes that pickle every request between them. Here
a request is checked in its HTTP handler before it joins a batch, and batching is one asyncio task feeding one
model thread. Metrics use prometheus_client (the `serve` extra), in a registry per app.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import random
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from transformer.decoding import DecodingConfig, sampling_seeds
from transformer.errors import ConfigError, UserError
from transformer.inference import Predictor
from transformer.schema import ServeConfig, typed

try:
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.exposition import choose_encoder
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from uvicorn.protocols.http.h11_impl import H11Protocol
except ImportError as error:  # the `serve` extra
    raise UserError(
        f"transformer-serve needs FastAPI and uvicorn ({error}): pip install 'transformer[serve]'"
    ) from None

log = logging.getLogger(__name__)

# The decoding options a request may set, with their JSON types (true and false are not numbers here).
OPTION_TYPES: dict[str, type] = {
    "beam_size": int,
    "nbest": int,
    "length_penalty": float,
    "max_len_a": float,
    "max_len_b": int,
    "min_len": int,
    "no_repeat_ngram_size": int,
    "sampling": bool,
    "temperature": float,
    "top_k": int,
    "top_p": float,
    "seed": int,  # or null: fresh samples
}
OPTION_LIMITS = {"beam_size": "max_beam_size", "nbest": "max_nbest", "max_len_b": "max_len_b"}  # option: ServeConfig
LIMIT_KEYS = (
    "max_batch_size", "batch_timeout", "max_texts", "max_chars", "max_request_bytes", *OPTION_LIMITS.values(),
    "max_queued", "body_timeout", "request_timeout", "idle_timeout", "shutdown_timeout",
)  # fmt: skip
REQUEST_SHAPE = '{"text": <a string or a list of strings>, "decoding": {<options>}}'
PATHS = ("/predict", "/health", "/info", "/metrics")  # metric labels; any other path counts as "other"
CLIENT_CLOSED = 499  # nginx's "client closed request": counted in the metrics, never received by anyone
CLOSE = {"Connection": "close"}  # after an answer sent before the body was read: the rest of it is not wanted


class RequestError(Exception):
    """A request the client must fix (or retry), answered with `status`, `headers` and {"error": message}."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers


class ModelError(Exception):
    """The model failed on a batch: its requests get a 500, and the traceback is in the server log."""


class ClientGone(Exception):
    """The client disconnected before its answer: one log line, and nothing left to compute for it."""


@dataclass
class Job:
    """One checked request: its texts, how to decode them, and the future its handler awaits."""

    texts: list[str]
    single: bool  # {"text": "..."}: answered with one result, not a list
    decoding: DecodingConfig | None = None  # None: a classifier
    seeds: list[int] | None = None  # sampling: one per text
    future: asyncio.Future | None = None
    started: bool = False  # its model call has begun
    dropped: str | None = None  # why its handler gave up on it (client gone, timeout, shutdown)

    def drop(self, reason: str) -> None:
        """The handler no longer waits: a job not yet started is skipped by the batcher."""
        if not self.future.done():
            self.future.cancel()
            self.dropped = reason


# --- checking a request: plain functions, each raising RequestError with a one-line reason ---


def parse_request(body: bytes, config: ServeConfig, defaults: DecodingConfig | None) -> Job:
    """A /predict body as a Job; `defaults` is the server's decoding (None for a classifier)."""
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise RequestError(f"the body must be a JSON object {REQUEST_SHAPE}, got a JSON {json_type(payload)}")
    unknown = sorted(set(payload) - {"text", "decoding"})
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r}: a request is {REQUEST_SHAPE}")
    if "text" not in payload:
        raise RequestError(f'missing field "text": a request is {REQUEST_SHAPE}')
    texts, single = parse_texts(payload["text"], config)
    decoding = parse_decoding(payload.get("decoding"), config, defaults)
    # a request without a seed gets a fresh one, so that its texts' draws are independent of each other
    return Job(texts, single, decoding, sampling_seeds(decoding, range(len(texts)), random.getrandbits(63)))


def parse_json(body: bytes) -> Any:
    """The JSON value of a body; NaN, Infinity and numbers beyond float range are refused."""
    try:
        return json.loads(body, parse_constant=refuse_constant, parse_float=finite_float)
    except RecursionError:
        raise RequestError("malformed JSON: nested too deeply") from None
    except ValueError as error:  # a JSONDecodeError, or bytes that are not UTF-8 (or -16, -32) text
        raise RequestError(f"malformed JSON: {error}") from None


def refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond the range of a float")
    return value


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null")


def parse_texts(value: Any, config: ServeConfig) -> tuple[list[str], bool]:
    """The texts of a request, and whether it sent one string rather than a list."""
    single = isinstance(value, str)
    texts = [value] if single else value
    if not isinstance(texts, list):
        raise RequestError(f'"text" must be a string or a list of strings, got a JSON {json_type(value)}')
    if not texts:
        raise RequestError('"text" is an empty list: send at least one text')
    if len(texts) > config.max_texts:
        raise RequestError(f'"text" has {len(texts)} texts, over max_texts={config.max_texts}: split it', 413)
    for i, text in enumerate(texts):
        where = '"text"' if single else f'"text"[{i}]'
        if not isinstance(text, str):
            raise RequestError(f"{where} must be a string, got a JSON {json_type(text)}")
        if not text.strip():
            raise RequestError(f"{where} is blank: send some text")
        if len(text) > config.max_chars:
            raise RequestError(f"{where} has {len(text)} characters, over max_chars={config.max_chars}", 413)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # JSON's "\ud800" escapes decode to lone surrogates
            raise RequestError(f"{where} is not valid Unicode: it holds a lone surrogate") from None
    return texts, single


def parse_decoding(options: Any, config: ServeConfig, defaults: DecodingConfig | None) -> DecodingConfig | None:
    """The server's decoding with the request's options applied, checked by DecodingConfig and the limits."""
    if options is None:
        return defaults
    if not isinstance(options, dict):
        raise RequestError(f'"decoding" must be an object such as {{"beam_size": 5}}, got a JSON {json_type(options)}')
    if defaults is None:
        if options:
            raise RequestError("this is a classifier: it takes no decoding options")
        return None
    values = {key: option_value(key, value) for key, value in options.items()}
    try:
        decoding = dataclasses.replace(defaults, **values)
        check_limits(decoding, config)
    except ConfigError as error:
        raise RequestError(str(error)) from None
    return decoding


def option_value(key: str, value: Any) -> Any:
    """A decoding option's value, checked against its type (an integer is a float too)."""
    kind = OPTION_TYPES.get(key)
    if kind is None:
        raise RequestError(f"unknown decoding option {key!r}: choose from {', '.join(OPTION_TYPES)}")
    if key == "seed" and value is None:
        return None
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is float and is_number:
        return float(value)
    if kind is bool and isinstance(value, bool) or kind is int and is_number and isinstance(value, int):
        return value
    expected = {int: "an integer", float: "a number", bool: "true or false"}[kind]
    raise RequestError(f"decoding option {key!r} must be {expected}, got a JSON {json_type(value)}")


def check_limits(decoding: DecodingConfig, config: ServeConfig) -> None:
    """The server's caps on the costliest settings (beam size, n-best list, generated-token budget); the ranges in
    which the arithmetic stays finite are DecodingConfig's own."""
    for key, limit_key in OPTION_LIMITS.items():
        value, limit = getattr(decoding, key), getattr(config, limit_key)
        if value > limit:
            raise ConfigError(f"decoding.{key}={value} is over the server's limit {limit_key}={limit}")


def check_tokens(job: Job, predictor: Predictor) -> None:
    """Every text must yield tokens: one that does not (zero-width or control characters only, which pass the
    not-blank check) is refused alone here, instead of giving NaN beside the texts of its batch."""
    for i, ids in enumerate(predictor.encode(job.texts)):
        if not ids:
            where = '"text"' if job.single else f'"text"[{i}]'
            raise RequestError(
                f"{where} yields no tokens (it holds only characters the tokenizer drops, such as zero-width or "
                f"control characters): send some text"
            )


# --- metrics ---


class Metrics:
    """The server's Prometheus metrics, in a registry of their own rather than prometheus_client's process-wide
    one, so that two apps in one process (the tests) count apart. Names follow Prometheus' conventions: a
    `transformer_serve_` prefix, base units (seconds), `_total` on counters."""

    def __init__(self, max_batch_size: int) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "transformer_serve_requests", "HTTP requests answered, by path and status code (499: the client left)",
            ["path", "code"], registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "transformer_serve_request_duration_seconds", "Time from a request's head to its answer, by path",
            ["path"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=registry,
        )  # fmt: skip
        self.in_progress = Gauge(
            "transformer_serve_requests_in_progress", "Requests being read, waiting or computed, by path", ["path"],
            registry=registry,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "transformer_serve_queue_depth", "Requests waiting for the model (at most max_queued)", registry=registry
        )
        sizes = sorted({2**i for i in range(max_batch_size.bit_length())} | {max_batch_size})
        self.batch_size = Histogram(
            "transformer_serve_batch_size", "Texts per model call", buckets=sizes, registry=registry
        )
        self.model_seconds = Histogram(
            "transformer_serve_model_call_duration_seconds", "Time of one model call (a batch of texts)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=registry,
        )  # fmt: skip
        self.dropped = Counter(
            "transformer_serve_dropped_requests", "Requests dropped before their model call, by reason", ["reason"],
            registry=registry,
        )  # fmt: skip

    def exposition(self, accept: str | None) -> Response:
        """GET /metrics: the text format, or OpenMetrics if the scraper asks for it (prometheus_client chooses)."""
        encode, content_type = choose_encoder(accept or "")
        return Response(encode(self.registry), media_type=content_type)


class Observe:
    """ASGI middleware: each HTTP request's status code, latency and progress in the metrics. A plain ASGI
    wrapper, not Starlette's BaseHTTPMiddleware, so that the handler still reads the client's disconnect."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in PATHS else "other"  # a bounded set of label values
        status = 500  # an exception before the response starts: Starlette answers 500
        start = time.perf_counter()

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_progress.labels(path).inc()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.in_progress.labels(path).dec()
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


# --- dynamic batching ---


class Batcher:
    """Dynamic batching: handlers queue their jobs; one task gathers the jobs that arrive within `timeout` seconds
    of the first, up to `max_batch_size` texts (a job is never split: one over the size runs alone), and runs them
    on one model thread, the jobs that share their decoding options as one model call. At most `max_queued` jobs
    wait; jobs whose handler gave up (client gone, timeout) are skipped, never computed."""

    def __init__(
        self,
        predictor: Predictor,
        max_batch_size: int,
        timeout: float,
        max_queued: int = 64,
        metrics: Metrics | None = None,
    ) -> None:
        self.predictor = predictor
        self.max_batch_size, self.timeout = max_batch_size, timeout
        self.queue: asyncio.Queue[Job] = asyncio.Queue(max_queued)
        self.held: Job | None = None  # the job that did not fit in the last batch: it starts the next one
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")  # one batch at a time
        self.stats = {"requests": 0, "texts": 0, "batches": 0, "largest_batch": 0}  # largest: in requests
        self.metrics = metrics or Metrics(max_batch_size)
        self.metrics.queue_depth.set_function(self.queue.qsize)
        self.seconds_per_job = 0.0  # moving average of model time per job: Retry-After's estimate
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        self.task.cancel()
        self.model_thread.shutdown(wait=False, cancel_futures=True)

    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    def submit(self, job: Job) -> asyncio.Future:
        """Queue the job: its future gets its results once its batch has run (ModelError if the model failed on
        it). A full queue is a 503 whose Retry-After is the time the queue takes to drain at the recent pace."""
        job.future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            retry = max(1, math.ceil(self.queue.qsize() * self.seconds_per_job))
            raise RequestError(
                f"the server is busy: {self.queue.qsize()} requests wait for the model (max_queued); retry in "
                f"{retry} s",
                503,
                {"Retry-After": str(retry)},
            ) from None
        return job.future

    async def run(self) -> None:
        """Runs batch after batch until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [job for job in await self.next_batch() if self.wanted(job)]  # or given up on while it gathered
            if not batch:
                continue
            for job in batch:
                job.started = True
            start = time.perf_counter()
            outcomes = await loop.run_in_executor(self.model_thread, self.run_batch, batch)
            self.count(batch, time.perf_counter() - start)
            for job, outcome in zip(batch, outcomes, strict=True):
                if job.future.done():  # its handler gave up while the model ran
                    continue
                if isinstance(outcome, ModelError):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    async def next_batch(self) -> list[Job]:
        """The next job still wanted, and those that join it before the timeout or the size limit."""
        first = self.held if self.held and self.wanted(self.held) else await self.next_wanted()
        self.held = None
        batch, size = [first], len(first.texts)
        deadline = asyncio.get_running_loop().time() + self.timeout
        while size < self.max_batch_size:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                job = self.queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self.queue.get(), remaining)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if not self.wanted(job):
                continue
            if size + len(job.texts) > self.max_batch_size:
                self.held = job
                break
            batch.append(job)
            size += len(job.texts)
        return batch

    async def next_wanted(self) -> Job:
        while not self.wanted(job := await self.queue.get()):
            pass
        return job

    def wanted(self, job: Job) -> bool:
        """False for a job its handler gave up on (counted as dropped): it never reaches the model."""
        if job.future.done():
            self.metrics.dropped.labels(job.dropped or "cancelled").inc()
            return False
        return True

    def run_batch(self, batch: list[Job]) -> list[list[dict[str, Any]] | ModelError]:
        """On the model thread: each job's results, or the ModelError of its model call."""
        groups: dict[Any, list[int]] = defaultdict(list)
        for i, job in enumerate(batch):
            groups[decoding_key(job.decoding)].append(i)
        outcomes: list[Any] = [None] * len(batch)
        for rows in groups.values():
            jobs = [batch[i] for i in rows]
            try:
                results = self.predict(jobs)
            except Exception as error:  # the server goes on; these requests get a 500, the log the traceback
                log.exception("the model failed on a batch of %d texts", sum(len(job.texts) for job in jobs))
                first_line = (str(error).strip().splitlines() or [""])[0]
                reason = ModelError(
                    f"the model failed on this request's batch ({type(error).__name__}: {first_line}); the traceback "
                    f"is in the server log"
                )
                results = [reason] * len(jobs)
            for i, result in zip(rows, results, strict=True):
                outcomes[i] = result
        return outcomes

    def predict(self, jobs: list[Job]) -> list[list[dict[str, Any]]]:
        """One model call for jobs that share their decoding options: the results of each job."""
        texts = [text for job in jobs for text in job.texts]
        seeds = None if jobs[0].seeds is None else [seed for job in jobs for seed in job.seeds]
        self.metrics.batch_size.observe(len(texts))
        start = time.perf_counter()
        results = self.predictor(texts, decoding=jobs[0].decoding, seeds=seeds)
        self.metrics.model_seconds.observe(time.perf_counter() - start)
        for result, ids in zip(results, self.predictor.encode(texts), strict=True):
            result["truncated"] = len(ids) > self.predictor.max_source_len
        starts = [0]
        for job in jobs:
            starts.append(starts[-1] + len(job.texts))
        return [results[start:end] for start, end in zip(starts, starts[1:], strict=False)]

    def count(self, batch: list[Job], seconds: float) -> None:
        self.stats["requests"] += len(batch)
        self.stats["texts"] += sum(len(job.texts) for job in batch)
        self.stats["batches"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
        self.seconds_per_job = 0.8 * self.seconds_per_job + 0.2 * seconds / len(batch)


def decoding_key(decoding: DecodingConfig | None) -> tuple | None:
    """Jobs with equal keys run as one model call. The seed is left out: a sampling job passes its own seeds."""
    return None if decoding is None else dataclasses.astuple(dataclasses.replace(decoding, seed=None))


# --- the HTTP app ---


class Shutdown:
    """A graceful shutdown's two moments, for the handlers: `started` (stop reading bodies: those requests get a
    503) and `over` (its time is up: requests still waiting for the model get a 503), so that every handler answers
    before uvicorn would cancel it (a traceback each)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.started, self.over = asyncio.Event(), asyncio.Event()

    def begin(self) -> None:
        self.started.set()
        asyncio.get_running_loop().call_later(self.timeout, self.over.set)


async def first_of(timeout: float, **waits: Awaitable) -> str:
    """Wait at most `timeout` seconds for the first of `waits` to finish: its name (its exception, if any, raised;
    on a tie the first named wins), else "timeout". The others are cancelled."""
    tasks = {asyncio.ensure_future(wait): name for name, wait in waits.items()}
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    for task, name in tasks.items():
        if task in done:
            task.result()
            return name
    return "timeout"


async def disconnected(receive: Callable) -> None:
    """Returns once the client has gone (its body already read, the next ASGI message is the disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def build_app(predictor: Predictor, config: ServeConfig) -> FastAPI:
    """The FastAPI app answering POST /predict, GET /health, /info and /metrics for a loaded Predictor. Its
    `state.shutdown` is told when a graceful shutdown starts (`server` does that)."""
    metrics = Metrics(config.max_batch_size)
    batcher = Batcher(predictor, config.max_batch_size, config.batch_timeout, config.max_queued, metrics)
    shutdown = Shutdown(config.shutdown_timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="transformer-serve", lifespan=lifespan)
    app.state.shutdown = shutdown
    app.add_middleware(Observe, metrics=metrics)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=error.headers)

    @app.exception_handler(ModelError)
    async def model_error(request: Request, error: ModelError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=500)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, error: ClientGone) -> Response:
        client = request.client
        log.info("client %s: %s", f"{client.host}:{client.port}" if client else "?", error)
        return Response(status_code=CLIENT_CLOSED)  # nobody reads it: the metrics count it

    @app.exception_handler(HTTPException)  # Starlette's own: unknown path (404), wrong method (405)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.get("/health")
    async def health() -> JSONResponse:
        if not batcher.alive():  # the batching task ended: a bug, whose traceback asyncio logs
            return JSONResponse({"status": "the batching task stopped"}, status_code=503)
        if shutdown.started.is_set():
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return describe(predictor, config, batcher.stats)

    @app.get("/metrics")
    async def metrics_page(request: Request) -> Response:
        return metrics.exposition(request.headers.get("accept"))

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        job = parse_request(await read_body(request, config, shutdown), config, predictor.decoding)
        check_tokens(job, predictor)
        results = await answer(job, batcher, request, config.request_timeout, shutdown)
        return JSONResponse(results[0] if job.single else results)

    return app


async def read_body(request: Request, config: ServeConfig, shutdown: Shutdown) -> bytes:
    """The request body: a 413 as soon as it is over max_request_bytes, a 408 if it has not all arrived within
    body_timeout seconds, a 503 if a shutdown starts meanwhile; ClientGone if the client disconnects."""
    limit = config.max_request_bytes
    too_big = RequestError(f"the request body is over max_request_bytes={limit}: send fewer or shorter texts", 413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise too_big

    expected = f" of {declared}" if declared.isdigit() else ""
    try:
        outcome = await first_of(config.body_timeout, body=read(), shutdown=shutdown.started.wait())
    except ClientDisconnect:
        raise ClientGone(f"disconnected after sending {len(body)}{expected} body bytes; nothing was computed") from None
    if outcome == "shutdown":
        raise RequestError("the server is shutting down: send the request again (to another instance)", 503, CLOSE)
    if outcome == "timeout":
        raise RequestError(
            f"the request body did not arrive within body_timeout={config.body_timeout:g}s ({len(body)}{expected} "
            f"bytes came): send the whole body at once",
            408,
            CLOSE,
        )
    return bytes(body)


async def answer(job: Job, batcher: Batcher, request: Request, timeout: float, shutdown: Shutdown) -> list[Any]:
    """The job's results from the batcher within `timeout` seconds, else a 504; a 503 if the shutdown's time is up
    first, ClientGone if the client disconnects first. In each of those cases, and if this handler is cancelled,
    the job is dropped: if the model has not started it, it is never computed."""
    future = batcher.submit(job)
    outcome = "cancelled"
    try:
        outcome = await first_of(
            timeout, answer=asyncio.shield(future), client_gone=disconnected(request.receive),
            shutdown=shutdown.over.wait(),
        )  # fmt: skip
    finally:
        if outcome != "answer":
            job.drop(outcome)
    if outcome == "answer":
        return future.result()
    if outcome == "client_gone":
        what = "its answer is discarded" if job.started else "dropped before its model call"
        raise ClientGone(f"went away while its request waited for the model: {what}")
    if outcome == "shutdown":
        raise RequestError("the server shut down before this request's turn: send it again (to another instance)", 503)
    raise RequestError(
        f"no answer within request_timeout={timeout:g}s: the server is busy; retry later, or raise request_timeout",
        504,
    )


def describe(predictor: Predictor, config: ServeConfig, stats: dict[str, int]) -> dict[str, Any]:
    """GET /info: what the model does, the decoding a request starts from, the limits, and the counters."""
    decoding = predictor.decoding
    return {
        "checkpoint": str(predictor.path),
        "task": predictor.artifacts.task,
        "objective": predictor.objective,
        "labels": predictor.label_names or None,  # None: a seq2seq model
        "max_source_tokens": predictor.max_source_len,  # longer inputs are truncated (their result says so)
        "decoding": None if decoding is None else {key: getattr(decoding, key) for key in OPTION_TYPES},
        "limits": {key: getattr(config, key) for key in LIMIT_KEYS},
        "stats": dict(stats),
    }


# --- the HTTP server ---


class IdleTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, with its keep-alive timeout (timeout_keep_alive) applied from the moment a
    connection opens or a response ends until a whole request head has arrived. uvicorn arms that timer only after
    a response, and any byte disarms it, so a client that connects and sends nothing, or half a request head,
    would hold its connection for ever. The deadline is not moved by the bytes that do arrive (slowloris)."""

    head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.arm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.waiting_for_head() and self.head_timer is not None:
            self.head_timer.cancel()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
        super().connection_lost(exc)

    def waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def arm_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
        self.head_timer = self.loop.call_later(self.timeout_keep_alive, self.close_if_idle)

    def close_if_idle(self) -> None:
        if self.waiting_for_head() and not self.transport.is_closing():
            self.transport.close()


class GracefulServer(uvicorn.Server):
    """uvicorn's server, telling the app's handlers (through `Shutdown`) when a graceful shutdown starts."""

    def __init__(self, config: uvicorn.Config, draining: Shutdown) -> None:
        super().__init__(config)
        self.draining = draining

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.draining.begin()
        await super().shutdown(sockets)


def server(app: FastAPI, config: ServeConfig) -> uvicorn.Server:
    """A uvicorn server for the app with the settings' timeouts: idle connections closed after idle_timeout, and a
    graceful shutdown whose handlers answer within shutdown_timeout (uvicorn cancels what is left a second later)."""
    settings = uvicorn.Config(
        app,
        http=IdleTimeoutH11,
        timeout_keep_alive=config.idle_timeout,
        timeout_graceful_shutdown=config.shutdown_timeout + 1,
        log_config=None,
        log_level="warning",
        access_log=False,
    )
    return GracefulServer(settings, app.state.shutdown)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), bound before the startup line gives its URL."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port} ({error.strerror or error}): pass another port= (0: any free one) or host="
        ) from None
    return sock


def serve(cfg: DictConfig) -> None:
    """Load the checkpoint, then answer HTTP requests until interrupted (Ctrl-C or SIGTERM: a graceful shutdown
    of at most shutdown_timeout seconds)."""
    config: ServeConfig = typed(cfg)
    predictor = Predictor(config.ckpt, config.decoding)
    if predictor.decoding is not None:
        check_limits(predictor.decoding, config)
    sock = listen(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    log.info(
        "serving %s (%s) at %s (POST /predict, GET /health, GET /info, GET /metrics)",
        predictor.path,
        predictor.artifacts.task,
        url,
    )
    server(build_app(predictor, config), config).run(sockets=[sock])
