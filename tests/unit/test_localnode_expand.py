"""Kubernetes `$(VAR)` expansion, with the cases of the kubelet's own tests."""

from __future__ import annotations

import pytest

from celeriac.localnode.expand import expand, expand_all, mapping_for

VARS = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("$(VAR_A)", "A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)-$(VAR_B)-$(VAR_C)", "A-B-C"),
        ("$(VAR_A)$(VAR_B)", "AB"),
        ("$(VAR_EMPTY)", ""),
        ("$(VAR_REF)", "$(VAR_A)"),  # values are not expanded again
        ("$$(VAR_A)", "$(VAR_A)"),  # escaped
        ("$$$(VAR_A)", "$A"),
        ("$$$$(VAR_A)", "$$(VAR_A)"),
        ("$$", "$"),
        ("$$$$", "$$"),
        ("$(VAR_DNE)", "$(VAR_DNE)"),  # undefined: verbatim
        ("--opt=$(VAR_DNE)-$(VAR_A)", "--opt=$(VAR_DNE)-A"),
        ("$()", "$()"),
        ("$(VAR_A", "$(VAR_A"),  # unterminated
        ("$(", "$("),
        ("$(VAR_A)$(", "A$("),
        ("$VAR_A", "$VAR_A"),  # only the $( ) form is a reference
        ("${VAR_A}", "${VAR_A}"),
        ("$", "$"),
        ("foo$", "foo$"),
        ("$)", "$)"),
        ("$(VAR_$(VAR_A))", "$(VAR_$(VAR_A))"),
        ("", ""),
        ("plain text", "plain text"),
    ],
)
def test_expand_matches_kubelet(text: str, want: str) -> None:
    assert expand(text, mapping_for(VARS)) == want


def test_contexts_are_searched_in_order() -> None:
    mapping = mapping_for({"X": "first"}, {"X": "second", "Y": "y"})
    assert expand("$(X) $(Y) $(Z)", mapping) == "first y $(Z)"


def test_expand_all_for_command_and_args() -> None:
    assert expand_all(["sh", "-c", "echo $(VAR_A) $$HOME"], VARS) == ["sh", "-c", "echo A $HOME"]
