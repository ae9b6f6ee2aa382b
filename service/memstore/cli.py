"""``memstore`` command line: ``serve`` and client commands against a running service.

Errors are printed as one clear line and exit with status 1 (2 for usage errors); never
a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
from pydantic import ValidationError

from memstore.core.errors import MemoryStoreError

T = TypeVar("T")

URL_OPTION = click.option(
    "--url",
    envvar="MEMSTORE_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Service URL (env MEMSTORE_URL).",
)
NS_OPTION = click.option(
    "--namespace",
    "-n",
    envvar="MEMORY_NAMESPACE",
    default="agent",
    show_default=True,
    help="Memory namespace (env MEMORY_NAMESPACE).",
)


def _print(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


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


def _run(url: str, namespace: str, call: Callable[[Any], Awaitable[T]]) -> T:
    from memstore.client import MemoryClient

    root = click.get_current_context().find_root()
    token = root.params.get("token") or None

    async def go() -> T:
        async with MemoryClient(url, namespace, token=token) as client:
            return await call(client)

    try:
        return asyncio.run(go())
    except MemoryStoreError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None


@click.group()
@click.version_option(package_name="memstore")
@click.option(
    "--token",
    envvar="MEMSTORE_TOKEN",
    default=None,
    show_default=False,
    help="Bearer token for client commands (env MEMSTORE_TOKEN; prefer the env var, "
    "a command line is visible to other users).",
)
def main(token: str | None) -> None:
    """memstore: distributed memory for AI agents."""


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
def serve(
    host: str | None,
    port: int | None,
    memory_type: str | None,
    data_path: Path | None,
    allow_insecure_bind: bool | None,
) -> None:
    """Serve the HTTP API until SIGTERM/SIGINT (then stop gracefully)."""
    from memstore.core.settings import Settings
    from memstore.observability.logs import configure_logging
    from memstore.server.app import serve as run_server

    overrides: dict[str, Any] = {}
    for key, value in (
        ("host", host),
        ("port", port),
        ("memory_type", memory_type),
        ("data_path", data_path),
        ("allow_insecure_bind", allow_insecure_bind),
    ):
        if value is not None:
            overrides[key] = value
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise click.ClickException(f"invalid settings: {problems}") from None
    configure_logging(settings.log_level)
    log = logging.getLogger("memstore")
    log.info(
        "starting memstore on %s:%s with the %s backend",
        settings.host,
        settings.port,
        settings.memory_type,
    )
    try:
        run_server(settings)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc}"
        ) from None
    except MemoryStoreError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None


@main.group()
def entity() -> None:
    """Put, get, delete and list entities."""


@entity.command("put")
@URL_OPTION
@NS_OPTION
@click.argument("entity_type")
@click.argument("entity_id")
@click.argument("data")
@click.option("--ttl", type=float, default=None, help="Expire after this many seconds.")
@click.option("--if-version", type=int, default=None, help="Only if the stored version is this.")
def entity_put(
    url: str,
    namespace: str,
    entity_type: str,
    entity_id: str,
    data: str,
    ttl: float | None,
    if_version: int | None,
) -> None:
    """Save DATA (JSON object, @file or - for stdin) as ENTITY_TYPE/ENTITY_ID."""
    payload = _parse_json(data, "DATA")
    record = _run(
        url,
        namespace,
        lambda c: c.save_entity(
            entity_type, entity_id, payload, ttl=ttl, expected_version=if_version
        ),
    )
    _print(record.to_dict())


@entity.command("get")
@URL_OPTION
@NS_OPTION
@click.argument("entity_type")
@click.argument("entity_id")
def entity_get(url: str, namespace: str, entity_type: str, entity_id: str) -> None:
    """Print one entity."""
    record = _run(url, namespace, lambda c: c.get_entity(entity_type, entity_id))
    if record is None:
        raise click.ClickException(f"not_found: entity {entity_type}/{entity_id} does not exist")
    _print(record.to_dict())


@entity.command("delete")
@URL_OPTION
@NS_OPTION
@click.argument("entity_type")
@click.argument("entity_id")
def entity_delete(url: str, namespace: str, entity_type: str, entity_id: str) -> None:
    """Delete one entity."""
    if not _run(url, namespace, lambda c: c.delete_entity(entity_type, entity_id)):
        raise click.ClickException(f"not_found: entity {entity_type}/{entity_id} does not exist")
    click.echo(f"deleted {entity_type}/{entity_id}")


@entity.command("list")
@URL_OPTION
@NS_OPTION
@click.argument("entity_type")
@click.option("--limit", type=int, default=None)
@click.option("--cursor", default=None)
def entity_list(
    url: str, namespace: str, entity_type: str, limit: int | None, cursor: str | None
) -> None:
    """List one page of entities of ENTITY_TYPE."""
    page = _run(url, namespace, lambda c: c.list_entities(entity_type, limit=limit, cursor=cursor))
    _print({"items": [e.to_dict() for e in page.items], "next_cursor": page.next_cursor})


@main.group()
def conversation() -> None:
    """Append to and show conversations."""


@conversation.command("append")
@URL_OPTION
@NS_OPTION
@click.argument("conversation_id")
@click.argument("message")
def conversation_append(url: str, namespace: str, conversation_id: str, message: str) -> None:
    """Append MESSAGE (a JSON object, or a JSON array of them) to CONVERSATION_ID."""
    value = _parse_json(message, "MESSAGE")
    messages = value if isinstance(value, list) else [value]
    records = _run(url, namespace, lambda c: c.append_messages(messages, conversation_id))
    _print([r.to_dict() for r in records])


@conversation.command("show")
@URL_OPTION
@NS_OPTION
@click.argument("conversation_id")
@click.option("--last", type=int, default=None, help="Only the last N messages.")
def conversation_show(url: str, namespace: str, conversation_id: str, last: int | None) -> None:
    """Print a conversation's messages in order."""
    records = _run(url, namespace, lambda c: c.load_messages(conversation_id, limit=last))
    _print([r.to_dict() for r in records])


@main.command()
@URL_OPTION
@NS_OPTION
@click.option("--json", "as_json", is_flag=True, help="Structured output.")
def summary(url: str, namespace: str, as_json: bool) -> None:
    """Print the namespace's memory summary."""
    if as_json:
        data = _run(url, namespace, lambda c: c.get_memory_summary_data())
        _print(data.to_dict())
    else:
        click.echo(_run(url, namespace, lambda c: c.get_memory_summary()))


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
