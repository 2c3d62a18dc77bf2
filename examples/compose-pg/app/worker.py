"""Counts the words of every note that has no count yet."""

from __future__ import annotations

import os
import time

from pg import SCHEMA, Database

if __name__ == "__main__":
    db = Database()
    db.query(SCHEMA)
    print("worker started", flush=True)
    while True:
        for note_id, body in db.query("SELECT id, body FROM notes WHERE words IS NULL"):
            db.query(f"UPDATE notes SET words = {len((body or '').split())} WHERE id = {note_id}")
            print(f"note {note_id} counted", flush=True)
        time.sleep(float(os.environ.get("POLL_SECONDS", "1")))
