"""transformer-serve: an HTTP server for a fine-tuned checkpoint (classification, translation, summarization).

    POST /predict  {"text": "..."} or {"text": ["...", ...]}, and optionally "decoding": {"beam_size": 5, ...}
                   -> one result, or for a list a list of results in the same order:
                   classification {"label", "probability", "probabilities": {label: p}, "truncated"},
                   seq2seq {"output", "score", "nbest": [{"output", "score"}, ...], "truncated"}
    GET  /health   {"status": "ok"} while the server answers predictions
    GET  /info     the model (task, labels, source length), the decoding defaults, the limits and counters

A bad request gets a 4xx and {"error": "<one line>"} (413 when over a size limit). An exception inside the model
fails the requests of that model call with a 500, keeps its traceback in the server log, and the server goes on.
An input longer than the model's source length is truncated, as in training and predict.py, and its result says
"truncated": true.

Dynamic batching (Batcher): a request waits up to batch_timeout seconds for others to join it, up to
max_batch_size texts; texts with the same decoding options then run as one model call. A seeded sampling request
draws its i-th text from mix_seed(seed, i), so its outputs do not depend on what else shares its batch.

Why FastAPI and not LitServe: we tried LitServe (0.2.19) with this API first. It decodes requests inside the batch
worker, so one bad request in a dynamic batch turned every request of that batch into its 4xx; malformed JSON and
a JSON array gave 500s; it refuses port=0; and it runs three processes that pickle every request between them. Here
a request is checked in its HTTP handler before it joins a batch, and batching is one asyncio task feeding one
model thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import random
import socket
from collections import defaultdict
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
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException
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
LIMIT_KEYS = ("max_batch_size", "batch_timeout", "max_texts", "max_chars", "max_request_bytes", *OPTION_LIMITS.values())
REQUEST_SHAPE = '{"text": <a string or a list of strings>, "decoding": {<options>}}'


class RequestError(Exception):
    """A request the client must fix, answered with `status` and {"error": message}."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ModelError(Exception):
    """The model failed on a batch: its requests get a 500, and the traceback is in the server log."""


@dataclass
class Job:
    """One checked request: its texts, how to decode them, and the future its handler awaits."""

    texts: list[str]
    single: bool  # {"text": "..."}: answered with one result, not a list
    decoding: DecodingConfig | None = None  # None: a classifier
    seeds: list[int] | None = None  # sampling: one per text
    future: asyncio.Future | None = None


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


# --- dynamic batching ---


class Batcher:
    """Dynamic batching: handlers queue their jobs; one task gathers the jobs that arrive within `timeout` seconds
    of the first, up to `max_batch_size` texts (a job is never split: one over the size runs alone), and runs them
    on one model thread, the jobs that share their decoding options as one model call."""

    def __init__(self, predictor: Predictor, max_batch_size: int, timeout: float) -> None:
        self.predictor = predictor
        self.max_batch_size, self.timeout = max_batch_size, timeout
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.held: Job | None = None  # the job that did not fit in the last batch: it starts the next one
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")  # one batch at a time
        self.stats = {"requests": 0, "texts": 0, "batches": 0, "largest_batch": 0}  # largest: in requests
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        self.task.cancel()
        self.model_thread.shutdown(wait=False, cancel_futures=True)

    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    async def submit(self, job: Job) -> list[dict[str, Any]]:
        """The job's results, once its batch has run (ModelError if the model failed on it)."""
        job.future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(job)
        return await job.future

    async def run(self) -> None:
        """Runs batch after batch until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.next_batch()
            outcomes = await loop.run_in_executor(self.model_thread, self.run_batch, batch)
            self.count(batch)
            for job, outcome in zip(batch, outcomes, strict=True):
                if job.future.done():  # its handler was cancelled
                    continue
                if isinstance(outcome, ModelError):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    async def next_batch(self) -> list[Job]:
        """The next job, and those that join it before the timeout or the size limit."""
        first = self.held or await self.queue.get()
        self.held = None
        batch, size = [first], len(first.texts)
        deadline = asyncio.get_running_loop().time() + self.timeout
        while size < self.max_batch_size:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                job = self.queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self.queue.get(), remaining)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if size + len(job.texts) > self.max_batch_size:
                self.held = job
                break
            batch.append(job)
            size += len(job.texts)
        return batch

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
        results = self.predictor(texts, decoding=jobs[0].decoding, seeds=seeds)
        for result, ids in zip(results, self.predictor.encode(texts), strict=True):
            result["truncated"] = len(ids) > self.predictor.max_source_len
        starts = [0]
        for job in jobs:
            starts.append(starts[-1] + len(job.texts))
        return [results[start:end] for start, end in zip(starts, starts[1:], strict=False)]

    def count(self, batch: list[Job]) -> None:
        self.stats["requests"] += len(batch)
        self.stats["texts"] += sum(len(job.texts) for job in batch)
        self.stats["batches"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))


def decoding_key(decoding: DecodingConfig | None) -> tuple | None:
    """Jobs with equal keys run as one model call. The seed is left out: a sampling job passes its own seeds."""
    return None if decoding is None else dataclasses.astuple(dataclasses.replace(decoding, seed=None))


# --- the HTTP app ---


def build_app(predictor: Predictor, config: ServeConfig) -> FastAPI:
    """The FastAPI app answering POST /predict, GET /health and GET /info for a loaded Predictor."""
    batcher = Batcher(predictor, config.max_batch_size, config.batch_timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="transformer-serve", lifespan=lifespan)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(ModelError)
    async def model_error(request: Request, error: ModelError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=500)

    @app.exception_handler(HTTPException)  # Starlette's own: unknown path (404), wrong method (405)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.get("/health")
    async def health() -> JSONResponse:
        if not batcher.alive():  # the batching task ended: a bug, whose traceback asyncio logs
            return JSONResponse({"status": "the batching task stopped"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return describe(predictor, config, batcher.stats)

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        job = parse_request(await read_body(request, config.max_request_bytes), config, predictor.decoding)
        results = await batcher.submit(job)
        return JSONResponse(results[0] if job.single else results)

    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with a 413 as soon as it is over `limit` bytes."""
    too_big = RequestError(f"the request body is over max_request_bytes={limit}: send fewer or shorter texts", 413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


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
    """Load the checkpoint, then answer HTTP requests until interrupted (Ctrl-C or SIGTERM)."""
    config: ServeConfig = typed(cfg)
    predictor = Predictor(config.ckpt, config.decoding)
    if predictor.decoding is not None:
        check_limits(predictor.decoding, config)
    sock = listen(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    log.info(
        "serving %s (%s) at %s (POST /predict, GET /health, GET /info)",
        predictor.path,
        predictor.artifacts.task,
        url,
    )
    uvicorn_config = uvicorn.Config(
        build_app(predictor, config), log_config=None, log_level="warning", access_log=False
    )
    uvicorn.Server(uvicorn_config).run(sockets=[sock])
