"""Cold start: import time of functions/main.py next to importing the bare Firebase SDKs.

Each measurement is a fresh interpreter (as a new function instance is), timed
from inside it around the import alone (interpreter start-up is the same for
both and is left out). The two are alternated and repeated; medians reported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

SDKS = "import firebase_functions, firebase_functions.https_fn, firebase_functions.firestore_fn, " \
       "firebase_functions.scheduler_fn, firebase_admin, google.cloud.firestore"
MAIN = "import main"

_TIMER = """
import time, sys
started = time.perf_counter()
exec(sys.argv[1])
print(time.perf_counter() - started)
"""


def _once(functions_dir: Path, statement: str) -> float:
    env = {**os.environ, "GCLOUD_PROJECT": os.environ.get("GCLOUD_PROJECT", "demo-pack427")}
    out = subprocess.run([sys.executable, "-c", _TIMER, statement], cwd=functions_dir, env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(functions_dir: Path, repeats: int = 5) -> dict:
    """Median import seconds of main.py and of the bare SDKs, `repeats` fresh processes each (default 5)."""
    main, sdks = [], []
    for _ in range(repeats):
        sdks.append(_once(functions_dir, SDKS))
        main.append(_once(functions_dir, MAIN))
    return {
        "repeats": repeats,
        "sdk_import_s": statistics.median(sdks),
        "main_import_s": statistics.median(main),
        "engine_overhead_s": statistics.median(main) - statistics.median(sdks),
        "ratio_main_to_sdks": statistics.median(main) / statistics.median(sdks),
        "samples": {"sdks": sdks, "main": main},
    }


if __name__ == "__main__":
    print(json.dumps(measure(Path(__file__).resolve().parents[2] / "functions"), indent=2))
