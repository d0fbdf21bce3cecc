#!/usr/bin/env python3
"""Render llama.cpp's chat-template corpus with Python jinja2 the way HF transformers'
`apply_chat_template` does, writing the reference fixture for huarizo-text's
`chat_templates` integration test.

Each scenario's inputs (messages, special tokens, the fixed clock, extra variables such
as `tools`) come from crates/huarizo-text/tests/fixtures/templates_input*.json, which the
Rust test reads too. Outputs: crates/huarizo-text/tests/fixtures/templates_expected*.json,
{filename: rendered text | {"error": message}}.

Usage: scripts/render_templates.py [TEMPLATES_DIR]
(default $HUARIZO_TESTDATA/llama.cpp-models/templates, HUARIZO_TESTDATA defaulting to
~/.cache/huarizo/testdata; fetch it with scripts/fetch-testdata.sh). Needs `pip install jinja2`.
"""

import datetime
import json
import os
import sys
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates" / "huarizo-text" / "tests" / "fixtures"


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers overrides jinja2's tojson: no HTML escaping, and json.dumps' options exposed.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class GenerationTag(jinja2.ext.Extension):
    """transformers' AssistantTracker without the tracking: `{% generation %}…{% endgeneration %}`
    renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env(now_unix):
    # As in transformers' _compile_jinja_template.
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    now = datetime.datetime.fromtimestamp(now_unix, datetime.timezone.utc)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: now.strftime(fmt)
    return env


# (input fixture, expected-output fixture): the standard conversation, and one with
# tools, a tool call and its result.
SCENARIOS = [
    ("templates_input.json", "templates_expected.json"),
    ("templates_input_tools.json", "templates_expected_tools.json"),
]


def render_all(tdir, inp):
    env = make_env(inp["now_unix"])
    out = {}
    for path in sorted(tdir.glob("*.jinja")):
        try:
            tmpl = env.from_string(path.read_text(encoding="utf-8"))
            # Variables not given (`tools`, `documents`, …) stay undefined; transformers
            # would pass tools=None, which the tool_use-only templates reject by iterating it.
            out[path.name] = tmpl.render(
                **inp.get("extra", {}),
                messages=inp["messages"],
                add_generation_prompt=inp["add_generation_prompt"],
                bos_token=inp["bos_token"],
                eos_token=inp["eos_token"],
            )
        except Exception as e:  # noqa: BLE001 - any failure is recorded as the expected outcome
            out[path.name] = {"error": f"{type(e).__name__}: {e}"}
    return out


def main():
    data = Path(os.environ.get("HUARIZO_TESTDATA", Path.home() / ".cache" / "huarizo" / "testdata"))
    tdir = Path(sys.argv[1]) if len(sys.argv) > 1 else data / "llama.cpp-models" / "templates"
    if not tdir.is_dir():
        sys.exit(f"render_templates: {tdir} is missing; run scripts/fetch-testdata.sh")
    for input_name, expected_name in SCENARIOS:
        inp = json.loads((FIXTURES / input_name).read_text(encoding="utf-8"))
        out = render_all(tdir, inp)
        dest = FIXTURES / expected_name
        text = json.dumps(out, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
        dest.write_text(text, encoding="utf-8")
        n_err = sum(isinstance(v, dict) for v in out.values())
        print(f"render_templates: {len(out)} templates, {n_err} errors -> {dest.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
