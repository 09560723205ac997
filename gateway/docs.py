"""What ``/docs/spec`` and ``/docs/dev`` serve, rendered once when the app is built."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import markdown
import yaml

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
line-height:1.5}} code,pre{{background:#f4f4f4}} pre{{padding:.5rem;overflow:auto}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.2rem .5rem}}
nav a{{margin-right:1rem}} .op{{border-top:1px solid #ddd;padding-top:.5rem}}
.method{{font-weight:bold;text-transform:uppercase}}
</style></head><body><nav>{nav}</nav>{body}</body></html>
"""


@dataclass(frozen=True, slots=True)
class DocsBundle:
    spec: dict[str, Any]
    spec_yaml: str
    spec_html: str
    manual: dict[str, str]


def build_docs(spec: dict[str, Any], docs_dir: Path = DOCS_DIR) -> DocsBundle:
    return DocsBundle(
        spec=spec,
        spec_yaml=yaml.safe_dump(spec, sort_keys=False, allow_unicode=True),
        spec_html=render_spec_html(spec),
        manual=render_manual(docs_dir),
    )


def render_manual(docs_dir: Path) -> dict[str, str]:
    """Every ``docs/*.md`` as ``<name>.html``; ``index.md`` is the manual's first page."""
    sources = sorted(docs_dir.glob("*.md")) if docs_dir.is_dir() else []
    nav = " ".join(
        f'<a href="{p.stem}.html">{html.escape(p.stem.replace("-", " "))}</a>' for p in sources
    )
    pages = {}
    for source in sources:
        body = markdown.markdown(source.read_text(encoding="utf-8"), extensions=["tables"])
        body = body.replace('.md"', '.html"')
        title = f"luna-streams: {source.stem}"
        pages[f"{source.stem}.html"] = _PAGE.format(title=title, nav=nav, body=body)
    return pages


def render_spec_html(spec: dict[str, Any]) -> str:
    """A readable, self-contained HTML rendering of the spec (no scripts, no CDN)."""
    parts = [
        f"<h1>{html.escape(spec['info']['title'])} {html.escape(spec['info']['version'])}</h1>",
        markdown.markdown(spec["info"].get("description", "")),
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append('<div class="op">')
            parts.append(
                f'<h3 id="{html.escape(op["operationId"])}"><span class="method">{method}</span>'
                f" <code>{html.escape(path)}</code></h3><p>{html.escape(op['summary'])}</p>"
            )
            params = op.get("parameters", [])
            if params:
                rows = "".join(
                    f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
                    f"<td>{'yes' if p.get('required') else ''}</td>"
                    f"<td><code>{html.escape(json.dumps(p.get('schema', {})))}</code></td>"
                    f"<td>{html.escape(p.get('description', ''))}</td></tr>"
                    for p in params
                )
                parts.append(
                    "<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th>"
                    f"<th>description</th></tr>{rows}</table>"
                )
            body = op.get("requestBody")
            if body:
                ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                parts.append(f'<p>Body: <a href="#schema-{ref}">{html.escape(ref)}</a></p>')
            rows = "".join(
                f"<tr><td>{code}</td><td>{html.escape(r['description'])}</td></tr>"
                for code, r in op["responses"].items()
            )
            parts.append(f"<table><tr><th>status</th><th>response</th></tr>{rows}</table></div>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec["components"]["schemas"].items():
        text = html.escape(json.dumps(schema, indent=2))
        parts.append(
            f'<h3 id="schema-{html.escape(name)}">{html.escape(name)}</h3><pre>{text}</pre>'
        )
    nav = '<a href="/docs/dev/index.html">developer manual</a>'
    return _PAGE.format(title="luna-streams API", nav=nav, body="\n".join(parts))
