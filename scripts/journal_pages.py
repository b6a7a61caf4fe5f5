#!/usr/bin/env python3
"""Usage: scripts/journal_pages.py ROWS IN_FLIGHT CHANGES_A_COMMIT VARIANT...

Which B-trees the journal's commits write: the SQL of src/journal.rs (schema 4) run in SQLite
from Python, ROWS rows with IN_FLIGHT of them in flight, each commit moving CHANGES_A_COMMIT of
them one step (claim, call 1 done with a target, uploaded with a body). The WAL is read back
(autocheckpoint off) and each frame's page mapped to its B-tree with dbstat; bytes are 4 KiB
blocks, the checkpoint's once per 16,000 frames. VARIANT: base (schema 4), noclaimidx (no
rows_claimed), pathidx (one unique index on destination, path, identity instead of the identity
and uploaded-file indexes), side (targets and bodies in tables of their own), tside (targets
alone in a table of their own, deleted once uploaded: schema 5 is pathidx,tside,p1k), bside
(bodies appended to a table of their own), p1k / p4k (page size); join them with commas. A model, not the program: compare its totals with
scripts/journal-io.sh before trusting its split.
"""
import collections, json, os, random, shutil, sqlite3, struct, sys, tempfile

ROWS_COLUMNS = """
    id INTEGER PRIMARY KEY, destination INTEGER NOT NULL, identity TEXT NOT NULL, file TEXT NOT NULL,
    line INTEGER NOT NULL, state TEXT NOT NULL, conversation_id TEXT, target TEXT, target_expires_at TEXT,
    bytes INTEGER, sha256 TEXT, error TEXT, updated_at TEXT NOT NULL, claimed_by INTEGER, run INTEGER,
    path TEXT, size INTEGER, body TEXT"""

def setup(db, variant):
    PS = 1024 if 'p1k' in variant else 512 if 'p512' in variant else 4096 if 'p4k' in variant else 2048
    db.executescript(f"""
    PRAGMA page_size={PS}; PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA wal_autocheckpoint=0;
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE destinations(id INTEGER PRIMARY KEY, label TEXT);
    INSERT INTO destinations VALUES (1, 'x');
    CREATE TABLE rows ({ROWS_COLUMNS});
    CREATE TABLE conversations (destination INTEGER NOT NULL, conversation_id TEXT NOT NULL, identity TEXT NOT NULL,
        created_at TEXT NOT NULL, PRIMARY KEY (destination, conversation_id)) WITHOUT ROWID;
    CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, lock TEXT);
    INSERT INTO runs (lock) VALUES ('l');
    """)
    if 'pathidx' in variant:
        db.execute("CREATE UNIQUE INDEX rows_key ON rows (destination, path, identity)")
    else:
        db.execute("CREATE UNIQUE INDEX rows_identity ON rows (destination, identity)")
        db.execute("CREATE INDEX rows_uploaded_file ON rows (destination, path, size) WHERE state = 'uploaded'")
    if 'noclaimidx' not in variant and 'pathidx' not in variant:
        db.execute("CREATE INDEX rows_claimed ON rows (claimed_by) WHERE claimed_by IS NOT NULL")
    if 'bside' in variant:
        db.execute("CREATE TABLE bodies (id INTEGER PRIMARY KEY, body TEXT)")
    if 'tside' in variant:
        db.execute("CREATE TABLE targets (id INTEGER PRIMARY KEY, target TEXT)")
    elif 'side' in variant:
        db.execute("CREATE TABLE targets (id INTEGER PRIMARY KEY, row INTEGER, target TEXT)")
        db.execute("CREATE TABLE bodies (id INTEGER PRIMARY KEY, row INTEGER, body TEXT)")

TARGET = json.dumps({"style": "post", "url": "http://127.0.0.1:40123/s3/voyc-uploads", "fields": [
    ["key", "org/5/conv/xxxxxxxxxxxxxxxxxxxxxxxx/audio.wav"], ["x-amz-algorithm", "AWS4-HMAC-SHA256"],
    ["x-amz-credential", "SANDBOXKEY/20261203/us-east-1/s3/aws4_request"], ["x-amz-date", "20261203T174000Z"],
    ["policy", "e" * 420], ["x-amz-signature", "a" * 64]]})
BODY = '{"file_name":"0000123.wav","channel_id":"line-3","call_date":"2025-03-12","call_time":"11:23:41","agent":"Ann Lee","direction":"inbound","language":"en","speakers":3,"team":"north","crm_ticket":"T-100123","notes":""}'

def ident(n):
    import hashlib
    return hashlib.sha256(str(n).encode()).hexdigest()

def op(db, variant, stage, n, at):
    i = ident(n); f = f"calls/{n//1000:04d}/{n:07d}.wav"
    pathidx = 'pathidx' in variant
    def rid():
        if pathidx:
            return db.execute("SELECT id FROM rows WHERE destination=1 AND path=? AND identity=?", (f, i)).fetchone()[0]
        return db.execute("SELECT id FROM rows WHERE destination=1 AND identity=?", (i,)).fetchone()[0]
    if stage == 0:
        if pathidx:
            db.execute("""INSERT INTO rows (destination, identity, file, line, state, updated_at, claimed_by, run, path)
              VALUES (1, ?, ?, ?, 'call1_started', ?, 1, 1, ?) ON CONFLICT (destination, path, identity) DO UPDATE SET claimed_by = excluded.claimed_by""",
              (i, f, n, at, f))
        else:
            db.execute("""INSERT INTO rows (destination, identity, file, line, state, updated_at, claimed_by, run)
              VALUES (1, ?, ?, ?, 'call1_started', ?, 1, 1) ON CONFLICT (destination, identity) DO UPDATE SET claimed_by = excluded.claimed_by""",
              (i, f, n, at))
    elif stage == 1:
        r = rid()
        db.execute("""INSERT OR REPLACE INTO conversations SELECT destination, conversation_id, identity, ? FROM rows
          WHERE id=? AND conversation_id IS NOT NULL AND conversation_id IS NOT ?""", (at, r, f"c-{n}"))
        if 'tside' in variant:
            t = db.execute("INSERT INTO targets (target) VALUES (?)", (TARGET,)).lastrowid
            db.execute("UPDATE rows SET state='call1_done', conversation_id=?, target=?, target_expires_at=?, updated_at=? WHERE id=?",
                       (f"c-{n}", t, "2026-12-03T18:40:00Z", at, r))
        elif 'side' in variant:
            db.execute("UPDATE rows SET state='call1_done', conversation_id=?, target_expires_at=?, updated_at=? WHERE id=?",
                       (f"c-{n}", "2026-12-03T18:40:00Z", at, r))
            db.execute("INSERT INTO targets (row, target) VALUES (?, ?)", (r, TARGET))
        else:
            db.execute("UPDATE rows SET state='call1_done', conversation_id=?, target=?, target_expires_at=?, updated_at=? WHERE id=?",
                       (f"c-{n}", TARGET, "2026-12-03T18:40:00Z", at, r))
    else:
        r = rid()
        if 'tside' in variant:
            db.execute("DELETE FROM targets WHERE id = (SELECT target FROM rows WHERE id = ?)", (r,))
        if 'side' in variant and 'tside' not in variant:
            db.execute("""UPDATE rows SET state='uploaded', target_expires_at=NULL, bytes=1068, sha256=?, updated_at=?,
               claimed_by=NULL, path=?, size=1068 WHERE id=?""", ("b" * 64, at, f, r))
            db.execute("INSERT INTO bodies (row, body) VALUES (?, ?)", (r, BODY))
        else:
            if 'bside' in variant:
                b = db.execute("INSERT INTO bodies (body) VALUES (?)", (BODY,)).lastrowid
                db.execute("""UPDATE rows SET state='uploaded', target=NULL, target_expires_at=NULL, bytes=1068, sha256=?, updated_at=?,
                   claimed_by=NULL, size=1068, body=? WHERE id=?""", ("b" * 64, at, b, r))
            elif pathidx:
                db.execute("""UPDATE rows SET state='uploaded', target=NULL, target_expires_at=NULL, bytes=1068, sha256=?, updated_at=?,
                   claimed_by=NULL, size=1068, body=? WHERE id=?""", ("b" * 64, at, BODY, r))
            else:
                db.execute("""UPDATE rows SET state='uploaded', target=NULL, target_expires_at=NULL, bytes=1068, sha256=?, updated_at=?,
                   claimed_by=NULL, path=?, size=1068, body=? WHERE id=?""", ("b" * 64, at, f, BODY, r))

def run(variant, rows, W, K, ckpt=16000, seed=1):
    d = tempfile.mkdtemp(dir='/tmp')
    path = os.path.join(d, 'j')
    db = sqlite3.connect(path, isolation_level=None)
    setup(db, variant)
    rng = random.Random(seed)
    nxt = 0
    active = []  # [n, stage]
    while len(active) < W and nxt < rows:
        active.append([nxt, 0]); nxt += 1
    commits = 0
    done = 0
    while active:
        k = min(K, len(active))
        chosen = rng.sample(range(len(active)), k)
        db.execute("BEGIN IMMEDIATE")
        at = "2026-12-03T17:40:00.000Z"
        for c in chosen:
            n, s = active[c]
            op(db, variant, s, n, at)
            active[c][1] += 1
        db.execute("COMMIT")
        commits += 1
        fin = [a for a in active if a[1] == 3]
        active = [a for a in active if a[1] < 3]
        for _ in fin:
            done += 1
            if nxt < rows:
                active.append([nxt, 0]); nxt += 1
    # parse the WAL
    names = dict(db.execute("SELECT pageno, name FROM dbstat"))
    wal = open(path + '-wal', 'rb').read()
    ps = db.execute('PRAGMA page_size').fetchone()[0]; fsz = 24 + ps
    frames = []
    off = 32
    while off + fsz <= len(wal):
        pg, commit = struct.unpack('>II', wal[off:off+8])
        frames.append((pg, commit)); off += fsz
    per = collections.Counter(names.get(pg, 'new/free') for pg, _ in frames)
    # checkpoint: distinct pages per window of ckpt frames
    ck_pages = 0; ck_blocks = 0; seen = set(); cnt = 0
    for pg, commit in frames:
        seen.add(pg); cnt += 1
        if commit and cnt >= ckpt:
            ck_pages += len(seen); ck_blocks += len({(p - 1) * ps // 4096 for p in seen}); seen = set(); cnt = 0
    ck_pages += len(seen); ck_blocks += len({(p - 1) * ps // 4096 for p in seen})
    # wal bytes in 4k blocks: per commit, blocks spanned
    wal_blocks = 0; start = 32; pos = 32
    for pg, commit in frames:
        pos += fsz
        if commit:
            wal_blocks += (pos - 1) // 4096 - start // 4096 + 1
            start = pos
    size = os.path.getsize(path) + 0
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    print(f"{variant:20s} W={W} K={K}: {commits/rows:.2f} commits/row, {len(frames)/commits:.1f} frames/commit, "
          f"WAL {wal_blocks*4096/rows:.0f} B/row, ckpt {ck_blocks*4096/rows:.0f} B/row, total {(wal_blocks+ck_blocks)*4096/rows:.0f} B/row; db {pages*ps/rows:.0f} B/row")
    print("   frames/row by btree:", {k: round(v / rows, 2) for k, v in per.most_common()})
    db.close()
    shutil.rmtree(d)

if __name__ == '__main__':
    rows = int(sys.argv[1]); W = int(sys.argv[2]); K = int(sys.argv[3])
    for v in sys.argv[4:]:
        run(v, rows, W, K)
