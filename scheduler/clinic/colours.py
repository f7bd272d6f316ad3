"""The clinic's brand colour: how it is written, and whether the pages can use it legibly.

The stylesheet (``static/style.css``) uses the colour as ``--accent``: white text on it for
buttons, and it as the text colour of links, the clinic's name and outlined buttons on the
light surfaces of the pages. WCAG 2.1 AA asks 4.5:1 of normal-size text against what is behind
it, so a colour is taken only if it reaches that against white and against each of those
surfaces; the slots' and reports' borders (3:1 for non-text) then follow.
"""

from __future__ import annotations

import re

from flask_babel import format_decimal, gettext

# The look the stylesheet had before clinics chose a colour: its own --accent.
DEFAULT_BRAND_COLOUR = "#2f6f5e"
# White, the text colour on buttons (the stylesheet's --accent-ink).
BUTTON_TEXT = "#ffffff"
# The light surfaces links sit on, from static/style.css: the page (--bg), cards (--card),
# status messages (.flash), reports, alerts and warnings.
SURFACES = ("#fbfaf7", "#ffffff", "#e8f3ee", "#f6f3ee", "#fdf0f0", "#fff6e5")
# WCAG 2.1 AA for normal-size text.
AA_TEXT = 4.5

_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def normalise(text: str) -> str | None:
    """Return ``text`` as ``#rrggbb`` in lower case (the ``#`` may be left out), or ``None``
    if it is not six hex digits."""
    match = _HEX.fullmatch(text.strip())
    return f"#{match.group(1).lower()}" if match else None


def luminance(colour: str) -> float:
    """The relative luminance of a ``#rrggbb`` colour, as WCAG 2.1 defines it."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    red, green, blue = (
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels
    )
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: str, second: str) -> float:
    """The contrast ratio of two ``#rrggbb`` colours, from 1 (none) to 21 (black on white)."""
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _ratio(value: float) -> str:
    # Rounded down, so that 4.49 never reads as the 4.5 it fails to reach; "4,4:1" in German.
    return f"{format_decimal(int(value * 10) / 10, format='0.0')}:1"


def brand_colour_problem(text: str) -> str | None:
    """Say what is wrong with ``text`` as the brand colour, in the page's language, or return
    ``None`` when the pages can use it."""
    colour = normalise(text)
    if colour is None:
        return gettext(
            "%(value)s is not a colour we can use; write # and six hex digits, like %(example)s.",
            value=repr(text.strip()[:20]),
            example=DEFAULT_BRAND_COLOUR,
        )
    on_buttons = contrast(colour, BUTTON_TEXT)
    if on_buttons < AA_TEXT:
        return gettext(
            "White text on %(colour)s, as on the buttons, has a contrast of only %(ratio)s; "
            "it needs at least 4.5:1 to be easy to read. Pick a darker colour.",
            colour=colour,
            ratio=_ratio(on_buttons),
        )
    on_pages = min(contrast(colour, surface) for surface in SURFACES)
    if on_pages < AA_TEXT:
        return gettext(
            "Links in %(colour)s on the pages' light backgrounds have a contrast of only "
            "%(ratio)s; they need at least 4.5:1 to be easy to read. Pick a darker colour.",
            colour=colour,
            ratio=_ratio(on_pages),
        )
    return None
