"""The no-op guard of :meth:`Kube.apply`: when does a live object already hold the
desired one."""

from __future__ import annotations

from memstore_operator.kube import contains


def test_subset_with_server_defaults_and_other_fields() -> None:
    live = {
        "metadata": {"name": "a", "resourceVersion": "7", "labels": {"x": "1", "other": "2"}},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "ports": [{"port": 80, "protocol": "TCP"}],
        },
    }
    assert contains(live, {"metadata": {"name": "a", "labels": {"x": "1"}}})
    assert contains(live, {"spec": {"ports": [{"port": 80}]}})
    assert not contains(live, {"spec": {"replicas": 2}})
    assert not contains(live, {"metadata": {"labels": {"y": "1"}}})
    assert not contains(live, {"spec": {"ports": [{"port": 80}, {"port": 81}]}})
    assert not contains(live, {"spec": {"ports": [{"port": 81}]}})


def test_empty_collections_match_absent_fields() -> None:
    # The API server drops empty lists and maps; they must not force an apply each time.
    assert contains({"spec": {}}, {"spec": {"env": [], "nodeSelector": {}}})
    assert not contains({"spec": {}}, {"spec": {"env": [{"name": "A"}]}})
    assert not contains({"spec": {"x": "1"}}, {"spec": {"x": 1}})
