"""The Python rows of the bad-input table (python.tsv): each row's code must raise exactly its exception
type with its fragment in the message.

    usage: run_python.py TABLE.tsv python|torch SCRATCH_DIR

Row: PART <TAB> EXCEPTION <TAB> MESSAGE FRAGMENT <TAB> CODE. PART is python or torch: a run takes the rows
of its part (torch rows need torch; without it, or without numpy and scipy, the run exits 77, skipped).
CODE is executed (statements separated by ';') with np, ss (scipy.sparse), sparsebox, sp, sp2, op,
convmtx, torch (torch rows) and T (a fresh scratch folder for the row) at hand."""
import os
import shutil
import sys

table, part, scratch = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    import numpy as np
    import scipy.sparse as ss
except ImportError as e:
    print("bad_input_%s: skipped: %s" % (part, e))
    sys.exit(77)
if part == "torch":
    try:
        import torch
    except ImportError as e:
        print("bad_input_torch: skipped: %s" % e)
        sys.exit(77)
import sparsebox
from sparsebox import convmtx, op, sp, sp2

names = {"np": np, "ss": ss, "sparsebox": sparsebox, "sp": sp, "sp2": sp2, "op": op, "convmtx": convmtx}
if part == "torch":
    import sparsebox.torch
    names["torch"] = torch

shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
passed = failed = 0
with open(table) as f:
    for lineno, line in enumerate(f, 1):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 4 or fields[0] not in ("python", "torch") or not fields[2]:
            print("FAIL line %d: a row needs PART, EXCEPTION, a message fragment and CODE" % lineno)
            failed += 1
            continue
        row_part, exc, fragment, code = fields
        if row_part != part:
            continue
        row_dir = os.path.join(scratch, "row-%d" % lineno)
        os.makedirs(row_dir)
        env = dict(names, T=row_dir)
        why = None
        try:
            exec(code, env)
            why = "no exception"
        except Exception as e:  # the row says which one
            msg = str(e)
            if os.environ.get("BAD_INPUT_VERBOSE"):
                print("line %d: %s: %s" % (lineno, type(e).__name__, msg), file=sys.stderr)
            if type(e).__name__ != exc:
                why = "%s (%s), expected %s" % (type(e).__name__, msg, exc)
            elif fragment not in msg:
                why = "message %r lacks %r" % (msg, fragment)
        if why:
            print("FAIL line %d: %s: %s" % (lineno, code, why))
            failed += 1
        else:
            passed += 1
print("bad_input_%s: %d of %d rows passed" % (part, passed, passed + failed))
sys.exit(1 if failed else 0)
