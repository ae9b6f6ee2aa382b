"""A bad name is answered with its rule in words, wherever it comes in (path, query,
body), and the words say exactly what the regex accepts."""

from __future__ import annotations

import string
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from memstore.core.errors import InvalidInputError
from memstore.core.validation import NAME_RULES, check_name

NS = "/v1/namespaces/agent"


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("PUT", f"{NS}/entities/user/a%20b", {"data": {}},
         "'a b' is not a valid entity_id: use 1 to 256 ASCII letters, digits and "
         "_ . : @ = + -, starting with a letter, digit or _ (no spaces, no other characters)"),
        ("GET", f"{NS}/entities/my%20type", None,
         "'my type' is not a valid entity_type: use 1 to 64 ASCII letters, digits and _ . -, "
         "starting with a letter or digit (no spaces, no other characters)"),
        ("GET", "/v1/namespaces/caf%C3%A9/tools", None,
         "'café' is not a valid namespace: use 1 to 64 ASCII letters, digits and _ . -, "
         "starting with a letter or digit (no spaces, no other characters)"),
        ("GET", f"{NS}/tool-usage?tool_name=web%20search", None,
         "'web search' is not a valid tool_name: use 1 to 128 ASCII letters, digits and "
         "_ . : / -, starting with a letter, digit or _ (no spaces, no other characters)"),
        ("POST", f"{NS}/tool-usage", {"tool_name": "web search"},
         "tool_name: not valid: use 1 to 128 ASCII letters, digits and _ . : / -, starting "
         "with a letter, digit or _ (no spaces, no other characters)"),
        ("POST", f"{NS}/tool-usage", {"tool_name": "t", "id": "use 1"},
         "id: not valid: use 1 to 256 ASCII letters, digits and _ . : @ = + -, starting "
         "with a letter, digit or _ (no spaces, no other characters)"),
        ("POST", f"{NS}/feedback", {"agent_name": "a", "feedback_type": "good/bad"},
         "feedback_type: not valid: use 1 to 64 ASCII letters, digits and _ . -, starting "
         "with a letter or digit (no spaces, no other characters)"),
    ],
)  # fmt: skip
async def test_the_answer_says_the_rule_in_words(
    http: TestClient[Any, Any], method: str, path: str, body: Any, message: str
) -> None:
    resp = await http.request(method, path, json=body)
    assert resp.status == 400
    answer = await resp.json()
    assert answer["code"] == "invalid_input"
    assert answer["message"] == message
    assert "^[" not in str(answer)


@pytest.mark.parametrize("kind", sorted(NAME_RULES))
def test_the_words_list_exactly_what_the_pattern_accepts(kind: str) -> None:
    rule = NAME_RULES[kind]
    words = rule.describe()
    listed = words.split("digits and ", 1)[1].split(",", 1)[0].split(" ")
    first = words.split("starting with ", 1)[1].split(" (", 1)[0]
    ascii_alnum = set(string.ascii_letters + string.digits)
    for char in map(chr, range(0x20, 0x250)):  # printable ASCII and some beyond
        after = char in ascii_alnum or char in listed
        assert (rule.pattern.fullmatch("a" + char) is not None) == after, (kind, char)
        at_first = char in ascii_alnum or (char in first.split(" ") and char in listed)
        assert (rule.pattern.fullmatch(char) is not None) == at_first, (kind, char)
    assert f"1 to {rule.max_length} " in words
    assert rule.pattern.fullmatch("a" * rule.max_length)
    assert not rule.pattern.fullmatch("a" * (rule.max_length + 1))
    with pytest.raises(InvalidInputError, match="is not a valid"):
        check_name(kind, "")
