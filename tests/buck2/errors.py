"""Errors of the Buck2 model, worded and chained the way Buck2 prints them."""

from __future__ import annotations

from collections.abc import Sequence


class Buck2Error(Exception):
    """An error Buck2 would report; ``str()`` is the full message, causes included."""

    def __init__(self, message: str, causes: Sequence[str] = ()) -> None:
        self.message = message
        self.causes = list(causes)
        super().__init__(render_chain(message, self.causes))


def render_chain(message: str, causes: Sequence[str]) -> str:
    """Buck2's CLI shape: the outermost context, then ``Caused by:`` and numbered causes."""
    if not causes:
        return message
    lines = [message, "", "Caused by:"]
    lines += [f"    {index}: {cause}" for index, cause in enumerate(causes)]
    return "\n".join(lines)


class LoadError(Buck2Error):
    """A file could not be loaded: bad label, missing file or symbol, load cycle, bad rule."""


class AttributeCoercionError(Buck2Error):
    """A target's attributes do not fit its rule: unknown, missing or wrongly typed."""


class AnalysisError(Buck2Error):
    """A rule implementation failed, or its dependencies or providers are wrong."""


class ActionError(Buck2Error):
    """An action failed when the build executed it, or did not produce its outputs."""
