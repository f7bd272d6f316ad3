"""A small HTTP load generator: threads, each with its own ``http.client`` connection.

Pure Python so that CI needs nothing new. Each client sends one request at a time on a kept
connection (reopened when the server closes it, as gunicorn's sync workers do after every
answer) and records each answer's status and latency. Throughput is what all clients completed
divided by the wall time from the first request to the last answer.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Request:
    """One request to send: method, path, JSON body (bytes), extra headers, and the statuses
    it may be answered with (none: any)."""

    method: str
    path: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    expect: frozenset[int] = frozenset()


@dataclass
class Answer:
    """What came back: the status, the body and how long it took, in seconds."""

    status: int
    body: bytes
    seconds: float
    headers: dict[str, str] = field(default_factory=dict)
    request: Request | None = None

    @property
    def unexpected(self) -> bool:
        """Whether the status is not one the request said it may get."""
        return bool(self.request and self.request.expect and self.status not in self.request.expect)


@dataclass
class Run:
    """All answers of one measured run."""

    answers: list[Answer]
    elapsed: float

    @property
    def count(self) -> int:
        return len(self.answers)

    @property
    def throughput(self) -> float:
        """Answers per second."""
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def statuses(self) -> Counter[int]:
        return Counter(answer.status for answer in self.answers)

    def percentile(self, fraction: float) -> float:
        """The latency below which ``fraction`` of the answers came, in seconds."""
        return percentile([answer.seconds for answer in self.answers], fraction)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (0.0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    """The median, or 0.0 for no values."""
    return statistics.median(values) if values else 0.0


class Client:
    """One connection to the server, reopened whenever the server closed it."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.port = port
        self.timeout = timeout
        self.connection = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def connect(self) -> None:
        """Open the connection now (for races: connected before the start signal)."""
        self.connection.connect()

    def send(self, request: Request) -> Answer:
        """Send ``request`` and read the whole answer."""
        headers = {"Host": f"{HOST}:{self.port}", **dict(request.headers)}
        if request.body is not None:
            headers.setdefault("Content-Type", "application/json")
        started = time.perf_counter()
        try:
            self.connection.request(request.method, request.path, request.body, headers)
            response = self.connection.getresponse()
            body = response.read()
        except (ConnectionError, http.client.HTTPException):
            # A connection the server closed between two requests: open a new one, once.
            self.connection.close()
            self.connection = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            started = time.perf_counter()
            self.connection.request(request.method, request.path, request.body, headers)
            response = self.connection.getresponse()
            body = response.read()
        seconds = time.perf_counter() - started
        if response.will_close:
            self.connection.close()
        return Answer(response.status, body, seconds, dict(response.getheaders()), request)

    def close(self) -> None:
        self.connection.close()


def drive(
    port: int,
    requests: Iterator[Request] | Callable[[int], Request],
    *,
    clients: int,
    seconds: float | None = None,
    total: int | None = None,
) -> Run:
    """Send requests from ``clients`` threads until ``seconds`` pass or ``total`` are sent.

    ``requests`` is either an iterator shared by all clients (it ends the run when exhausted)
    or a function of the request's sequence number.
    """
    lock = threading.Lock()
    answers: list[Answer] = []
    sent = 0
    deadline = 0.0

    def next_request() -> Request | None:
        nonlocal sent
        with lock:
            if total is not None and sent >= total:
                return None
            if seconds is not None and time.perf_counter() >= deadline:
                return None
            number = sent
            sent += 1
            if callable(requests):
                return requests(number)
            return next(requests, None)

    def work() -> None:
        client = Client(port)
        mine: list[Answer] = []
        try:
            while (request := next_request()) is not None:
                mine.append(client.send(request))
        finally:
            client.close()
            with lock:
                answers.extend(mine)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    deadline = started + (seconds or 0.0)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Run(answers, time.perf_counter() - started)


def race(port: int, requests: list[Request]) -> Run:
    """Send every request at once, each from its own connected client, after one signal."""
    clients = [Client(port) for _ in requests]
    for client in clients:
        client.connect()
    barrier = threading.Barrier(len(requests) + 1)
    answers: list[Answer | None] = [None] * len(requests)

    def work(index: int) -> None:
        barrier.wait()
        try:
            answers[index] = clients[index].send(requests[index])
        finally:
            clients[index].close()

    threads = [
        threading.Thread(target=work, args=(index,), daemon=True) for index in range(len(requests))
    ]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return Run([answer for answer in answers if answer is not None], elapsed)
