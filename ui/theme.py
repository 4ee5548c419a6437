"""How the page looks: the theme, tuned for WCAG AA contrast in light and dark, and a little CSS.

Gradio's Soft theme draws help lines and labels in greys that fall below AA (4.5:1) on
its light backgrounds; the overrides below darken them in the light theme and lighten
them in the dark one, rather than hiding any text. The CSS keeps the first view compact
enough that the photo, the motion slider and Generate fit a 1366x768 laptop screen.
"""

from __future__ import annotations

import gradio as gr


def make() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue="indigo", neutral_hue="slate").set(
        body_text_color_subdued="*neutral_600",
        body_text_color_subdued_dark="*neutral_300",
        block_info_text_color="*neutral_600",
        block_info_text_color_dark="*neutral_300",
        block_label_text_color="*primary_700",
        # Soft draws labels on a *primary_600 badge in the dark theme: only white text reaches
        # AA there (#c7d2fe on #4f46e5 is 4.2:1, white is 6.3:1).
        block_label_text_color_dark="white",
        block_title_text_color="*primary_700",
        block_title_text_color_dark="white",
        input_placeholder_color="*neutral_500",
        input_placeholder_color_dark="*neutral_400",
        button_primary_background_fill="*primary_700",
        button_primary_background_fill_hover="*primary_800",
        button_primary_background_fill_dark="*primary_600",
        button_primary_background_fill_hover_dark="*primary_700",
        button_primary_text_color="white",
        button_cancel_background_fill="#b91c1c",
        button_cancel_background_fill_hover="#991b1b",
        button_cancel_text_color="white",
        link_text_color="*primary_700",
        link_text_color_dark="*primary_300",
        layout_gap="10px",
        block_padding="8px 10px",
    )


CSS = """
.gradio-container {max-width: 1400px !important}
#title h1 {margin: 0; font-size: 1.35rem; display: inline}
#title p {margin: 0; display: inline}
#status {min-height: 1.6em}
#generate {font-size: 1.15rem; min-height: 48px}
#preset-open {align-self: flex-end; max-height: 44px}
#length p {margin: 0}
#length {margin-top: -4px}
#blurb p {margin: 0}
/* The Advanced box's group headings are h2 (right under the page's h1, as heading order wants),
   drawn at the size of a small heading. */
.group-title h2 {margin: 6px 0 0 0; font-size: 16px; font-weight: 600; line-height: 1.3}
.used-table {width: 100%; border-collapse: collapse; font-size: 0.9rem}
.used-table caption {text-align: left; font-weight: 600; padding-bottom: 4px}
.used-table th, .used-table td {text-align: left; vertical-align: top; padding: 4px 6px;
  border-bottom: 1px solid var(--border-color-primary)}
.used-table th code {font-size: 0.8rem}
/* Focus always shows, whatever a component's own style: keyboard users must see where they are. */
.gradio-container :focus-visible {outline: 3px solid var(--color-accent) !important; outline-offset: 2px}
@media (max-width: 640px) {
  #title h1 {font-size: 1.25rem}
}
"""
