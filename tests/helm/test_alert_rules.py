"""The chart's alerts, checked by Prometheus' own tool (promtool, built by mk/promtool.mk):
`promtool check rules` parses every expression, and `promtool test rules` evaluates them on
synthetic series in promtool's virtual time: the absent() rule fires when no memstore
target is scraped and stays quiet when one is, MemstoreDown fires on a failing scrape, and
the error-rate alert counts 5xx answers, never the callers' 4xx."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.conftest import Renderer, find

PROMTOOL_VERSION = "v0.316.0"
SELECTOR = 'job="memstore"'


def promtool_path() -> Path:
    explicit = os.environ.get("PROMTOOL_BIN")
    if explicit:
        return Path(explicit)
    tools = os.environ.get("TOOLS_DIR") or str(Path.home() / ".cache" / "memstore-tools")
    return Path(tools) / f"promtool-{PROMTOOL_VERSION}" / "promtool"


@pytest.fixture(scope="module")
def promtool() -> Path:
    path = promtool_path()
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools` (mk/promtool.mk builds promtool)")
    return path


@pytest.fixture(scope="module")
def alerts(render: Renderer) -> dict[str, dict[str, Any]]:
    (rule,) = find(render("prometheusRule.enabled=true"), "PrometheusRule")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


@pytest.fixture
def rules_file(render: Renderer, tmp_path: Path) -> Path:
    (rule,) = find(render("prometheusRule.enabled=true"), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    # A PrometheusRule's spec is a Prometheus rule file.
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rules(promtool: Path, rules_file: Path) -> None:
    out = run(promtool, "check", "rules", str(rules_file))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 5 rules found" in out.stdout, out.stdout


def test_promtool_check_can_fail(promtool: Path, tmp_path: Path) -> None:
    """The check above is real: a broken expression is reported."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up{ == 0"}]}]})
    )
    out = run(promtool, "check", "rules", str(bad))
    assert out.returncode != 0


def _expected(alert: dict[str, Any], labels: dict[str, str], **expand: str) -> dict[str, Any]:
    """An exp_alerts entry: the alert's own labels plus the series', and its annotations
    with the ``{{ $labels.x }}`` templates expanded."""
    annotations = {}
    for key, text in alert["annotations"].items():
        for name, value in expand.items():
            text = text.replace(f"{{{{ $labels.{name} }}}}", value)
        annotations[key] = text
    return {"exp_labels": {**alert["labels"], **labels}, "exp_annotations": annotations}


def test_promtool_unit_tests_of_the_alerts(
    promtool: Path, rules_file: Path, alerts: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    target = {"job": "memstore", "namespace": "ns", "pod": "store-0", "service": "store"}
    series = ",".join(f'{k}="{v}"' for k, v in target.items())
    http = "memstore_http_requests_total"
    latency = "memstore_http_request_duration_seconds_bucket"
    feed = "/v1/namespaces/{namespace}/changes"  # the change feed's route label
    tests = [
        {
            # Nothing scraped at all: only the absent() rule can say so.
            "interval": "1m",
            "input_series": [],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "MemstoreTargetMissing", "exp_alerts": []},
                {
                    "eval_time": "6m",
                    "alertname": "MemstoreTargetMissing",
                    "exp_alerts": [_expected(alerts["MemstoreTargetMissing"], {"job": "memstore"})],
                },
                {"eval_time": "6m", "alertname": "MemstoreDown", "exp_alerts": []},
            ],
        },
        {
            # A healthy target: neither fires.
            "interval": "1m",
            "input_series": [{"series": f"up{{{series}}}", "values": "1x10"}],
            "alert_rule_test": [
                {"eval_time": "8m", "alertname": "MemstoreTargetMissing", "exp_alerts": []},
                {"eval_time": "8m", "alertname": "MemstoreDown", "exp_alerts": []},
            ],
        },
        {
            # A target whose scrapes fail: MemstoreDown, not MemstoreTargetMissing.
            "interval": "1m",
            "input_series": [{"series": f"up{{{series}}}", "values": "0x10"}],
            "alert_rule_test": [
                {
                    "eval_time": "8m",
                    "alertname": "MemstoreDown",
                    "exp_alerts": [
                        _expected(alerts["MemstoreDown"], target, namespace="ns", pod="store-0")
                    ],
                },
                {"eval_time": "8m", "alertname": "MemstoreTargetMissing", "exp_alerts": []},
            ],
        },
        {
            # Many caller mistakes (4xx) and no server error: no error-rate alert.
            "interval": "1m",
            "input_series": [
                {"series": f'{http}{{{series},status_class="2xx"}}', "values": "0+60x15"},
                {"series": f'{http}{{{series},status_class="4xx"}}', "values": "0+600x15"},
                {"series": f'{http}{{{series},status_class="5xx"}}', "values": "0x15"},
            ],
            "alert_rule_test": [
                {"eval_time": "14m", "alertname": "MemstoreHighErrorRate", "exp_alerts": []}
            ],
        },
        {
            # Half the answers are 5xx: it fires, per service.
            "interval": "1m",
            "input_series": [
                {"series": f'{http}{{{series},status_class="2xx"}}', "values": "0+60x15"},
                {"series": f'{http}{{{series},status_class="5xx"}}', "values": "0+60x15"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": "14m",
                    "alertname": "MemstoreHighErrorRate",
                    "exp_alerts": [
                        _expected(
                            alerts["MemstoreHighErrorRate"],
                            {"namespace": "ns", "service": "store"},
                            namespace="ns",
                            service="store",
                        )
                    ],
                }
            ],
        },
        {
            # MCP listen streams and change-feed streams last minutes by design: they do
            # not make the service slow.
            "interval": "1m",
            "input_series": [
                {"series": f'{latency}{{{series},route="/v1/x",le="0.1"}}', "values": "0+600x15"},
                {"series": f'{latency}{{{series},route="/v1/x",le="600"}}', "values": "0+600x15"},
                {"series": f'{latency}{{{series},route="/v1/x",le="+Inf"}}', "values": "0+600x15"},
                {"series": f'{latency}{{{series},route="/mcp",le="0.1"}}', "values": "0x15"},
                {"series": f'{latency}{{{series},route="/mcp",le="600"}}', "values": "0+60x15"},
                {"series": f'{latency}{{{series},route="/mcp",le="+Inf"}}', "values": "0+60x15"},
                {"series": f'{latency}{{{series},route="{feed}",le="0.1"}}', "values": "0x15"},
                {"series": f'{latency}{{{series},route="{feed}",le="600"}}', "values": "0+60x15"},
                {"series": f'{latency}{{{series},route="{feed}",le="+Inf"}}', "values": "0+60x15"},
            ],
            "alert_rule_test": [
                {"eval_time": "14m", "alertname": "MemstoreHighLatency", "exp_alerts": []}
            ],
        },
    ]
    unit = tmp_path / "alerts_test.yaml"
    unit.write_text(
        yaml.safe_dump(
            {"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": tests}
        )
    )
    out = run(promtool, "test", "rules", str(unit))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout, out.stdout
