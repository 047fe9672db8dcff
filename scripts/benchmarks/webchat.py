"""The web chat (examples/web-chat) in the real browser, Debian's headless Chromium: the first render
of the chat list after sign-in (a fresh window: no storage, no cache), and send to render (Ann's Send
until the message is on Bea's page), p50/p95, timed inside the pages.

The measuring is examples/web-chat/bench/bench.mjs (playwright-core, the built app served on
localhost, the demo seeded by scripts/web_seed.py with the suite's project cleared first); this
module runs it and keeps its figures. It clears the suite's project: run it after the sections that
use the suite's data.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def measure(root: Path, sign_ins: int, messages: int) -> dict:
    """Run the node bench; its JSON."""
    app = root / "examples" / "web-chat"
    if not (app / "dist" / "index.html").exists():
        subprocess.run(["npm", "run", "--silent", "build"], cwd=app, check=True)
    env = {k: v for k, v in os.environ.items() if k != "NODE_OPTIONS"}  # the CLI's preload is not for this
    out = subprocess.run(["node", str(app / "bench" / "bench.mjs"), str(sign_ins), str(messages)], cwd=app, env=env,
                         check=True, capture_output=True, text=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])
