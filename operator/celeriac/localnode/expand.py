"""Kubernetes `$(VAR)` expansion (development and tests only: used by the local node).

A port of k8s.io/kubernetes third_party/forked/golang/expansion: `$(NAME)` is
replaced when NAME is defined, `$$` is an escaped `$`, anything else (an
undefined reference, a lone `$`, an unterminated `$(`) is left verbatim.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

_OPERATOR = "$"
_OPENER = "("
_CLOSER = ")"


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    """Look NAME up in each context in turn; unknown names expand to `$(NAME)` again."""

    def mapping(name: str) -> str:
        for context in contexts:
            if name in context:
                return context[name]
        return f"{_OPERATOR}{_OPENER}{name}{_CLOSER}"

    return mapping


def _read_reference(rest: str) -> tuple[str, bool, int]:
    """(text, is_variable_name, characters consumed after the `$`)."""
    first = rest[0]
    if first == _OPERATOR:
        return _OPERATOR, False, 1
    if first == _OPENER:
        closer = rest.find(_CLOSER, 1)
        if closer >= 0:
            return rest[1:closer], True, closer + 1
        # Unterminated: keep `$(` and carry on scanning after the `(`.
        return _OPERATOR + _OPENER, False, 1
    return _OPERATOR + first, False, 1


def expand(text: str, mapping: Callable[[str], str]) -> str:
    """Expand every `$(NAME)` in text through mapping, as the kubelet does."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == _OPERATOR and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_reference(text[cursor + 1 :])
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def expand_all(items: list[str], env: Mapping[str, str]) -> list[str]:
    """Expand a command or args list against a container's final environment."""
    mapping = mapping_for(env)
    return [expand(item, mapping) for item in items]
