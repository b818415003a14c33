"""The official `openai` Python client against a running sluice-server.

Run by scripts/openai_smoke.sh, which starts the server on a loopback port and sets
SLUICE_URL and SLUICE_API_KEY.
"""

import os
import sys

import openai

BASE = os.environ["SLUICE_URL"].rstrip("/") + "/v1"
KEY = os.environ["SLUICE_API_KEY"]


def client(key=KEY):
    return openai.OpenAI(base_url=BASE, api_key=key, max_retries=0, timeout=60)


def test_models_lists_the_served_model():
    models = client().models.list()
    ids = [m.id for m in models.data]
    assert ids == ["sluice-tiny"], ids


def test_completion_stream_matches_non_stream():
    c = client()
    full = c.completions.create(model="sluice-tiny", prompt="The operator reads", max_tokens=16, temperature=0)
    text = full.choices[0].text
    assert full.usage.completion_tokens >= 1
    assert full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens
    assert full.choices[0].finish_reason in ("length", "stop")
    streamed = ""
    usage = None
    for chunk in c.completions.create(
        model="sluice-tiny", prompt="The operator reads", max_tokens=16, temperature=0,
        stream=True, stream_options={"include_usage": True},
    ):
        if chunk.choices:
            streamed += chunk.choices[0].text
        if chunk.usage:
            usage = chunk.usage
    assert streamed == text, (streamed, text)
    assert usage is not None and usage.completion_tokens == full.usage.completion_tokens


def test_chat_stream_matches_non_stream():
    c = client()
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the queue long?"}]
    full = c.chat.completions.create(model="sluice-tiny", messages=msgs, max_tokens=12, temperature=0)
    assert full.choices[0].message.role == "assistant"
    text = full.choices[0].message.content
    parts = []
    finish = None
    for chunk in c.chat.completions.create(model="sluice-tiny", messages=msgs, max_tokens=12, temperature=0, stream=True):
        delta = chunk.choices[0].delta
        if delta.content:
            parts.append(delta.content)
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(parts) == text
    assert finish in ("length", "stop")


def test_errors_map_to_client_exceptions():
    try:
        client().completions.create(model="no-such-model", prompt="x", max_tokens=2)
        raise AssertionError("expected NotFoundError")
    except openai.NotFoundError:
        pass
    try:
        client("wrong-key").completions.create(model="sluice-tiny", prompt="x", max_tokens=2)
        raise AssertionError("expected AuthenticationError")
    except openai.AuthenticationError:
        pass
    try:
        client().completions.create(model="sluice-tiny", prompt="x", max_tokens=2, top_p=5)
        raise AssertionError("expected UnprocessableEntityError")
    except openai.UnprocessableEntityError:
        pass


if __name__ == "__main__":
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"PASS {name}")
        except Exception as e:  # report every failure, then fail the run
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
