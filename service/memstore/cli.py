"""``memstore`` command line: ``serve`` and client commands against a running service.

Errors are printed as one clear line and exit with status 1 (2 for usage errors); never
a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson
from pydantic import ValidationError

from memstore.core.changes import CHANGE_KINDS
from memstore.core.errors import (
    ConfigurationError,
    DataShreddedError,
    InvalidInputError,
    MemoryStoreError,
    NamespaceImportingError,
    ServiceUnreachableError,
)
from memstore.core.records import Page
from memstore.core.search import FILTER_OPERATORS, SEARCH_MODES
from memstore.core.validation import check_name

if TYPE_CHECKING:
    from memstore.client import MemoryClient

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass
class Target:
    """Where client commands go. The root group fills it from its options (or their env
    variables, or defaults); a client command's own options, given after the command,
    override it."""

    url: str = DEFAULT_URL
    namespace: str = "agent"
    token: str | None = field(default=None, repr=False)  # never shown


class UrlType(click.ParamType[str, Any]):
    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from memstore.client.memory_client import url_problem

        problem = url_problem(str(value))
        if problem is not None:
            self.fail(problem, param, ctx)
        return str(value)


class Finite(click.FloatRange):
    """A float that is a number: click's float takes "nan" and "inf", which JSON cannot
    carry (they would arrive as null, e.g. a TTL silently dropped)."""

    name = "number"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return float(number)


class NameType(click.ParamType[str, Any]):
    """A name the service checks (namespace, id, type, ...): checked here by the same
    rule, so a bad one gets the rule in words before any request is sent."""

    name = "name"

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_name(self.kind, value)
        except InvalidInputError as exc:
            self.fail(exc.message, param, ctx)


def _store(attr: str) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:
            setattr(ctx.ensure_object(Target), attr, value)

    return callback


def _checked(target: Target) -> Target:
    """The root group's values (perhaps from the environment) are checked only when a
    client command uses them: ``serve`` or ``completion`` do not care what MEMSTORE_URL
    or MEMORY_NAMESPACE hold."""
    from memstore.client.memory_client import url_problem

    problem = url_problem(target.url)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="'--url' (or MEMSTORE_URL)")
    try:
        check_name("namespace", target.namespace)
    except InvalidInputError as exc:
        raise click.BadParameter(
            exc.message, param_hint="'-n' / '--namespace' (or MEMORY_NAMESPACE)"
        ) from None
    return target


def _target_options(*, root: bool) -> Callable[[F], F]:
    """``--url``, ``-n/--namespace`` and ``--token`` for the root group (with their env
    variables and defaults) or for a client command or group (no env, no default: given,
    they override what was set before them, and are checked at once). Either way they
    land in ``ctx.obj`` (``Target``)."""

    def env(name: str) -> str | None:
        return name if root else None

    def default(value: str | None) -> str | None:
        return value if root else None

    def fallback(option: str, var: str, value: str | None) -> str:
        if root:
            return f"env {var}"
        last = f", {value}" if value else ""
        return f"default: {option} before the command, env {var}{last}"

    options = (
        click.option(
            "--url",
            envvar=env("MEMSTORE_URL"),
            default=default(DEFAULT_URL),
            show_default=root,
            type=None if root else UrlType(),
            expose_value=False,
            callback=_store("url"),
            help=f"Service URL ({fallback('--url', 'MEMSTORE_URL', DEFAULT_URL)}).",
        ),
        click.option(
            "--namespace",
            "-n",
            type=None if root else NameType("namespace"),
            envvar=env("MEMORY_NAMESPACE"),
            default=default("agent"),
            show_default=root,
            expose_value=False,
            callback=_store("namespace"),
            help=f"Memory namespace ({fallback('-n', 'MEMORY_NAMESPACE', 'agent')}).",
        ),
        click.option(
            "--token",
            envvar=env("MEMSTORE_TOKEN"),
            default=None,
            expose_value=False,
            callback=_store("token"),
            help=f"Bearer token ({fallback('--token', 'MEMSTORE_TOKEN', None)}); prefer the "
            "env var: a command line is visible to other users.",
        ),
    )

    def decorate(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


client_options = _target_options(root=False)


def _print(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _print_page(page: Page[Any]) -> None:
    _print({"items": [item.to_dict() for item in page.items], "next_cursor": page.next_cursor})


def _parse_json(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {text[1:]}: {exc.strerror}") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from None


def _run(
    call: Callable[[MemoryClient], Awaitable[T]],
    *,
    ctx: click.Context | None = None,
    timeout: float = 30.0,
) -> T:
    from memstore.client import MemoryClient

    target = _checked((ctx or click.get_current_context()).ensure_object(Target))

    async def go() -> T:
        async with MemoryClient(
            target.url, target.namespace, token=target.token, timeout=timeout
        ) as client:
            return await call(client)

    try:
        return asyncio.run(go())
    except ServiceUnreachableError as exc:
        # No code prefix: the service did not say anything, it was not reached.
        raise click.ClickException(exc.message) from None
    except MemoryStoreError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None


Completer = Callable[[click.Context, click.Parameter, str], list[str]]


def _complete_from(
    fetch: Callable[[click.Context, MemoryClient], Awaitable[list[str]]],
) -> Completer:
    """Shell completion of names the service holds (types, ids, tools), asked with the
    --url/-n/--token typed so far; no answer within a second or two completes nothing
    rather than hanging the shell or printing an error into it."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        try:
            names = _run(lambda client: fetch(ctx, client), ctx=ctx, timeout=2.0)
        except click.ClickException:
            return []
        return [name for name in names if name.startswith(incomplete)]

    return complete


async def _entity_types(ctx: click.Context, client: MemoryClient) -> list[str]:
    return await client.get_entity_types()


async def _entity_ids(ctx: click.Context, client: MemoryClient) -> list[str]:
    entity_type = ctx.params.get("entity_type")
    if not entity_type:
        return []
    return [e.id for e in (await client.list_entities(entity_type)).items]


async def _conversation_ids(ctx: click.Context, client: MemoryClient) -> list[str]:
    return [c.conversation_id for c in (await client.list_conversations()).items]


async def _tool_names(ctx: click.Context, client: MemoryClient) -> list[str]:
    return await client.get_tool_names()


@click.group()
@click.version_option(package_name="memstore")
@_target_options(root=True)
def main() -> None:
    """memstore: distributed memory for AI agents.

    --url, -n/--namespace and --token go before the command or after it; given in both
    places, the one after the command wins.
    """


@main.command("hash-token")
def hash_token_command() -> None:
    """Read a token on stdin, print the sha256 the auth tokens file stores for it."""
    from memstore.server.auth import hash_token

    token = sys.stdin.readline().strip()
    if not token:
        raise click.ClickException("no token on stdin")
    click.echo(hash_token(token))


@main.command()
@click.option("--host", envvar="MEMSTORE_HOST", default=None, help="Bind address [127.0.0.1].")
@click.option("--port", envvar="MEMSTORE_PORT", type=int, default=None, help="Port [8080].")
@click.option(
    "--memory-type",
    type=click.Choice(["embedded", "redis", "mongodb"]),
    default=None,
    help="Backend (env MEMORY_TYPE) [embedded].",
)
@click.option("--data-path", type=click.Path(path_type=Path), default=None, help="Embedded file.")
@click.option(
    "--allow-insecure-bind",
    is_flag=True,
    default=None,
    help="Serve without auth on a non-loopback address (env MEMSTORE_ALLOW_INSECURE_BIND).",
)
@click.option(
    "--workers",
    envvar="MEMSTORE_WORKERS",
    type=int,
    default=None,
    help="Processes serving the port (Redis or MongoDB backend) [1].",
)
def serve(
    host: str | None,
    port: int | None,
    memory_type: str | None,
    data_path: Path | None,
    allow_insecure_bind: bool | None,
    workers: int | None,
) -> None:
    """Serve the HTTP API until SIGTERM/SIGINT (then stop gracefully)."""
    from memstore.core.settings import Settings
    from memstore.observability.logs import configure_logging

    overrides: dict[str, Any] = {}
    for key, value in (
        ("host", host),
        ("port", port),
        ("memory_type", memory_type),
        ("data_path", data_path),
        ("allow_insecure_bind", allow_insecure_bind),
        ("workers", workers),
    ):
        if value is not None:
            overrides[key] = value
    try:
        settings = Settings(**overrides)
        if settings.secondary_backend is not None:
            settings.secondary_settings()  # refused now rather than on the first request
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings: {_problems(exc)}") from None
    except ConfigurationError as exc:
        raise click.ClickException(f"invalid settings: {exc.message}") from None
    configure_logging(settings.log_level)
    log = logging.getLogger("memstore")
    log.info(
        "starting memstore on %s:%s with the %s backend",
        settings.host,
        settings.port,
        settings.memory_type,
    )
    try:
        if settings.workers > 1:
            from memstore.server.workers import serve_workers

            status = serve_workers(settings)
            if status:
                raise SystemExit(status)
        else:
            # Imported here: with --workers, prometheus-client must first be imported
            # after the supervisor chose its multiprocess directory.
            from memstore.server.app import serve as run_server

            run_server(settings)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc}"
        ) from None
    except MemoryStoreError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None


@main.command("mcp")
@click.option(
    "--in-process",
    is_flag=True,
    help="Open the memory in this process (MEMORY_TYPE, by default the embedded store at "
    "MEMSTORE_DATA_PATH) instead of proxying to the service at --url.",
)
@click.option(
    "--data-path",
    type=click.Path(path_type=Path),
    default=None,
    help="Embedded file (with --in-process).",
)
@client_options
def mcp_command(in_process: bool, data_path: Path | None) -> None:
    """Serve MCP on stdin/stdout (for Claude Desktop and other MCP clients that start a
    command): the memory tools and resources, over the service at --url with --token, or
    in this process with --in-process."""
    from memstore.observability.logs import configure_logging

    target = _checked(click.get_current_context().ensure_object(Target))
    try:
        from memstore.server.mcp.stdio import serve_stdio
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"memstore mcp needs the MCP SDK ({exc.name} is missing): pip install 'memstore[mcp]'"
        ) from None
    if in_process:
        from memstore.core.settings import Settings
        from memstore.memory.manager import DistributedMemoryManager

        overrides: dict[str, Any] = {"memory_namespace": target.namespace}
        if data_path is not None:
            overrides["data_path"] = data_path
        try:
            settings = Settings(**overrides)
        except ValidationError as exc:
            raise click.ClickException(f"invalid settings: {_problems(exc)}") from None
        # stdout carries the protocol: logs go to stderr, as always.
        configure_logging(settings.log_level)
        manager = DistributedMemoryManager(settings=settings)
        run = serve_stdio(manager, manager.add_change_listener)
    else:
        from memstore.client import MemoryClient

        configure_logging("WARNING")
        client = MemoryClient(target.url, target.namespace, token=target.token)
        run = serve_stdio(client, None)
    try:
        asyncio.run(run)
    except MemoryStoreError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    except KeyboardInterrupt:
        pass


def _problems(exc: ValidationError) -> str:
    # A check of several settings together has no location; its message names them.
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        message = error["msg"].removeprefix("Value error, ")
        where = ".".join(map(str, error["loc"]))
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


ENTITY_TYPE = click.argument(
    "entity_type", type=NameType("entity_type"), shell_complete=_complete_from(_entity_types)
)
ENTITY_ID = click.argument(
    "entity_id", type=NameType("entity_id"), shell_complete=_complete_from(_entity_ids)
)
CONVERSATION_ID = click.argument(
    "conversation_id",
    type=NameType("conversation_id"),
    shell_complete=_complete_from(_conversation_ids),
)
LIMIT = click.option("--limit", type=click.IntRange(min=1), default=None, help="Page size.")
CURSOR = click.option("--cursor", default=None, help="The next_cursor of the previous page.")
IF_VERSION = click.option(
    "--if-version",
    type=click.IntRange(min=0),
    default=None,
    help="Only if the stored version is this (0: only if it does not exist).",
)


def _entity_missing(entity_type: str, entity_id: str) -> click.ClickException:
    return click.ClickException(f"not_found: entity {entity_type}/{entity_id} does not exist")


@main.group()
@client_options
def entity() -> None:
    """Put, get, delete and list entities."""


@entity.command("put")
@ENTITY_TYPE
@ENTITY_ID
@click.argument("data")
@click.option(
    "--ttl", type=Finite(min=0, min_open=True), default=None, help="Expire after this many seconds."
)
@IF_VERSION
@client_options
def entity_put(
    entity_type: str, entity_id: str, data: str, ttl: float | None, if_version: int | None
) -> None:
    """Save DATA (JSON object, @file or - for stdin) as ENTITY_TYPE/ENTITY_ID."""
    payload = _parse_json(data, "DATA")
    record = _run(
        lambda c: c.save_entity(
            entity_type, entity_id, payload, ttl=ttl, expected_version=if_version
        )
    )
    _print(record.to_dict())


@entity.command("get")
@ENTITY_TYPE
@ENTITY_ID
@client_options
def entity_get(entity_type: str, entity_id: str) -> None:
    """Print one entity."""
    record = _run(lambda c: c.get_entity(entity_type, entity_id))
    if record is None:
        raise _entity_missing(entity_type, entity_id)
    _print(record.to_dict())


@entity.command("delete")
@ENTITY_TYPE
@ENTITY_ID
@IF_VERSION
@client_options
def entity_delete(entity_type: str, entity_id: str, if_version: int | None) -> None:
    """Delete one entity."""
    if not _run(lambda c: c.delete_entity(entity_type, entity_id, expected_version=if_version)):
        raise _entity_missing(entity_type, entity_id)
    click.echo(f"deleted {entity_type}/{entity_id}")


@entity.command("pin")
@ENTITY_TYPE
@ENTITY_ID
@click.option("--off", is_flag=True, help="Unpin instead.")
@client_options
def entity_pin(entity_type: str, entity_id: str, off: bool) -> None:
    """Pin an entity: retention never removes it (--off: unpin)."""
    record = _run(lambda c: c.pin_entity(entity_type, entity_id, pinned=not off))
    if record is None:
        raise _entity_missing(entity_type, entity_id)
    _print(record.to_dict())


@entity.command("list")
@ENTITY_TYPE
@LIMIT
@CURSOR
@client_options
def entity_list(entity_type: str, limit: int | None, cursor: str | None) -> None:
    """List one page of entities of ENTITY_TYPE, by id."""
    _print_page(_run(lambda c: c.list_entities(entity_type, limit=limit, cursor=cursor)))


@entity.command("types")
@client_options
def entity_types() -> None:
    """List the entity types that have at least one entity."""
    _print(_run(lambda c: c.get_entity_types()))


@main.group()
@client_options
def conversation() -> None:
    """Append to, show, pop, replace, list and delete conversations."""


def _messages(text: str) -> list[Any]:
    value = _parse_json(text, "MESSAGES")
    return value if isinstance(value, list) else [value]


@conversation.command("append")
@CONVERSATION_ID
@click.argument("messages")
@client_options
def conversation_append(conversation_id: str, messages: str) -> None:
    """Append MESSAGES (a JSON object, or a JSON array of them; @file or - for stdin) to
    CONVERSATION_ID."""
    values = _messages(messages)
    records = _run(lambda c: c.append_messages(values, conversation_id))
    _print([r.to_dict() for r in records])


@conversation.command("show")
@CONVERSATION_ID
@click.option("--last", type=click.IntRange(min=1), default=None, help="Only the last N.")
@client_options
def conversation_show(conversation_id: str, last: int | None) -> None:
    """Print a conversation's messages in order."""
    records = _run(lambda c: c.load_messages(conversation_id, limit=last))
    _print([r.to_dict() for r in records])


@conversation.command("replace")
@CONVERSATION_ID
@click.argument("messages")
@client_options
def conversation_replace(conversation_id: str, messages: str) -> None:
    """Replace the whole history of CONVERSATION_ID with MESSAGES (as for append)."""
    values = _messages(messages)
    records = _run(lambda c: c.save_conversation_history(values, conversation_id))
    _print([r.to_dict() for r in records])


@conversation.command("list")
@LIMIT
@CURSOR
@client_options
def conversation_list(limit: int | None, cursor: str | None) -> None:
    """List one page of conversations, by id."""
    _print_page(_run(lambda c: c.list_conversations(limit=limit, cursor=cursor)))


@conversation.command("pop")
@CONVERSATION_ID
@client_options
def conversation_pop(conversation_id: str) -> None:
    """Remove the last message of CONVERSATION_ID and print it."""
    record = _run(lambda c: c.pop_message(conversation_id))
    if record is None:
        raise click.ClickException(f"not_found: conversation {conversation_id} has no messages")
    _print(record.to_dict())


@conversation.command("delete")
@CONVERSATION_ID
@client_options
def conversation_delete(conversation_id: str) -> None:
    """Delete a conversation and its messages."""
    if not _run(lambda c: c.delete_conversation(conversation_id)):
        raise click.ClickException(f"not_found: conversation {conversation_id} does not exist")
    click.echo(f"deleted conversation {conversation_id}")


@main.group()
@client_options
def tool() -> None:
    """Record and list tool uses."""


@tool.command("record")
@click.argument("tool_name", type=NameType("tool_name"), shell_complete=_complete_from(_tool_names))
@click.option("--input", "input_", default="null", help="The tool's input (JSON, @file, -).")
@click.option("--output", default="null", help="The tool's output (JSON, @file, -).")
@click.option(
    "--duration-ms",
    type=Finite(min=0),
    default=0.0,
    show_default=True,
    help="How long the use took.",
)
@click.option("--failed", is_flag=True, help="The use failed (default: it succeeded).")
@click.option(
    "--conversation", type=NameType("conversation_id"), default=None, help="Its conversation."
)
@click.option("--timestamp", type=Finite(min=0), default=None, help="POSIX seconds [now].")
@click.option(
    "--id", "usage_id", type=NameType("entity_id"), default=None, help="Makes a retry idempotent."
)
@client_options
def tool_record(
    tool_name: str,
    input_: str,
    output: str,
    duration_ms: float,
    failed: bool,
    conversation: str | None,
    timestamp: float | None,
    usage_id: str | None,
) -> None:
    """Record one use of TOOL_NAME."""
    args = _parse_json(input_, "--input")
    result = _parse_json(output, "--output")
    record = _run(
        lambda c: c.save_tool_usage(
            tool_name,
            args,
            result,
            duration_ms=duration_ms,
            success=not failed,
            conversation_id=conversation,
            timestamp=timestamp,
            usage_id=usage_id,
        )
    )
    _print(record.to_dict())


@tool.command("list")
@click.option(
    "--tool",
    "tool_name",
    type=NameType("tool_name"),
    default=None,
    shell_complete=_complete_from(_tool_names),
    help="Only this tool's uses.",
)
@click.option("--start", type=Finite(), default=None, help="From (POSIX seconds, inclusive).")
@click.option("--end", type=Finite(), default=None, help="To (POSIX seconds, exclusive).")
@LIMIT
@CURSOR
@client_options
def tool_list(
    tool_name: str | None,
    start: float | None,
    end: float | None,
    limit: int | None,
    cursor: str | None,
) -> None:
    """List one page of tool uses, oldest first."""
    _print_page(
        _run(
            lambda c: c.query_tool_usage(
                tool_name, start=start, end=end, limit=limit, cursor=cursor
            )
        )
    )


@main.command("tools")
@client_options
def tools() -> None:
    """List the tools with at least one recorded use."""
    _print(_run(lambda c: c.get_tool_names()))


@main.group()
@client_options
def feedback() -> None:
    """Record and list learning feedback."""


@feedback.command("add")
@click.argument("agent_name", type=NameType("agent_name"))
@click.argument("feedback_type", type=NameType("feedback_type"))
@click.argument("data", default="null")
@client_options
def feedback_add(agent_name: str, feedback_type: str, data: str) -> None:
    """Record feedback of FEEDBACK_TYPE for AGENT_NAME; DATA is JSON (@file, - for stdin)."""
    value = _parse_json(data, "DATA")
    _print(_run(lambda c: c.save_learning_feedback(agent_name, feedback_type, value)).to_dict())


@feedback.command("list")
@click.option("--agent", type=NameType("agent_name"), default=None, help="Only this agent's.")
@click.option("--type", "feedback_type", type=NameType("feedback_type"), default=None)
@LIMIT
@CURSOR
@client_options
def feedback_list(
    agent: str | None, feedback_type: str | None, limit: int | None, cursor: str | None
) -> None:
    """List one page of feedback, oldest first."""
    _print_page(
        _run(lambda c: c.query_learning_feedback(agent, feedback_type, limit=limit, cursor=cursor))
    )


@main.group()
@client_options
def search() -> None:
    """Recall: search entities, messages and tool uses by fields, words and meaning.

    Prints one page of hits, best first, each with its score, and the mode that ran;
    pass --cursor the printed next_cursor for the next page. Bad input (an unknown
    operator, a limit out of range, an empty query) is an error naming the field.
    """


SEARCH_MODE = click.option(
    "--mode",
    type=click.Choice(SEARCH_MODES),
    default="auto",
    show_default=True,
    help="filter, keyword (BM25), semantic (embeddings), hybrid (both fused); auto: hybrid "
    "with a query (keyword without an embedder), filter without one.",
)
SEARCH_LIMIT = click.option(
    "--limit", type=int, default=None, help="Page size [the server's default page size]."
)


@search.command("entities")
@click.argument("query", required=False)
@click.option(
    "--type",
    "types",
    multiple=True,
    type=NameType("entity_type"),
    shell_complete=_complete_from(_entity_types),
    help="Only entities of this type (repeat the option for several).",
)
@click.option(
    "--filter",
    "filter_",
    default=None,
    help='Conditions on fields (JSON, @file or -): {"stars": {"$gte": 4}, "author.name": '
    f'"Ada"}}; operators {" ".join(FILTER_OPERATORS)}.',
)
@SEARCH_MODE
@SEARCH_LIMIT
@CURSOR
@client_options
def search_entities(
    query: str | None,
    types: tuple[str, ...],
    filter_: str | None,
    mode: str,
    limit: int | None,
    cursor: str | None,
) -> None:
    """Search entities for QUERY (words or a question; leave it out to filter only)."""
    conditions = None if filter_ is None else _parse_json(filter_, "--filter")
    page = _run(
        lambda c: c.search_entities(
            query,
            types=list(types) or None,
            filter=conditions,
            mode=mode,  # type: ignore[arg-type]  # one of SEARCH_MODES (click.Choice)
            limit=limit,
            cursor=cursor,
        )
    )
    _print(page.to_dict())


@search.command("messages")
@click.argument("query")
@click.option(
    "--conversation",
    type=NameType("conversation_id"),
    default=None,
    shell_complete=_complete_from(_conversation_ids),
    help="Only this conversation's messages.",
)
@SEARCH_MODE
@SEARCH_LIMIT
@CURSOR
@client_options
def search_messages(
    query: str, conversation: str | None, mode: str, limit: int | None, cursor: str | None
) -> None:
    """Search conversation messages for QUERY."""
    page = _run(
        lambda c: c.search_messages(
            query,
            conversation_id=conversation,
            mode=mode,  # type: ignore[arg-type]
            limit=limit,
            cursor=cursor,
        )
    )
    _print(page.to_dict())


@search.command("tool-usage")
@click.argument("query")
@click.option(
    "--tool",
    "tool_name",
    type=NameType("tool_name"),
    default=None,
    shell_complete=_complete_from(_tool_names),
    help="Only this tool's uses.",
)
@SEARCH_MODE
@SEARCH_LIMIT
@CURSOR
@client_options
def search_tool_usage(
    query: str, tool_name: str | None, mode: str, limit: int | None, cursor: str | None
) -> None:
    """Search tool uses (tool name, input, output) for QUERY."""
    page = _run(
        lambda c: c.search_tool_usage(
            query,
            tool_name=tool_name,
            mode=mode,  # type: ignore[arg-type]
            limit=limit,
            cursor=cursor,
        )
    )
    _print(page.to_dict())


@main.group()
@client_options
def keys() -> None:
    """Encryption at rest: data keys, rotation, crypto-shredding (admin)."""


@keys.command("new-kek")
@click.option("--id", "key_id", required=True, help="The key's id (letters, digits, _ . -).")
def keys_new_kek(key_id: str) -> None:
    """Print a new key-encryption key as a line of a MEMSTORE_ENCRYPTION_KEY_FILE
    (`<id>:<base64 of 32 random bytes>`). Needs no service."""
    from memstore.core.payload_codec import new_kek_line

    try:
        click.echo(new_kek_line(key_id))
    except MemoryStoreError as exc:
        raise click.ClickException(exc.message) from None


@keys.command("list")
@client_options
def keys_list() -> None:
    """Every namespace's data key: key id and the key-encryption key wrapping it."""
    _print(_run(lambda c: c.list_data_keys()))


@keys.command("rotate")
@client_options
def keys_rotate() -> None:
    """Re-wrap every data key with the key file's first (primary) key-encryption key.
    Run it after putting a new key first in the file on every replica; old data stays
    readable, and the old key can leave the file once this reports every key re-wrapped."""
    _print(_run(lambda c: c.rotate_data_keys()))


@keys.command("shred")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@client_options
def keys_shred(yes: bool) -> None:
    """Delete the namespace's data key: its encrypted data becomes unreadable for good,
    on every replica and in every backup. Other namespaces are untouched."""
    target = _checked(click.get_current_context().ensure_object(Target))
    if not yes:
        click.confirm(
            f"Make every encrypted payload of namespace {target.namespace!r} unreadable for good?",
            abort=True,
        )
    _print(_run(lambda c: c.shred_data_key()))


@main.group()
@client_options
def retention() -> None:
    """The namespace's retention policy: show it, dry-run it, enforce it."""


@retention.command("policy")
@client_options
def retention_show_policy() -> None:
    """Print the namespace's policy (null: kept forever)."""

    _print(_run(lambda c: c.get_retention_policy()).model_dump())


@retention.command("dry-run")
@click.option(
    "--at", type=Finite(min=0), default=None, help="Judge at this instant (POSIX seconds) [now]."
)
@LIMIT
@client_options
def retention_dry_run(at: float | None, limit: int | None) -> None:
    """Print what the policy would remove (per kind the first LIMIT items); removes nothing."""
    _print(_run(lambda c: c.retention_dry_run(at=at, limit=limit)).to_dict())


@retention.command("enforce")
@LIMIT
@client_options
def retention_enforce(limit: int | None) -> None:
    """Remove now what the policy selects, one batch (admin); prints what went."""
    _print(_run(lambda c: c.enforce_retention(limit=limit)).to_dict())


@main.group()
@client_options
def audit() -> None:
    """The namespace's audit trail: who changed what, when, from where (admin)."""


@audit.command("export")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=None,
    help="Only events after this position [from the oldest retained one].",
)
@click.option("--since", type=Finite(min=0), default=None, help="From (POSIX seconds, inclusive).")
@click.option("--until", type=Finite(min=0), default=None, help="To (POSIX seconds, exclusive).")
@client_options
def audit_export(after: int | None, since: float | None, until: float | None) -> None:
    """Print the change log as JSON lines, one event per line, oldest first: position,
    kind, time, keys, version, actor (token name) and address; never payloads."""

    async def export(client: MemoryClient) -> None:
        async for event in client.export_audit(after=after, since=since, until=until):
            click.echo(orjson.dumps(event.to_dict()).decode())

    _run(export)


# -- export and import (memstore.core.dump) ------------------------------------------------

#: Bytes read from a dump file per chunk sent.
_CHUNK = 256 * 1024


def _namespace_given(ctx: click.Context) -> bool:
    """Whether -n/--namespace was on the command line (before or after the command): only
    then does it override the namespaces the dumps name (MEMORY_NAMESPACE does not)."""
    from click.core import ParameterSource

    return any(
        c.get_parameter_source("namespace") == ParameterSource.COMMANDLINE
        for c in (ctx, ctx.find_root())
    )


async def _write_dump(client: MemoryClient, out: Any, with_key: bool = False) -> int:
    lines = 0
    async for line in client.export_namespace(with_key=with_key):
        out.write(line)
        lines += 1
    return lines


def _export_to(
    client: MemoryClient, path: Path, with_key: bool = False
) -> Callable[[], Awaitable[int]]:
    """Export into ``path`` through a temporary name, renamed when the dump is complete:
    a failed export never leaves a file that looks like a dump."""

    async def go() -> int:
        partial = path.with_name(f".{path.name}.partial")
        try:
            with partial.open("wb") as out:
                lines = await _write_dump(client, out, with_key)
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return lines

    return go


def _report_export(namespace: str, path: Path, lines: int) -> None:
    """One JSON line per dump written (manifest and trailer are not records)."""
    click.echo(
        orjson.dumps({"namespace": namespace, "file": str(path), "records": lines - 2}).decode()
    )


@main.command("export")
@click.option(
    "--output",
    "-o",
    required=True,
    help="File to write the dump to (- = stdout); with --all, a directory: DIR/<namespace>.jsonl.",
)
@click.option(
    "--all", "every", is_flag=True, help="Every namespace the token covers, one dump each."
)
@click.option(
    "--with-key",
    is_flag=True,
    help="Encryption at rest: the dump carries its data key, wrapped by the key-encryption "
    "key, so any store with that KEK imports it; it then outlives `keys shred`.",
)
@client_options
def export_command(output: str, every: bool, with_key: bool) -> None:
    """Export the namespace (admin): a dump in JSON lines that `memstore import` restores
    into any backend (docs/architecture.md, "Export and import"). With encryption at rest
    the payloads are encrypted with the namespace's data key: the dump imports only where
    that key is (not after `keys shred`), unless --with-key. Prints one JSON line per dump
    written (unless the dump goes to stdout)."""
    if not every:
        if output == "-":
            _run(lambda c: _write_dump(c, sys.stdout.buffer, with_key), timeout=300.0)
            sys.stdout.flush()
            return
        path = Path(output)
        try:
            lines = _run(lambda c: _export_to(c, path, with_key)(), timeout=300.0)
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror}") from None
        target = click.get_current_context().ensure_object(Target)
        _report_export(target.namespace, path, lines)
        return
    folder = Path(output)
    if output == "-" or (folder.exists() and not folder.is_dir()):
        raise click.BadParameter("with --all, --output is a directory", param_hint="'--output'")

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot create {output}: {exc.strerror}") from None

    def report_skipped(namespace: str, code: str, message: str) -> None:
        click.echo(f"Skipped namespace {namespace}: {code}: {message}", err=True)

    async def export_all(client: MemoryClient) -> tuple[int, int]:
        """Every namespace that can be exported now; (exported, skipped)."""
        summaries, skipped = await client.list_memory_summaries_and_skipped()
        for s in skipped:
            report_skipped(s["namespace"], s["code"], s["message"])
        exported = 0
        for summary in summaries:
            path = folder / f"{summary.namespace}.jsonl"
            try:
                lines = await _export_to(client.for_namespace(summary.namespace), path, with_key)()
            except (NamespaceImportingError, DataShreddedError) as exc:
                # that namespace's state, not the store's: the others are still backed up
                report_skipped(summary.namespace, exc.code, exc.message)
                skipped.append({"namespace": summary.namespace})
                continue
            _report_export(summary.namespace, path, lines)
            exported += 1
        return exported, len(skipped)

    try:
        exported, skipped = _run(export_all, timeout=300.0)
    except OSError as exc:
        raise click.ClickException(f"cannot write to {output}: {exc.strerror}") from None
    if skipped and not exported:
        # a backup that saved nothing must not look like a success
        raise click.ClickException(f"no namespace exported ({skipped} skipped)")


def _dump_namespace(path: Path) -> str:
    """The namespace a dump file's manifest names (its first line)."""
    from memstore.core import dump

    try:
        with path.open("rb") as f:
            first = f.readline(dump.MAX_LINE_BYTES)
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    try:
        return dump.read_manifest(first).namespace
    except MemoryStoreError as exc:
        raise click.ClickException(f"{path}: {exc.message}") from None


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


@main.command("import")
@click.option(
    "--input",
    "-i",
    "source",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="A dump file, or a directory of dumps (*.jsonl): each into the namespace its "
    "manifest names (-n on the command line overrides it for a single file).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Replace the namespace's entities and conversations (else a namespace holding data "
    "is refused).",
)
@client_options
def import_command(source: Path, replace: bool) -> None:
    """Import dumps written by `memstore export` (admin), into any backend. Each dump is
    verified whole (counts, sha256) before anything is written, and its namespace is
    unreadable until it is imported. Prints one JSON line per namespace imported."""
    ctx = click.get_current_context()
    override = _namespace_given(ctx)
    if source.is_dir():
        if override:
            raise click.BadParameter(
                "-n names the target of a single file; a directory's dumps go to the "
                "namespaces their manifests name",
                param_hint="'-n'",
            )
        files = sorted(p for p in source.iterdir() if p.suffix == ".jsonl" and p.is_file())
        if not files:
            raise click.ClickException(f"no *.jsonl dumps in {source}")
    else:
        files = [source]
    target = ctx.ensure_object(Target)
    plan = [(p, target.namespace if override else _dump_namespace(p)) for p in files]

    async def run_imports(client: MemoryClient) -> None:
        for path, namespace in plan:
            try:
                result = await client.for_namespace(namespace).import_namespace(
                    _file_chunks(path), replace=replace
                )
            except MemoryStoreError as exc:
                exc.message = f"{path}: {exc.message}"
                raise
            click.echo(orjson.dumps({"file": str(path), **result.to_dict()}).decode())

    try:
        _run(run_imports, timeout=300.0)
    except OSError as exc:
        raise click.ClickException(f"cannot read {source}: {exc.strerror}") from None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Structured output.")
@click.option(
    "--all", "every", is_flag=True, help="Every namespace the token covers (admin; JSON)."
)
@client_options
def summary(as_json: bool, every: bool) -> None:
    """Print the namespace's memory summary."""
    if every:
        _print([s.to_dict() for s in _run(lambda c: c.list_memory_summaries())])
    elif as_json:
        _print(_run(lambda c: c.get_memory_summary_data()).to_dict())
    else:
        click.echo(_run(lambda c: c.get_memory_summary()))


@main.command()
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Only changes after this position (a printed change's `position`: resume "
    "there); 0 starts at the oldest change still retained.",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(CHANGE_KINDS),
    help="Only changes of this kind (repeat the option for several).",
)
@click.option(
    "--type",
    "entity_type",
    type=NameType("entity_type"),
    default=None,
    shell_complete=_complete_from(_entity_types),
    help="Only changes of entities of this type.",
)
@click.option(
    "--conversation",
    type=NameType("conversation_id"),
    default=None,
    shell_complete=_complete_from(_conversation_ids),
    help="Only changes of this conversation (and tool uses recorded in it).",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many changes (default: follow until Ctrl-C).",
)
@client_options
def watch(
    after: int,
    kinds: tuple[str, ...],
    entity_type: str | None,
    conversation: str | None,
    count: int | None,
) -> None:
    """Print the namespace's changes, oldest first, one JSON line each, and follow new
    ones as they happen (the service's change feed; a dropped connection is resumed where
    it stopped)."""

    async def follow(client: MemoryClient) -> None:
        printed = 0
        async for change in client.watch(
            after=after,
            kinds=kinds or None,
            entity_type=entity_type,
            conversation_id=conversation,
        ):
            line = change.to_dict()
            line.pop("address", None)  # never on the feed
            click.echo(orjson.dumps(line).decode())
            sys.stdout.flush()  # one line as each change comes, also into a pipe
            printed += 1
            if count is not None and printed >= count:
                return

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a follow ends
        _run(follow)


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(memstore completion bash)".

    In ~/.bashrc, ~/.zshrc, or for fish: memstore completion fish | source.
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # every choice is one click ships
    root = click.get_current_context().find_root()
    click.echo(cls(main, {}, root.info_name or "memstore", "_MEMSTORE_COMPLETE").source())


@main.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def operator(args: tuple[str, ...]) -> None:
    """Run the Kubernetes operator for MemoryStore resources (`memstore operator --help`).

    Hands over to the `memstore-operator` command of the same installation, arguments
    unchanged: the operator is a separate program that the service never imports.
    """
    import os
    import shutil
    import sysconfig

    # The scripts folder of this interpreter first, so a virtualenv's operator is found
    # even when that virtualenv is not on PATH.
    search = os.pathsep.join(
        p for p in (sysconfig.get_path("scripts"), os.environ.get("PATH")) if p
    )
    program = shutil.which("memstore-operator", path=search)
    if program is None:
        raise click.ClickException(
            "the operator is not installed (no memstore-operator command): "
            "pip install 'memstore[operator]'"
        )
    try:
        os.execv(program, [program, *args])  # noqa: S606 - our own program, no shell
    except OSError as exc:
        raise click.ClickException(f"cannot run {program}: {exc.strerror}") from None


if __name__ == "__main__":  # pragma: no cover
    main()
