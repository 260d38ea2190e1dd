"""Writes a greeting: the words of --config, the template, and included greetings."""

import argparse
import json
import os
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--config", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--include", action="append", default=[])
args = parser.parse_args()
config = json.loads(Path(args.config).read_text())
words = " ".join(config["words"])
template = Path(config["template"]).read_text().strip()
lines = [template.format(words=words.upper() if config["loud"] else words)]
lines += [Path(path).read_text().strip() for path in args.include]
lines.append("target=" + os.environ["GREETING_TARGET"])
Path(args.out).write_text("\n".join(lines) + "\n")
