"""drapto's Textual themes: a dark default, a light one, and a high-contrast one whose
colours are the 16 ANSI colours, readable on a 16- or 256-colour terminal (TERM=screen).

The app's stylesheet (`drapto.tcss` beside this file) uses only theme `$variables`,
so each theme restyles everything. Custom variables are declared in
`VARIABLE_DEFAULTS` (Textual wants them declared before a theme may set them).
"""

from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

STYLESHEET = Path(__file__).with_name("drapto.tcss")

VARIABLE_DEFAULTS = {
    "badge-sdr": "#9aa5b1",
    "badge-hdr": "#f5a524",
    "badge-dv": "#c471ed",
    "segment-running": "#3b82f6",
    "segment-done": "#22c55e",
}

DARK = Theme(
    name="drapto-dark",
    primary="#4f9cf9",
    secondary="#8b7cf6",
    accent="#f5a524",
    warning="#f5a524",
    error="#ef4444",
    success="#22c55e",
    foreground="#e6e9ef",
    background="#14171c",
    surface="#1c2027",
    panel="#262b34",
    dark=True,
    variables=dict(VARIABLE_DEFAULTS),
)

LIGHT = Theme(
    name="drapto-light",
    primary="#1d5fbf",
    secondary="#6445d6",
    accent="#b45309",
    warning="#b45309",
    error="#b91c1c",
    success="#15803d",
    foreground="#1b1f24",
    background="#f6f7f9",
    surface="#ffffff",
    panel="#e4e7ec",
    dark=False,
    variables={
        "badge-sdr": "#4b5563",
        "badge-hdr": "#b45309",
        "badge-dv": "#7e22ce",
        "segment-running": "#1d5fbf",
        "segment-done": "#15803d",
    },
)

HIGH_CONTRAST = Theme(
    name="drapto-contrast",
    primary="ansi_bright_cyan",
    secondary="ansi_bright_magenta",
    accent="ansi_bright_yellow",
    warning="ansi_bright_yellow",
    error="ansi_bright_red",
    success="ansi_bright_green",
    foreground="ansi_bright_white",
    background="ansi_black",
    surface="ansi_black",
    panel="ansi_blue",
    boost="ansi_black",
    dark=True,
    ansi=True,
    variables={
        "badge-sdr": "ansi_white",
        "badge-hdr": "ansi_bright_yellow",
        "badge-dv": "ansi_bright_magenta",
        "segment-running": "ansi_bright_cyan",
        "segment-done": "ansi_bright_green",
        # What Textual's own ANSI themes set: its widgets refer to them, and blending
        # (alpha) means nothing when the terminal picks the colours.
        "ansi-background": "ansi_black",
        "ansi-foreground": "ansi_bright_white",
        "text-muted": "ansi_white",
        "border": "ansi_bright_cyan",
        "border-blurred": "ansi_white",
        "block-cursor-foreground": "ansi_black",
        "block-cursor-background": "ansi_bright_cyan",
        "block-cursor-blurred-foreground": "ansi_bright_white",
        "block-cursor-blurred-background": "ansi_blue",
        "input-cursor-background": "ansi_bright_white",
        "input-cursor-foreground": "ansi_black",
        "input-cursor-text-style": "none",
        "input-selection-background": "ansi_bright_blue",
        "input-selection-foreground": "ansi_black",
        "screen-selection-background": "ansi_bright_blue",
        "screen-selection-foreground": "ansi_black",
        "scrollbar": "ansi_bright_cyan",
        "scrollbar-hover": "ansi_bright_white",
        "scrollbar-active": "ansi_bright_white",
        "scrollbar-background": "ansi_black",
        "scrollbar-background-hover": "ansi_black",
        "scrollbar-background-active": "ansi_black",
        "scrollbar-corner-color": "ansi_black",
        "footer-background": "ansi_blue",
        "footer-key-foreground": "ansi_bright_yellow",
        "footer-description-foreground": "ansi_bright_white",
    },
)

THEMES = (DARK, LIGHT, HIGH_CONTRAST)
DEFAULT_THEME = DARK.name
