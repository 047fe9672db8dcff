"""The TypeScript client (client-ts/): from `sendMessage` in one client to `onMessagesReceived` in
another, beside the engine's own send-to-inbox series measured in the same run, message by message
(the callable called directly, a bare Firestore listener on the inbox; both on the official JS SDK);
and the core's size, minified and gzipped, without firebase.

The measuring is client-ts/bench/latency.mjs (node, the package as built in client-ts/dist), on the
bench's emulator suite; this module runs it and keeps its figures.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

TARGET_RATIO_P95 = 1.2
TARGET_CORE_GZIP_BYTES = 15 * 1024


def measure(root: Path, messages: int) -> dict:
    """Run the node bench; its JSON, with the targets' verdicts added."""
    client = root / "client-ts"
    if not (client / "dist" / "index.js").exists():
        subprocess.run([str(client / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.build.json"], cwd=client,
                       check=True)
    env = {k: v for k, v in os.environ.items() if k != "NODE_OPTIONS"}  # the CLI's preload is not for this
    out = subprocess.run(["node", str(client / "bench" / "latency.mjs"), str(messages)], cwd=client, env=env,
                         check=True, capture_output=True, text=True, timeout=1800)
    results = json.loads(out.stdout.strip().splitlines()[-1])
    results["targets"] = {"ratio_p95": TARGET_RATIO_P95, "core_gzipped_bytes": TARGET_CORE_GZIP_BYTES}
    return results
