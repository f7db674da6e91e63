"""`softspike schema`: the JSON Schema of the spec language, with every installed plugin."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from softspike.core.errors import SoftspikeError
from softspike.models.spec import json_schema


def add_parser(sub: Any) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of network specs (for editors)")
    p.add_argument("--plan", action="store_true", help="the schema of pipeline plans instead (softspike plan -o)")
    p.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead of stdout")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.plan:
        from softspike.pipelines.planning.document import plan_json_schema

        schema = plan_json_schema()
    else:
        schema = json_schema()
    text = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as err:
            raise SoftspikeError(f"{args.output}: cannot write the schema: {err.strerror or err}") from None
    else:
        sys.stdout.write(text)
    return 0
