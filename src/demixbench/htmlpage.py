"""The one shell of the standalone HTML pages the project writes (tables, listening page,
provenance): UTF-8, HTML5, inline style only, so that a page opens from disk or from the
Snakemake report without anything else."""

from __future__ import annotations

from html import escape


def page(title: str, css: str, body: str, head: str = "") -> str:
    """A complete page, newline-terminated.

    Args:
        title: the page's <title> (escaped here).
        css: the content of its one <style> element.
        body: the content of <body>, already HTML (callers escape their text).
        head: extra elements for <head> after the title (e.g. a viewport meta tag).
    """
    lines = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">']
    lines += [f"<title>{escape(title)}</title>", *([head] if head else []), "<style>", css.strip("\n"), "</style>"]
    lines += ["</head>", "<body>", body.strip("\n"), "</body>", "</html>", ""]
    return "\n".join(lines)
