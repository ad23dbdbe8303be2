"""MkDocs hook: the pages (and parts of pages) that are generated from the code at build time.

A page asks for generated content with a marker line ``<!-- generate: NAME -->``; NAME is one of
:data:`GENERATORS`:

- ``cli``: the command-line reference, read from the typer app ``ropescope.cli.app.app`` (every
  command, its help text, usage, arguments and options with types and defaults, and the examples its
  ``--help`` prints). Nothing is copied by hand, so the page cannot drift from ``--help``.
- ``tutorial``: ``notebooks/tutorial.ipynb`` with its committed outputs (text, tables, figures);
  the tests execute the notebook top to bottom, so the outputs shown are ones it produces.
- ``troubleshooting``: the tested bad-input matrix of ``tests/cli/test_bad_input_matrix.py``, one
  row per test.
- ``figure-ids``: the ids ``ropescope figures --only`` takes, from the figure registry.
- ``readme``: the repository's README (the site's home page is the front door), its links into
  ``docs/`` and to the changelog, reproduction and notebook turned into links between pages.

An unknown marker fails the build. The hook also serves the repository's ``figures/*.png`` (the
paper figures ``ropescope figures`` wrote) to the pages under ``figures/``, and turns the Sphinx
roles of the docstrings (``:func:`x```) into links into the API reference where ``x`` is documented
there (plain code otherwise).
"""

from __future__ import annotations

import base64
import html
import importlib.util
import json
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- generate: ([a-z-]+) -->$", re.M)
ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):<code>~?([^<]+)</code>")


def _cell(text: str) -> str:
    """A table cell: pipes escaped, control characters shown as escapes (never raw)."""
    from ropescope.errors import printable

    return printable(text).replace("|", "\\|")


def _cli() -> str:
    import typer  # typer carries its own copy of click: use its classes, never the click package's

    from ropescope.cli.app import app
    from ropescope.cli.examples import EXAMPLES

    group = typer.main.get_command(app)
    root = group.context_class(group, info_name="ropescope")
    out = [
        "Every command with every argument and option, as `ropescope COMMAND --help` prints them "
        "(read from the command-line app when this site was built). Commands:",
        "",
    ]
    names = group.list_commands(root)
    out += [f"[`{name}`](#{name}) · " for name in names]
    out[-1] = out[-1].rstrip(" ·")
    out = out[:2] + ["".join(out[2:]), ""]
    for name in names:
        command = group.get_command(root, name)
        ctx = command.context_class(command, info_name=name, parent=root)
        pieces = " ".join(command.collect_usage_pieces(ctx))
        out += [f"## {name}", "", (command.help or "").strip(), "", "```text", f"ropescope {name} {pieces}", "```", ""]
        rows = []
        for param in command.get_params(ctx):
            if getattr(param, "hidden", False) or param.name == "help":
                continue
            if param.param_type_name == "argument":
                label = f"`{param.name.upper()}`"
                kind = "argument" + (" (required)" if param.required else "")
            else:
                label = " / ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
                kind = "flag" if param.is_flag or param.secondary_opts else _type_name(param)
                kind += " (required)" if param.required else ""
            default = param.default.value if hasattr(param.default, "value") else param.default
            shown = "" if default is None or callable(default) or default == () else f"`{default}`"
            rows.append(f"| {label} | {_cell(kind)} | {shown} | {_cell(' '.join((param.help or '').split()))} |")
        if rows:
            out += ["| argument / option | value | default | meaning |", "|---|---|---|---|", *rows, ""]
        examples = EXAMPLES.get(name, [])
        if examples:
            out += ["Examples:", "", "```bash"]
            for what, line in examples:
                out += [f"# {what}", line]
            out += ["```", ""]
    return "\n".join(out)


def _type_name(param) -> str:
    """The value an option takes, from the annotation of the command function's parameter."""
    import enum
    import pathlib
    import typing

    annotation = param.type_descriptor.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(str(member.value) for member in annotation)
    names = {int: "integer", float: "number", str: "text", bool: "flag"}
    if isinstance(annotation, type) and issubclass(annotation, pathlib.PurePath):
        return "path"
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _tutorial() -> str:
    notebook = json.loads((REPO / "notebooks" / "tutorial.ipynb").read_text(encoding="utf-8"))
    out: list[str] = [
        '!!! note "This page is the notebook"',
        "    `notebooks/tutorial.ipynb`, rendered with the outputs committed with it (the tests run it top "
        "to bottom). Run it yourself in any notebook front end (Jupyter, VS Code) with the Python of "
        "`.venv` as its kernel.",
        "",
    ]
    first = True
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            if first and source.startswith("# "):  # the page has its own title
                source = source.split("\n", 1)[1] if "\n" in source else ""
            out += [source, ""]
        elif cell["cell_type"] == "code":
            out += ["```python", source, "```", ""]
            for output in cell.get("outputs", []):
                out += _output(output)
        first = False
    return "\n".join(out)


def _output(output: dict) -> list[str]:
    if output["output_type"] == "stream":
        if output.get("name") == "stderr":
            return []  # warnings and progress bars, not results
        return [
            '<div class="nb-output" markdown>',
            "",
            "```text",
            "".join(output["text"]).rstrip(),
            "```",
            "",
            "</div>",
            "",
        ]
    data = output.get("data", {})
    if "image/png" in data:
        png = data["image/png"]
        png = "".join(png) if isinstance(png, list) else png
        base64.b64decode(png, validate=True)  # a damaged image fails the build here
        alt = html.escape("".join(data.get("text/plain", ["figure"])))
        return [f'<div class="nb-output"><img alt="{alt}" src="data:image/png;base64,{png.strip()}"></div>', ""]
    if "text/html" in data:
        return ['<div class="nb-output nb-html">', "".join(data["text/html"]), "</div>", ""]
    if "text/plain" in data:
        text = "".join(data["text/plain"]).rstrip()
        return ['<div class="nb-output" markdown>', "", "```text", text, "```", "", "</div>", ""]
    return []


def _troubleshooting() -> str:
    path = REPO / "tests" / "cli" / "test_bad_input_matrix.py"
    spec = importlib.util.spec_from_file_location("bad_input_matrix", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = ["| command | bad input | example | message contains |", "|---|---|---|---|"]
    for command, klass, argv, fragment in module.CLI_ROWS:
        example = " ".join(a.replace("{inputs}/", "").replace("{inputs}", "DIR") for a in argv)
        lines.append(f"| `{command}` | {_cell(klass)} | `ropescope {_cell(example)}` | `{_cell(fragment)}` |")
    for entry, klass, fragment in module.API_ROWS:
        lines.append(f"| `ropescope.{entry}` (Python) | {_cell(klass)} | | `{_cell(fragment)}` |")
    return "\n".join(lines) + "\n"


README_LINKS = {
    "](docs/": "](",
    "](CHANGELOG.md)": "](changelog.md)",
    "](REPRODUCTION.md)": "](reproduction.md)",
    "](notebooks/tutorial.ipynb)": "](tutorial.md)",
}


def _readme() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for old, new in README_LINKS.items():
        text = text.replace(old, new)
    return text


def _figure_ids() -> str:
    from ropescope.figures.registry import markdown_table

    return markdown_table()


GENERATORS = {
    "cli": _cli,
    "tutorial": _tutorial,
    "troubleshooting": _troubleshooting,
    "figure-ids": _figure_ids,
    "readme": _readme,
}


def on_config(config):
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return config


def on_files(files, config):
    """Serve the repository's figures/*.png under figures/ (they live beside the code, not in docs/)."""
    for png in sorted((REPO / "figures").glob("*.png")):
        files.append(File.generated(config, f"figures/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_uri}: unknown generated content '{name}' (known: {sorted(GENERATORS)})")
        return GENERATORS[name]()

    return MARKER.sub(fill, markdown)


def on_page_content(content: str, page, config, files) -> str:
    """Docstrings' Sphinx roles -> optional cross-references (a link where the target is documented)."""
    return ROLE.sub(
        lambda m: (
            f'<autoref identifier="{html.escape(m.group(1))}" optional>'
            f"<code>{m.group(1).split('.')[-1]}</code></autoref>"
        ),
        content,
    )
