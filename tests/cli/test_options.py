"""The ``memstore`` command's global options, name messages, completion and settings
errors, through the installed console script against a real service."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.cli.run import ok, run
from tests.support.procs import ServiceProcess, free_port


@pytest.fixture
def ns() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_target_options_go_before_or_after_the_command(
    live_service: ServiceProcess, ns: str
) -> None:
    url = live_service.url
    ok("--url", url, "-n", ns, "entity", "put", "user", "u1", '{"at": "before"}')
    # After the command, and between the arguments.
    got = ok("entity", "get", "user", "u1", "--url", url, "-n", ns)
    assert json.loads(got)["data"] == {"at": "before"}
    got = ok("entity", "get", "--namespace", ns, "user", "--url", url, "u1")
    assert json.loads(got)["data"] == {"at": "before"}
    # On both sides: the one after the command wins.
    got = ok("--url", _dead_url(), "-n", "elsewhere", "entity", "get", "user", "u1",
             "--url", url, "-n", ns)  # fmt: skip
    assert json.loads(got)["data"] == {"at": "before"}
    missing = run("--url", url, "-n", ns, "entity", "get", "user", "u1", "-n", "elsewhere")
    assert missing.returncode == 1 and "not_found" in missing.stderr
    # After the group too: root < group < command.
    got = ok("-n", "elsewhere", "entity", "--url", url, "-n", ns, "get", "user", "u1")
    assert json.loads(got)["data"] == {"at": "before"}
    missing = run("entity", "--url", url, "-n", ns, "get", "user", "u1", "-n", "elsewhere")
    assert missing.returncode == 1 and "not_found" in missing.stderr


def test_env_variables_are_the_defaults_and_options_override_them(
    live_service: ServiceProcess, ns: str
) -> None:
    env = {"MEMSTORE_URL": live_service.url, "MEMORY_NAMESPACE": ns}
    ok("entity", "put", "user", "u1", "{}", env=env)
    assert json.loads(ok("entity", "types", env=env)) == ["user"]
    # An option before or after the command beats the variable.
    assert json.loads(ok("-n", f"{ns}-2", "entity", "types", env=env)) == []
    assert json.loads(ok("entity", "types", "-n", f"{ns}-2", env=env)) == []
    dead = {"MEMSTORE_URL": _dead_url(), "MEMORY_NAMESPACE": ns}
    assert json.loads(ok("entity", "types", "--url", live_service.url, env=dead)) == ["user"]
    assert json.loads(ok("--url", live_service.url, "entity", "types", env=dead)) == ["user"]


@pytest.mark.parametrize(
    ("args", "value", "kind", "rule"),
    [
        (("entity", "put", "user", "a b", "{}"), "a b", "entity_id", "1 to 256 ASCII letters"),
        (("entity", "get", "user", "café"), "café", "entity_id", "1 to 256 ASCII letters"),
        (("entity", "get", "user", ""), "", "entity_id", "1 to 256 ASCII letters"),
        (("entity", "list", "my type"), "my type", "entity_type", "1 to 64 ASCII letters"),
        (("conversation", "show", "chat 1"), "chat 1", "conversation_id", "and _ . : @ = + -"),
        (("tool", "record", "web search"), "web search", "tool_name", "and _ . : / -"),
        (("tools", "-n", "my ns"), "my ns", "namespace", "starting with a letter or digit"),
    ],
)
def test_a_bad_name_is_explained_in_words(
    live_service: ServiceProcess,
    ns: str,
    args: tuple[str, ...],
    value: str,
    kind: str,
    rule: str,
) -> None:
    result = run(*args, "--url", live_service.url, *(() if "-n" in args else ("-n", ns)))
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert f"{value!r} is not a valid {kind}: use " in last
    assert rule in last and "(no spaces, no other characters)" in last
    assert "^[" not in result.stderr and "Traceback" not in result.stderr
    assert json.loads(ok("entity", "types", "--url", live_service.url, "-n", ns)) == []


def test_bad_target_variables_matter_only_to_client_commands(
    live_service: ServiceProcess,
) -> None:
    bad_url = {"MEMSTORE_URL": "garbage"}
    bad_ns = {"MEMORY_NAMESPACE": "my ns"}
    for env in (bad_url, bad_ns):
        assert "_MEMSTORE_COMPLETE" in ok("completion", "bash", env=env)
        assert run("hash-token", env=env, stdin="a-token\n").returncode == 0
    result = run("tools", env=bad_url)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: Invalid value for '--url' (or MEMSTORE_URL): 'garbage' is not an http:// or "
        "https:// URL with a host"
    )
    result = run("tools", "--url", live_service.url, env=bad_ns)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "Error: Invalid value for '-n' / '--namespace' (or MEMORY_NAMESPACE): 'my ns' is not "
            "a valid namespace: use 1 to 64 ASCII letters"
        )
    )
    # The option given fixes what the variable got wrong.
    assert ok("tools", "--url", live_service.url, "-n", "fine", env=bad_ns) == "[]\n"


def test_a_bad_url_is_a_usage_error() -> None:
    for args, hint in (
        (("--url", "localhost:8080", "tools"), "'--url' (or MEMSTORE_URL)"),
        (("tools", "--url", "localhost:8080"), "'--url'"),
    ):
        result = run(*args)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1] == (
            f"Error: Invalid value for {hint}: 'localhost:8080' is not an http:// or https:// "
            "URL with a host"
        )
    for url in ("http://[::1", "http://h:99999"):
        result = run("tools", "--url", url)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert f"Error: Invalid value for '--url': '{url}' is not a valid URL: " in result.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_printed(shell: str) -> None:
    script = ok("completion", shell)
    assert "_MEMSTORE_COMPLETE" in script
    assert f"{shell}_complete" in script


def _complete(words: str) -> list[str]:
    """What bash completion offers for the last word of ``words``."""
    parts = words.split(" ")
    result = run(
        env={
            "_MEMSTORE_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
        }
    )
    assert result.returncode == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


def test_completion_completes_commands_and_options() -> None:
    assert _complete("memstore ent") == ["entity"]
    assert _complete("memstore entity ") == ["delete", "get", "list", "pin", "put", "types"]
    assert _complete("memstore tool") == ["tool", "tools"]
    # The target options complete after the command too.
    assert _complete("memstore entity get user u1 --na") == ["--namespace"]
    assert _complete("memstore completion ") == ["bash", "zsh", "fish"]


def test_completion_offers_the_names_the_service_holds(
    live_service: ServiceProcess, ns: str
) -> None:
    target = f"--url {live_service.url} -n {ns}"
    for entity_id in ("ada", "bob", "ann"):
        ok(*target.split(), "entity", "put", "user", entity_id, "{}")
    ok(*target.split(), "conversation", "append", "chat-1", "{}")
    ok(*target.split(), "tool", "record", "web_search")
    assert _complete(f"memstore {target} entity get ") == ["user"]
    assert _complete(f"memstore {target} entity get user a") == ["ada", "ann"]
    assert _complete(f"memstore entity delete {target} user ") == ["ada", "ann", "bob"]
    assert _complete(f"memstore {target} conversation show ") == ["chat-1"]
    assert _complete(f"memstore {target} tool list --tool ") == ["web_search"]
    # No service there: nothing offered, nothing printed into the shell, no hang.
    assert _complete(f"memstore --url {_dead_url()} entity get ") == []


def test_invalid_settings_are_one_line_for_serve_and_ignored_by_client_commands(
    live_service: ServiceProcess, ns: str
) -> None:
    bad = {"MEMSTORE_LOG_LEVEL": "verbose"}
    served = run("serve", "--port", str(free_port()), env=bad)
    assert served.returncode == 1
    assert served.stdout == ""
    assert served.stderr == (
        "Error: invalid settings: MEMSTORE_LOG_LEVEL: Input should be 'DEBUG', 'INFO', "
        "'WARNING', 'ERROR' or 'CRITICAL'\n"
    )
    # A client command does not read the service's settings.
    assert json.loads(ok("tools", "--url", live_service.url, "-n", ns, env=bad)) == []
