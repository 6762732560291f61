"""Crash-test worker (run as a script by tests/test_crash.py; not a test module).

Usage: ``python crash_worker.py DATA_DIR EVENT SEED [MAX_SECONDS]``

Opens the replica in DATA_DIR with the default (full) durability and records
scans until it is killed: random participants (by id or QR token),
alternating check-in / check-out, and now and then a repeat of an
idempotency key already used (in this run or in an earlier, killed one).
It prints ``ready`` once the event is loaded, then one scan id per line,
written and flushed only after ``check_in``/``check_out`` has returned, i.e.
after the scan was acknowledged as durable. MAX_SECONDS is only a safety net
so that a worker orphaned by a crashed test run does not scan forever.
"""

from __future__ import annotations

import random
import sys
import time
import uuid

from headcount import Replica, ScanKind


def main(argv: list[str]) -> int:
    data_dir, event, seed = argv[0], argv[1], int(argv[2])
    max_seconds = float(argv[3]) if len(argv) > 3 else 60.0
    rng = random.Random(seed)
    out = sys.stdout
    with Replica.open(data_dir) as replica:  # Durability.FULL, the default
        ev = replica.event(event)
        people = [(p.id, p.fields.get("qr_token")) for p in ev.participants()]
        # Keys of scans already on disk (from earlier, killed runs) may be repeated too.
        used = [(s.id, s.participant, s.kind) for s in ev.doc.scans.values()]
        out.write("ready\n")
        out.flush()
        deadline = time.monotonic() + max_seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            if used and rng.random() < 0.15:
                key, pid, kind = rng.choice(used)
                scan = replica.check_in if kind is ScanKind.IN else replica.check_out
                result = scan(event, pid, scan_id=key)
                if result.recorded or result.scan.id != key:
                    raise SystemExit(f"repeat of {key} was recorded again: {result}")
            else:
                pid, qr = rng.choice(people)
                who = qr if qr and rng.random() < 0.5 else pid
                scan = replica.check_in if n % 2 else replica.check_out
                key = str(uuid.uuid4()) if rng.random() < 0.5 else None
                result = scan(
                    event,
                    who,
                    scan_id=key,
                    gate=rng.choice(["north", "south"]),
                    method=rng.choice(["qr", "ble", "manual"]),
                )
                if not result.recorded:
                    raise SystemExit(f"fresh scan was not recorded: {result}")
                used.append((result.scan.id, result.scan.participant, result.scan.kind))
            # Acknowledged: only now does the scan id leave the process.
            out.write(result.scan.id + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
