"""The page's messages as tests read them: which placeholders a message has."""

from __future__ import annotations

import re

# A plural argument ("{days, plural, one {…} other {…}}") is the placeholder ``days``; the text
# of its forms ("two {يومين}") is not one.
_PLACEHOLDER = re.compile(
    r"(?<!zero )(?<!one )(?<!two )(?<!few )(?<!many )(?<!other )\{(\w+)(?:\}|, plural,)"
)


def placeholders(message: object) -> set[str]:
    """The names a message (a string, or a dict of plural forms) fills in."""
    texts = message.values() if isinstance(message, dict) else [message]
    return {name for text in texts for name in _PLACEHOLDER.findall(str(text))}
