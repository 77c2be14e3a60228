"""The real Claude Code CLI through a real Lockgate, to an Anthropic, an OpenAI and a Gemini mock.

The CLI (npm ``@anthropic-ai/claude-code``, pinned in ``tests/claude_code.py``) is
installed once per session; a failed install fails these tests.  It always
streams, sends ~a dozen tools with large JSON schemas, ``thinking``,
``context_management``, ``metadata.user_id``, ``anthropic-beta`` and (for model
names it does not know) ``?beta=true`` and ``role: "system"`` messages in the
middle of ``messages``.  Each provider is driven with a plain prompt and with an
agentic task: the mock model calls Claude Code's ``Read`` tool on a file, Claude
Code reads it and sends the result back, and the model answers with the file's
content, which must come out of the CLI.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests import claude_code
from tests.conftest import MASTER_KEY, start_gateway
from tests.mocks import MOCK_API_KEY, MOCK_TEXT
from tests.mocks.agentic import FILE_ANSWER_PREFIX
from tests.mocks.gemini_api import call_signature

# provider -> (model name Claude Code is given, the mock's path fragment)
PROVIDERS = {
    "anthropic": ("claude-sonnet-4-5", "/v1/messages"),
    "openai": ("gpt-4o", "/chat/completions"),
    "gemini": ("gemini-2.5-flash", ":streamGenerateContent"),
}


@pytest.fixture(scope="session")
def claude_exe() -> Path:
    try:
        return claude_code.install()
    except claude_code.ClaudeCodeUnavailable as err:
        pytest.fail(str(err))


def cli_config(mocks) -> dict[str, Any]:
    anthropic = {"model": "anthropic/claude-sonnet-4-5", "api_base": mocks["anthropic"].url, "api_key": MOCK_API_KEY}
    openai = {"model": "openai/gpt-4o", "api_base": mocks["openai"].url + "/v1", "api_key": MOCK_API_KEY}
    gemini = {"model": "gemini/gemini-2.5-flash", "api_base": mocks["gemini"].url, "api_key": MOCK_API_KEY}
    return {
        "model_list": [
            {"model_name": "claude-sonnet-4-5", "litellm_params": anthropic},
            {"model_name": "gpt-4o", "litellm_params": openai},
            {"model_name": "gemini-2.5-flash", "litellm_params": gemini},
            # Claude Code's own names mapped to other providers: a wildcard and an alias
            {"model_name": "claude-haiku-*", "litellm_params": {**openai, "model": "openai/gpt-4o-mini"}},
            {"model_name": "o4-mini", "litellm_params": {**openai, "model": "openai/o4-mini"}},
            {"model_name": "gemini-3-pro-preview",
             "litellm_params": {**gemini, "model": "gemini/gemini-3-pro-preview"}},
        ],
        "router_settings": {"model_group_alias": {"claude-opus-4-1": "gemini-2.5-flash"}},
        "general_settings": {"master_key": MASTER_KEY},
    }


@pytest.fixture(scope="module")
def cli_gateway(mocks, tmp_path_factory):
    gw = start_gateway(cli_config(mocks), tmp_path_factory.mktemp("claude-code-gateway"))
    yield gw
    gw.process.terminate()
    gw.process.wait(10)


class Session:
    """One CLI run: its working directory, the requests each mock received during it."""

    def __init__(self, exe: Path, gateway, mocks, tmp: Path) -> None:
        self.exe, self.gateway, self.mocks, self.tmp = exe, gateway, mocks, tmp
        self.marks = {name: len(server.recorder.requests) for name, server in mocks.items()}

    def run(self, prompt: str, model: str | None, *args: str, env: dict[str, str] | None = None):
        result = claude_code.run(self.exe, self.gateway.url, MASTER_KEY, prompt, model, self.tmp,
                                 self.tmp / "home", args, env)
        assert result.returncode == 0, result.explain()
        return result.json

    def received(self, provider: str) -> list[Any]:
        return self.mocks[provider].recorder.requests[self.marks[provider]:]


@pytest.fixture
def session(claude_exe, cli_gateway, mocks, tmp_path) -> Session:
    return Session(claude_exe, cli_gateway, mocks, tmp_path)


def _assert_success(out: dict[str, Any]) -> None:
    assert out.get("is_error") is False and out.get("subtype") == "success", out


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_plain_prompt(session: Session, provider: str) -> None:
    model, path = PROVIDERS[provider]
    out = session.run("Say hello in one short sentence.", model)
    _assert_success(out)
    assert out["result"] == MOCK_TEXT
    received = session.received(provider)
    assert received and all(path in r.path for r in received)
    first = received[0]
    if provider == "gemini":
        assert len(first.body["tools"][0]["functionDeclarations"]) >= 5
    else:
        assert first.body["stream"] is True
        assert len(first.body["tools"]) >= 5  # Claude Code's tool set, large schemas included
    for other in set(PROVIDERS) - {provider}:
        assert session.received(other) == []


def test_anthropic_passthrough_keeps_what_claude_code_sent(session: Session) -> None:
    out = session.run("Say hello.", "claude-sonnet-4-5")
    _assert_success(out)
    got = session.received("anthropic")[0]
    assert "claude-code-20250219" in got.headers["anthropic-beta"]
    for key in ("thinking", "context_management", "metadata", "system", "tools"):
        assert key in got.body  # forwarded as received, nothing translated away
    assert "user_id" in got.body["metadata"]


def test_mid_conversation_system_messages_reach_openai_in_place(session: Session) -> None:
    """gpt-4o is a name Claude Code does not know: it sends its environment as a
    ``role: "system"`` message after the user's prompt, the case that used to 400."""
    out = session.run("Say hello.", "gpt-4o")
    _assert_success(out)
    body = session.received("openai")[0].body
    roles = [m["role"] for m in body["messages"]]
    first_user = roles.index("user")
    later_system = [m for m in body["messages"][first_user:] if m["role"] == "system"]
    assert later_system, roles
    assert "# Environment" in str(later_system[0]["content"])
    assert body["max_tokens"] <= 16384  # Claude Code asks for 32000: clamped to gpt-4o's ceiling
    assert len(body.get("user", "")) <= 64  # metadata.user_id is a JSON document: digested


def test_mid_conversation_system_messages_folded_for_gemini(session: Session) -> None:
    out = session.run("Say hello.", "gemini-2.5-flash")
    _assert_success(out)
    body = session.received("gemini")[0].body
    assert body["systemInstruction"]["parts"]
    user_text = " ".join(p.get("text", "") for c in body["contents"] if c["role"] == "user" for p in c["parts"])
    assert "<system-reminder>\n# Environment" in user_text


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_agentic_read_tool_round_trip(session: Session, provider: str) -> None:
    model, _ = PROVIDERS[provider]
    secret = "PELICAN-" + uuid.uuid4().hex[:8]
    notes = session.tmp / "notes.txt"
    notes.write_text(f"The secret word is {secret}.\n")
    out = session.run(f"Use the Read tool to read the file {notes} and tell me the secret word.", model,
                      "--allowedTools", "Read")
    _assert_success(out)
    assert out["result"].startswith(FILE_ANSWER_PREFIX)
    assert secret in out["result"]  # the file's content went CLI -> gateway -> provider -> back
    assert out["num_turns"] >= 2
    received = session.received(provider)
    assert len(received) >= 2  # the tool call, then the answer from its result
    assert secret in str(received[-1].body)


def test_claude_model_names_mapped_by_wildcard_and_alias(session: Session) -> None:
    """An operator maps Claude Code's claude-* names: ``claude-haiku-*`` (wildcard) to an
    OpenAI deployment, ``claude-opus-4-1`` (model_group_alias) to a Gemini one."""
    env = {"ANTHROPIC_MODEL": "claude-haiku-4-5", "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5",
           "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4-5", "ANTHROPIC_DEFAULT_OPUS_MODEL": "claude-opus-4-1"}
    out = session.run("Say hello.", None, env=env)  # the model from ANTHROPIC_MODEL
    _assert_success(out)
    assert out["result"] == MOCK_TEXT
    openai_bodies = [r.body for r in session.received("openai")]
    assert openai_bodies and openai_bodies[-1]["model"] == "gpt-4o-mini"

    out = session.run("Say hello.", "opus", env=env)  # the CLI's alias -> ANTHROPIC_DEFAULT_OPUS_MODEL
    _assert_success(out)
    assert out["result"] == MOCK_TEXT
    gemini_paths = [r.path for r in session.received("gemini")]
    assert gemini_paths and "gemini-2.5-flash:streamGenerateContent" in gemini_paths[-1]
    assert session.received("anthropic") == []


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_failed_tool_result_reaches_the_model_as_an_error(session: Session, provider: str) -> None:
    """Reading a missing file: Claude Code sends ``tool_result`` with ``is_error``; each provider
    gets the failure in its own terms and the model answers from it."""
    model, _ = PROVIDERS[provider]
    missing = session.tmp / "missing.txt"
    out = session.run(f"Use the Read tool to read the file {missing} and tell me what it says.", model,
                      "--allowedTools", "Read")
    _assert_success(out)
    assert "does not exist" in out["result"]
    body = session.received(provider)[-1].body
    if provider == "openai":
        tool = [m for m in body["messages"] if m["role"] == "tool"][-1]
        text = tool["content"] if isinstance(tool["content"], str) else tool["content"][0]["text"]
        assert text.startswith("Error: ")
    elif provider == "gemini":
        parts = [p for c in body["contents"] for p in c["parts"] if "functionResponse" in p]
        assert "error" in parts[-1]["functionResponse"]["response"]
    else:
        results = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]
                   if b.get("type") == "tool_result"]
        assert results[-1]["is_error"] is True


def test_openai_reasoning_model(session: Session) -> None:
    """o-series models refuse ``max_tokens``: Claude Code's request goes out with ``max_completion_tokens``."""
    out = session.run("Say hello.", "o4-mini")
    _assert_success(out)
    assert out["result"] == MOCK_TEXT
    body = session.received("openai")[-1].body
    assert body["model"] == "o4-mini" and "max_tokens" not in body
    assert body["max_completion_tokens"] == 32000


def test_gemini_thought_signature_round_trips_through_claude_code(session: Session) -> None:
    """Gemini 3 signs its function calls and refuses a replayed call without the signature: the
    signature travels Gemini -> Anthropic stream (a signed thinking block) -> Claude Code -> back."""
    notes = session.tmp / "notes.txt"
    notes.write_text("The secret word is HERON-7.\n")
    out = session.run(f"Use the Read tool to read the file {notes} and tell me the secret word.",
                      "gemini-3-pro-preview", "--allowedTools", "Read")
    _assert_success(out)
    assert "HERON-7" in out["result"]
    first, last = session.received("gemini")[0].body, session.received("gemini")[-1].body
    calls = [p for c in last["contents"] if c["role"] == "model" for p in c["parts"] if "functionCall" in p]
    assert calls[0]["thoughtSignature"] == call_signature(first)  # the model's own, not the skip sentinel


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_continued_session_replays_tools_and_thinking(session: Session, provider: str) -> None:
    """``claude -c`` sends the whole history back: the tool call and its result, and the
    thinking block of an answer that reasoned (TRIGGER_THINK), translated again each turn."""
    model, _ = PROVIDERS[provider]
    secret = "OSPREY-" + uuid.uuid4().hex[:6]
    notes = session.tmp / "notes.txt"
    notes.write_text(f"The secret word is {secret}.\n")
    first = session.run(f"Use the Read tool to read the file {notes} please.", model, "--allowedTools", "Read")
    _assert_success(first)
    thought = session.run("TRIGGER_THINK What did I ask before?", model, "-c")
    _assert_success(thought)
    assert thought["result"] == MOCK_TEXT
    again = session.run("And once more?", model, "-c")
    _assert_success(again)
    last = session.received(provider)[-1].body
    assert secret in str(last)  # the first turn's tool result is still in the history
    assert "What did I ask before?" in str(last)
