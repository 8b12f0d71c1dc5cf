"""MkDocs hook: the Home page is the repository's README.md, included at build time.

``docs/index.md`` holds the marker ``<!-- README -->``; it is replaced by README.md with its
first heading dropped (the page has its own), links into ``docs/`` made relative to the docs
folder (``docs/plugins.md`` -> ``plugins.md``, ``docs/images/x.png`` -> ``images/x.png``) and any
other relative link (a file outside the docs, which the site does not contain) turned into plain
``code`` text, so that the strict build never fails on a link the README may gain later.
"""

from __future__ import annotations

import re
from pathlib import Path

MARKER = "<!-- README -->"
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def readme_for_docs(text: str) -> str:
    text = re.sub(r"\A# [^\n]*\n", "", text)

    def relink(match: re.Match[str]) -> str:
        bang, label, target = match.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target):  # http:, mailto:, an anchor
            return match.group(0)
        if target.startswith("docs/"):
            return f"{bang}[{label}]({target[len('docs/'):]})"
        return f"{label} (`{target}`)" if label else f"`{target}`"

    return LINK.sub(relink, text)


def on_page_markdown(markdown: str, page, config, files) -> str:  # type: ignore[no-untyped-def]
    if MARKER not in markdown:
        return markdown
    readme = Path(config["config_file_path"]).parent / "README.md"
    return markdown.replace(MARKER, readme_for_docs(readme.read_text(encoding="utf-8")))
