"""What one typed update costs the server's CRDT as a single client's run of typing grows: pycrdt (yrs) against
Yjs (Node), applying the same kind of update (a marker appended to one Y.Text by one client, as the load
generator's writers type). Not a server benchmark: it isolates the CRDT library under every Plait room.

    python bench/append_cost.py                 # 12,000 markers, cost per update for each 2,000
    python bench/append_cost.py --markers 30000

yrs merges a client's consecutive insertions into one string block and, integrating the next one, walks that
block's text (UTF-16 lengths and a split): the cost grows with the run. Yjs keeps it constant.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

from pycrdt import Doc, Text

HERE = Path(__file__).resolve().parent

NODE = """
import * as Y from '%s'
const n = %d, step = %d
const c = new Y.Doc(); const t = c.getText('d'); const ups = []
c.on('update', u => ups.push(u))
for (let i = 0; i < n; i++) t.insert(t.length, `~B1.${i}.${1700000000000000 + i};`)
const s = new Y.Doc()
for (let k = 0; k < ups.length; k += step) {
  const t0 = process.hrtime.bigint()
  for (const u of ups.slice(k, k + step)) Y.applyUpdate(s, u)
  console.log(Number(process.hrtime.bigint() - t0) / ups.slice(k, k + step).length / 1000)
}
"""


def pycrdt_costs(markers: int, step: int) -> list[float]:
    """Microseconds per applied update, for each ``step`` updates."""
    client: Doc = Doc()
    text = client.get("d", type=Text)
    updates: list[bytes] = []
    for i in range(markers):
        before = client.get_state()
        text.insert(len(text), f"~B1.{i}.{1700000000000000 + i};")
        updates.append(client.get_update(before))
    server: Doc = Doc()
    server.get("d", type=Text)
    costs = []
    for k in range(0, len(updates), step):
        chunk = updates[k : k + step]
        started = time.perf_counter()
        for u in chunk:
            server.apply_update(u)
        costs.append((time.perf_counter() - started) / len(chunk) * 1e6)
    return costs


def yjs_costs(markers: int, step: int) -> list[float] | None:
    yjs = HERE / "node_modules" / "yjs" / "dist" / "yjs.mjs"
    node = shutil.which("node")
    if node is None or not yjs.exists():
        return None  # `npm ci --prefix bench` installs it (bench/run.py does)
    out = subprocess.run(
        [node, "--input-type=module", "-e", NODE % (yjs.as_uri(), markers, step)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [float(x) for x in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markers", type=int, default=12000)
    parser.add_argument("--step", type=int, default=2000)
    args = parser.parse_args()
    py = pycrdt_costs(args.markers, args.step)
    js = yjs_costs(args.markers, args.step) or [float("nan")] * len(py)
    print(f"{'markers applied':>16} {'text KB':>8} {'pycrdt us/update':>17} {'Yjs us/update':>14}")
    for i, (a, b) in enumerate(zip(py, js, strict=True)):
        first = i * args.step
        kb = (first + args.step) * 24 / 1024  # a marker is about 24 characters
        print(f"{first:>7}-{first + args.step:<8} {kb:>8.0f} {a:>17.1f} {b:>14.1f}")


if __name__ == "__main__":
    main()
