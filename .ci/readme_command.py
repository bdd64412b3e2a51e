"""Print a command of the README's Quickstart: ``main`` (the first) or ``test`` (the second)."""

import re
import sys
from pathlib import Path

text = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
block = text.split("<!-- quickstart -->", 1)[1].split("<!-- /quickstart -->", 1)[0]
commands = re.findall(r"```bash\n(.*?)\n```", block, flags=re.S)
if len(commands) != 2:
    sys.exit(f"the README's quickstart must hold exactly two commands, found {len(commands)}")
print(commands[{"main": 0, "test": 1}[sys.argv[1]]].strip())
