"""A self-contained HTML page (template.html with style.css inlined, pictures as data URIs), and
the escaping every page uses: every string from a config or a folder name goes through `html.escape`."""

from __future__ import annotations

import base64
import html
import string
from importlib import resources
from pathlib import Path

escape = html.escape


def page(title: str, body: str) -> str:
    """The page: `title` (plain text, escaped here) over `body` (HTML, escaped by its maker)."""
    template = string.Template(resources.files(__package__).joinpath("template.html").read_text())
    style = resources.files(__package__).joinpath("style.css").read_text()
    return template.substitute(title=escape(title), style=style, body=body)


def img(path: Path, alt: str) -> str:
    """A PNG file as an inline <img>."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def figure(path: Path, title: str, caption: str) -> str:
    """A picture under a human title, with a one-line caption."""
    return f"<h2>{escape(title)}</h2><p class='caption'>{escape(caption)}</p>{img(path, title)}"
