"""What can be checked about the Dockerfile without a container engine: it parses, it is
multi-stage with the build tools only in the builder, it runs as a numeric non-root user,
and the programs it (and the chart, and the operator) start exist in the installed
package."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from memstore.core.settings import Settings
from memstore.server.security import check_bind
from memstore_operator import builders
from memstore_operator import constants as opc
from memstore_operator.__main__ import LIVENESS_DEFAULT
from memstore_operator.model import parse_spec
from tests.support.procs import free_port, wait_http
from tools.chartgen import CHART, REPO

if TYPE_CHECKING:
    # The stubs' name for one entry of DockerfileParser.structure.
    from dockerfile_parse.parser import _InstructionDict as Instruction

DOCKERFILE = REPO / "Dockerfile"
LOCK_FILE = REPO / "requirements.lock"
KNOWN = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "COMMENT",
}  # fmt: skip
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "cmake", "clang", "rustc", "cargo")


def stages() -> list[list[Instruction]]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    out: list[list[Instruction]] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def final_stage() -> list[Instruction]:
    return stages()[-1]


def one(stage: list[Instruction], instruction: str) -> str:
    (value,) = [i["value"] for i in stage if i["instruction"] == instruction]
    return str(value)


def test_dockerfile_parses_and_is_multi_stage() -> None:
    parser = DockerfileParser(path=str(DOCKERFILE))
    assert parser.structure
    for ins in parser.structure:
        assert ins["instruction"] in KNOWN, ins
    assert parser.is_multistage
    froms = [s[0]["value"] for s in stages()]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    args = {
        i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1]
        for i in parser.structure
        if i["instruction"] == "ARG" and "=" in i["value"]
    }
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["PYTHON_IMAGE"])


def test_no_build_tools_in_the_final_stage() -> None:
    builder, final = stages()
    builder_runs = " ".join(i["value"] for i in builder if i["instruction"] == "RUN")
    assert "build-essential" in builder_runs  # the tools exist, in the builder only
    for ins in final:
        if ins["instruction"] in ("RUN", "COPY", "ADD"):
            words = re.split(r"[\s;&|]+", ins["value"])
            assert not set(words) & set(BUILD_TOOLS), ins["value"]
        if ins["instruction"] == "RUN" and "pip install" in ins["value"]:
            # From the builder's wheels only: nothing is downloaded or compiled here.
            assert "--no-index" in ins["value"]
            assert "from=builder" in ins["value"]


def test_the_builder_installs_the_locked_versions() -> None:
    """The wheels are built at the versions make and CI test: those of requirements.lock."""
    builder = stages()[0]
    copied = [i["value"].split()[:-1] for i in builder if i["instruction"] == "COPY"]
    assert any(LOCK_FILE.name in sources for sources in copied)
    (wheel,) = [
        i["value"] for i in builder if i["instruction"] == "RUN" and "pip wheel" in i["value"]
    ]
    assert re.search(rf"(-c|--constraint)[ =]{re.escape(LOCK_FILE.name)}\b", wheel), wheel


def test_runs_as_a_numeric_non_root_user() -> None:
    user = one(final_stage(), "USER")
    m = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert m, f"USER {user!r} is not numeric (runAsNonRoot needs a numeric uid)"
    uid = int(m[1])
    assert uid != 0
    assert m[2] is None or int(m[2]) != 0
    # The same uid the chart and the operator put in their security contexts.
    assert uid == opc.RUN_AS_USER
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operator"]["podSecurityContext"]["runAsUser"] == uid


def test_read_only_root_filesystem_friendly() -> None:
    env_text = " ".join(i["value"] for i in final_stage() if i["instruction"] == "ENV")
    env = dict(re.findall(r"(\w+)=(\S+)", env_text))
    assert env["HOME"] == "/tmp"  # an emptyDir in every pod
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["MEMSTORE_DATA_PATH"] == opc.DATA_PATH
    assert Path(opc.DATA_PATH).parent.as_posix() in one(final_stage(), "VOLUME")


def _console_scripts() -> dict[str, metadata.EntryPoint]:
    dist = metadata.distribution("memstore")
    return {ep.name: ep for ep in dist.entry_points if ep.group == "console_scripts"}


def test_entry_points_exist_in_the_installed_package() -> None:
    scripts = _console_scripts()
    entrypoint = json.loads(one(final_stage(), "ENTRYPOINT"))
    cmd = json.loads(one(final_stage(), "CMD"))
    (program,) = entrypoint
    assert program in scripts
    cli = scripts[program].load()
    assert isinstance(cli, click.Group)
    # CMD and the args the operator gives the server pods are commands of that program.
    assert cmd[0] in cli.commands
    spec = parse_spec("m", "ns", {"backend": {"type": "embedded"}})
    server = builders.deployment(spec, "hash")["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in server  # the image's ENTRYPOINT runs
    assert server["args"][0] in cli.commands
    # The chart runs the operator by its console script.
    (op_program,) = _chart_operator_command()
    assert op_program in scripts
    assert callable(scripts[op_program].load())


def _chart_operator_command() -> list[str]:
    text = (CHART / "templates" / "deployment.yaml").read_text()
    (command,) = re.findall(r"command: (\[.*\])", text)
    result: list[str] = json.loads(command)
    return result


def test_exposed_ports() -> None:
    ports = one(final_stage(), "EXPOSE").split()
    assert str(opc.CONTAINER_PORT) in ports
    assert LIVENESS_DEFAULT.rsplit(":", 1)[1].split("/")[0] in ports


def test_version_matches_the_package() -> None:
    (arg,) = [i["value"] for i in final_stage() if i["value"].startswith("VERSION=")]
    assert arg.split("=", 1)[1] == metadata.version("memstore")


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; "!" re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) for p in prefixes) or fnmatch.fnmatch(path, pat):
            ignored = not negate
    return ignored


def test_copied_sources_exist_and_are_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [i["value"] for i in stages()[0] if i["instruction"] == "COPY"]
    assert copies
    for value in copies:
        *sources, _dest = value.split()
        for src in sources:
            assert (REPO / src).exists(), src
            assert not _dockerignored(src, patterns), f"{src} is excluded by .dockerignore"
    # Files that must not travel to the build context.
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "charts/memstore"):
        assert _dockerignored(path, patterns), path
    assert _dockerignored("service/memstore/__pycache__/x.pyc", patterns)


# -- Starting the image with its defaults -------------------------------------------------


def image_env() -> dict[str, str]:
    """The runtime stage's ENV, as a container started from the image sees it."""
    env_text = " ".join(i["value"] for i in final_stage() if i["instruction"] == "ENV")
    return dict(re.findall(r"(\w+)=(\S+)", env_text))


def image_command() -> list[str]:
    """ENTRYPOINT + CMD, the program resolved in this environment's bin directory."""
    program, *args = json.loads(one(final_stage(), "ENTRYPOINT")) + json.loads(
        one(final_stage(), "CMD")
    )
    return [str(Path(sys.executable).with_name(program)), *args]


def test_the_image_defaults_explain_how_to_run_it() -> None:
    """`docker run` with nothing set: the image listens on 0.0.0.0 without auth, which the
    service refuses by design. It must exit non-zero with one message naming both ways
    to run it (the README's container section), not a traceback. Nothing is bound: the
    refusal comes before the listening socket."""
    env = {**image_env(), "PATH": "/usr/bin:/bin"}
    assert env["MEMSTORE_HOST"] == "0.0.0.0"
    done = subprocess.run(image_command(), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert "refusing to listen on 0.0.0.0 with authentication disabled" in error
    for way in (
        "MEMSTORE_AUTH_ENABLED=true",
        "MEMSTORE_AUTH_TOKENS_FILE=",
        "memstore hash-token",
        "MEMSTORE_ALLOW_INSECURE_BIND=true",
    ):
        assert way in error, (way, error)


def _tokens_file(path: Path, token: str) -> Path:
    digest = subprocess.run(
        [str(Path(sys.executable).with_name("memstore")), "hash-token"],
        input=token, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    entry = {"name": "admin", "sha256": digest, "namespaces": ["*"], "roles": ["read", "write"]}
    path.write_text(json.dumps({"tokens": [entry]}))
    return path


@pytest.mark.parametrize("way", ["tokens", "insecure-bind"])
def test_each_documented_way_starts_the_image(
    way: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each way the message and the README name, on top of the image's environment: the
    settings pass the bind check on the image's 0.0.0.0, and the image's command serves
    (on loopback here: test servers never listen beyond it)."""
    token = "readme-token-1"
    way_env = {
        "tokens": {
            "MEMSTORE_AUTH_ENABLED": "true",
            "MEMSTORE_AUTH_TOKENS_FILE": str(_tokens_file(tmp_path / "tokens.json", token)),
        },
        "insecure-bind": {"MEMSTORE_ALLOW_INSECURE_BIND": "true"},
    }[way]
    env = {**image_env(), **way_env}
    for key in [k for k in os.environ if k.startswith(("MEMSTORE_", "MEMORY_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    check_bind(Settings())  # raises on the image's 0.0.0.0 without one of the ways

    port = free_port()
    env.update(
        PATH="/usr/bin:/bin",
        MEMSTORE_HOST="127.0.0.1",
        MEMSTORE_PORT=str(port),
        MEMSTORE_DATA_PATH=str(tmp_path / "memstore.db"),  # the image's /data volume
    )
    proc = subprocess.Popen(image_command(), env=env, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/namespaces/agent/summary")
        if way == "tokens":
            with pytest.raises(urllib.error.HTTPError) as denied:
                urllib.request.urlopen(request, timeout=10)
            denied.value.close()
            assert denied.value.code == 401
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
