"""The official OpenAI Python SDK, unchanged, against the real proxy-server and ollama-sim.

Run by scripts/sdk-test.sh (which starts both binaries). Every check raises on failure.
"""
import json
import os
import sys
import urllib.request

import openai
from openai import OpenAI

PROXY = os.environ["PROXY_URL"]
SIM = os.environ["SIM_URL"]
ADMIN = os.environ["ADMIN_KEY"]


def call(url, method="GET", body=None, key=ADMIN):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


def new_user(user_id, limits=None):
    body = {"user_id": user_id}
    if limits:
        body["limits"] = limits
    return call(f"{PROXY}/admin/users", "POST", body)["api_key"]


def sim(settings):
    call(f"{SIM}/sim/control", "POST", settings)


checks = []


def check(name):
    def register(fn):
        checks.append((name, fn))
        return fn
    return register


key = new_user("sdk")
client = OpenAI(base_url=f"{PROXY}/v1", api_key=key, max_retries=0)


@check("chat completion")
def _():
    completion = client.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "Why is the sky blue?"}]
    )
    assert "Why is the sky blue?" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


@check("streamed chat with usage")
def _():
    stream = client.chat.completions.create(
        model="llama3.2",
        messages=[{"role": "user", "content": "count one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert "count one two three" in text, text
    assert finish == "stop"
    assert usage and usage.completion_tokens > 0


@check("max_completion_tokens ends with length")
def _():
    completion = client.chat.completions.create(
        model="llama3.2",
        messages=[{"role": "user", "content": "a b c d e f g h"}],
        max_completion_tokens=2,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 2


@check("tool calls")
def _():
    completion = client.chat.completions.create(
        model="llama3.2",
        messages=[{"role": "user", "content": "weather in Oslo"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    )
    call_ = completion.choices[0].message.tool_calls[0]
    assert call_.function.name == "get_weather"
    assert "city" in json.loads(call_.function.arguments)
    assert completion.choices[0].finish_reason == "tool_calls"


@check("models")
def _():
    ids = [m.id for m in client.models.list()]
    assert "llama3.2:latest" in ids, ids
    assert client.models.retrieve("llama3.2").id == "llama3.2:latest"


@check("embeddings (the SDK asks for base64 by default)")
def _():
    result = client.embeddings.create(model="nomic-embed-text", input=["hello world", "bye"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) > 0 and isinstance(result.data[0].embedding[0], float)
    assert result.usage.prompt_tokens > 0


@check("legacy completions")
def _():
    completion = client.completions.create(model="llama3.2", prompt="Once upon a time", max_tokens=3)
    assert completion.choices[0].finish_reason == "length"


@check("wrong key is AuthenticationError")
def _():
    bad = OpenAI(base_url=f"{PROXY}/v1", api_key="sk-wrong", max_retries=0)
    try:
        bad.models.list()
    except openai.AuthenticationError as error:
        assert error.code == "invalid_api_key"
    else:
        raise AssertionError("expected AuthenticationError")


@check("unknown model is NotFoundError with model_not_found")
def _():
    try:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    except openai.NotFoundError as error:
        assert error.code == "model_not_found"
    else:
        raise AssertionError("expected NotFoundError")


@check("over a limit is RateLimitError; the quota is insufficient_quota")
def _():
    limited = OpenAI(base_url=f"{PROXY}/v1", api_key=new_user("sdk-rl", {"requests_per_minute": 1}), max_retries=0)
    limited.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "x"}])
    try:
        limited.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "x"}])
    except openai.RateLimitError as error:
        assert error.code == "rate_limit_exceeded"
        assert int(error.response.headers["retry-after"]) >= 1
    else:
        raise AssertionError("expected RateLimitError")
    # With retries on, insufficient_quota still fails at once (x-should-retry: false).
    quota = OpenAI(base_url=f"{PROXY}/v1", api_key=new_user("sdk-q", {"total_token_limit": 1}), max_retries=2)
    quota.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "x"}])
    try:
        quota.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "x"}])
    except openai.RateLimitError as error:
        assert error.code == "insufficient_quota"
    else:
        raise AssertionError("expected RateLimitError")


@check("an error mid-stream raises APIError")
def _():
    sim({"error_after_tokens": 2})
    try:
        stream = client.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "one two three four"}], stream=True
        )
        for _chunk in stream:
            pass
    except openai.APIError as error:
        assert "error" in str(error).lower()
    else:
        raise AssertionError("expected APIError")
    finally:
        sim({"error_after_tokens": None})


failed = 0
for name, fn in checks:
    try:
        fn()
        print(f"ok      {name}")
    except Exception as error:  # noqa: BLE001 - report every failure, then fail
        failed += 1
        print(f"FAILED  {name}: {type(error).__name__}: {error}")
print(f"openai-python {openai.__version__}: {len(checks) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
