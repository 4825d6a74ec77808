"""Hold a SQLite database file locked for a while: the chaos run's
"another process holds the registry" fault.

usage: holdlock.py FILE SECONDS
Takes an EXCLUSIVE transaction (readers and writers of a WAL database
wait or get SQLITE_BUSY), keeps it SECONDS, rolls back. Prints "locked"
once it holds the lock; exits 1 if it could not get it within 10 s.
"""
import sqlite3
import sys
import time

path, seconds = sys.argv[1], float(sys.argv[2])
db = sqlite3.connect(path, timeout=10, isolation_level=None)
try:
    db.execute("BEGIN EXCLUSIVE")
except sqlite3.OperationalError as e:
    print("could not lock: %s" % e, flush=True)
    sys.exit(1)
print("locked", flush=True)
time.sleep(seconds)
db.execute("ROLLBACK")
db.close()
