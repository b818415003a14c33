"""Locust load test for a Sluice inference server (`sluice-server`).

The seed's baseline command works as is:

    locust -f examples/locustfile.py --host http://127.0.0.1:8000 \
        --users 10 --spawn-rate 2 --run-time 5m --headless

Each user mostly streams from ``POST /generate/stream`` and sometimes calls ``POST /generate``.
Besides Locust's own request rows, every streamed request reports two custom entries:

* ``TTFT /generate/stream`` - time to the first ``event: token`` (ms)
* ``TPOT /generate/stream`` - mean time per output token after the first (ms)

so Locust's percentiles table shows TTFT and TPOT directly. The streamed request's own
response time is the full stream (until ``event: done``), not just the headers.

A request fails (and Locust exits non-zero) on any non-2xx status (429 included), on an
``event: error`` inside the stream, and on a stream that ends without ``event: done``.

Tunables (environment): SLUICE_MAX_TOKENS (default 64), SLUICE_PROMPT_WORDS (default 32),
SLUICE_API_KEY (sent as a bearer token when set), SLUICE_WAIT_MIN / SLUICE_WAIT_MAX seconds
between a user's requests (default 0.5 / 2).
"""

import json
import os
import random
import time

from locust import HttpUser, between, task

MAX_TOKENS = int(os.environ.get("SLUICE_MAX_TOKENS", "64"))
PROMPT_WORDS = int(os.environ.get("SLUICE_PROMPT_WORDS", "32"))
API_KEY = os.environ.get("SLUICE_API_KEY")
WAIT_MIN = float(os.environ.get("SLUICE_WAIT_MIN", "0.5"))
WAIT_MAX = float(os.environ.get("SLUICE_WAIT_MAX", "2"))

# Short common words: about one token each on most tokenizers.
WORDS = (
    "the of and to in is it that was for on are as with they at be this from have or by one "
    "had not but what all were when we there can an your which their said if do will each about "
    "how up out them then she many some so these would other into has more two like time could "
    "no make than first been its who now people my made over did down only way find use may"
).split()


def prompt():
    return " ".join(random.choice(WORDS) for _ in range(PROMPT_WORDS))


def sse_lines(resp):
    """Lines of an SSE body, split on newline bytes only.

    requests' iter_lines() uses str.splitlines(), which also breaks on U+2028, U+0085 and other
    separators that generated text may contain inside a JSON string.
    """
    buf = b""
    for chunk in resp.iter_content(chunk_size=None):
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl], buf[nl + 1:]
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
    if buf:
        yield buf.rstrip(b"\r").decode("utf-8", errors="replace")


class SluiceUser(HttpUser):
    wait_time = between(WAIT_MIN, WAIT_MAX)

    def on_start(self):
        if API_KEY:
            self.client.headers["Authorization"] = f"Bearer {API_KEY}"

    def body(self):
        return {"prompt": prompt(), "max_tokens": MAX_TOKENS, "temperature": 0.0}

    @task(1)
    def generate(self):
        with self.client.post("/generate", json=self.body(), catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
                return
            try:
                data = resp.json()
                int(data["generated_tokens"])
            except (ValueError, KeyError, TypeError) as e:
                resp.failure(f"invalid /generate response: {e}")
                return
            resp.success()

    @task(3)
    def generate_stream(self):
        name = "/generate/stream"
        start = time.perf_counter()
        with self.client.post(
            name,
            json=self.body(),
            stream=True,
            catch_response=True,
            headers={"Accept": "text/event-stream"},
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
                return
            first_token_at = None
            tokens = 0
            event = None
            outcome = "stream ended without event: done"
            try:
                for line in sse_lines(resp):
                    if line.startswith("event:"):
                        event = line[len("event:"):].strip()
                    elif line.startswith("data:"):
                        data = line[len("data:"):].strip()
                        if event == "token":
                            tokens += 1
                            if first_token_at is None:
                                first_token_at = time.perf_counter()
                        elif event == "done":
                            usage = json.loads(data).get("usage", {})
                            tokens = usage.get("completion_tokens", tokens)
                            outcome = None
                            break
                        elif event == "error":
                            outcome = f"error event: {data[:200]}"
                            break
                    elif line == "":
                        event = None
            except Exception as e:  # noqa: BLE001 - any transport failure fails the request
                outcome = f"stream broken: {e!r}"
            end = time.perf_counter()
            # Locust timed only the headers of a streamed response; report the whole stream.
            resp.request_meta["response_time"] = (end - start) * 1000
            if outcome is not None:
                resp.failure(outcome)
                return
            resp.success()
        if first_token_at is not None:
            self._custom("TTFT", name, (first_token_at - start) * 1000)
            if tokens >= 2:
                self._custom("TPOT", name, (end - first_token_at) * 1000 / (tokens - 1))

    def _custom(self, kind, name, ms):
        self.environment.events.request.fire(
            request_type=kind,
            name=f"{kind} {name}",
            response_time=ms,
            response_length=0,
            exception=None,
            context={},
        )
