#!/bin/sh
# The installed library as a user meets it: `cmake --install BUILD --prefix SCRATCH/prefix`, then
#  - sparsebox.pc: found by pkg-config from the prefix alone, its prefix, libdir and includedir and every
#    -I and -L it gives pointing into the prefix;
#  - the files: the shared library (and its soname link), the static library, the umbrella header
#    sparsebox.h including every module header (op.h among them), sbx;
#  - sbx runs from the prefix (`bin/sbx --help`), with no LD_LIBRARY_PATH, and loads the prefix's library;
#  - a program the script writes (a graph through op.h, a CSR -> CSC conversion) is compiled with nothing
#    but `cc $(pkg-config --cflags --libs sparsebox)` and run;
#  - the installed example sources (any examples/ folder under the prefix): tour.c built the same way
#    and run on a small grid; the demo's sources compiled with zlib and
#    libpng's pkg-config flags when those are there. When this build's install rules install no
#    examples, that is said and not counted; when they do, the examples must be there.
# Exit status 77 (skipped) without cmake, cc or pkg-config, or for a sanitizer build (its library
# needs the sanitizer runtime loaded first: a plain program cannot link it).
# Usage: test_install.sh BUILD_DIR SCRATCH_DIR
BUILD=${1:?usage: test_install.sh BUILD_DIR SCRATCH_DIR}
T=${2:?usage: test_install.sh BUILD_DIR SCRATCH_DIR}
CC=${CC:-cc}

for tool in cmake "$CC" pkg-config; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "skipped: $tool not found"
    exit 77
  fi
done
if grep -q '^SBX_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  echo "skipped: a sanitizer build (SBX_SANITIZE=ON): its library cannot be linked by a plain program"
  exit 77
fi

rm -rf "$T" && mkdir -p "$T" || exit 1
P=$T/prefix
passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
note() { echo "note: $*"; }
finish() {
  echo "install: $passed passed, $failed failed"
  [ "$failed" = 0 ]
  exit $?
}

# check WHAT -- command...: the command exits 0 (its output is shown when it does not).
check() {
  what=$1
  shift 2
  if "$@" >"$T/out" 2>&1; then ok; else bad "$what: $* exited $?: $(cat "$T/out")"; fi
}

# inside PATH: PATH exists and, with every link and .. resolved, lies in the prefix.
inside() {
  [ -e "$1" ] || return 1
  if [ -d "$1" ]; then real=$(cd "$1" && pwd -P); else real=$(cd "$(dirname "$1")" && pwd -P)/$(basename "$1"); fi
  case $real/ in "$PREFIX_REAL"/*) return 0 ;; *) return 1 ;; esac
}

# --- the install itself ---------------------------------------------------------------------------
if ! cmake --install "$BUILD" --prefix "$P" >"$T/install.log" 2>&1; then
  bad "cmake --install $BUILD --prefix $P: $(cat "$T/install.log")"
  finish
fi
ok
PREFIX_REAL=$(cd "$P" && pwd -P)

# --- sparsebox.pc ---------------------------------------------------------------------------------
PC=$(find "$P" -path '*/pkgconfig/sparsebox.pc' | head -n 1)
if [ -z "$PC" ]; then
  bad "no sparsebox.pc under $P (installed: $(cd "$P" && find . -type f | sort | tr '\n' ' '))"
  finish
fi
ok
PCDIR=$(dirname "$PC")
# The prefix's folder only: PKG_CONFIG_LIBDIR too, so that a sparsebox.pc installed elsewhere on the
# machine cannot answer instead.
pc() { PKG_CONFIG_PATH=$PCDIR PKG_CONFIG_LIBDIR=$PCDIR pkg-config "$@"; }
check "pkg-config finds sparsebox" -- pc --exists --print-errors sparsebox
for var in prefix libdir includedir; do
  value=$(pc --variable="$var" sparsebox)
  if inside "$value"; then ok; else bad "sparsebox.pc: $var=$value is not a folder inside $P"; fi
done
CFLAGS_PC=$(pc --cflags sparsebox)
LIBS_PC=$(pc --libs sparsebox)
for flag in $CFLAGS_PC $LIBS_PC; do
  case $flag in
  -I* | -L*)
    if inside "${flag#-?}"; then ok; else bad "pkg-config gives $flag, not a folder inside $P"; fi
    ;;
  esac
done
case " $LIBS_PC " in *" -lsparsebox "*) ok ;; *) bad "pkg-config --libs sparsebox lacks -lsparsebox: $LIBS_PC" ;; esac
LIBDIR=$(pc --variable=libdir sparsebox)
INCLUDEDIR=$(pc --variable=includedir sparsebox)

# --- the files ------------------------------------------------------------------------------------
for f in "$LIBDIR/libsparsebox.so" "$LIBDIR/libsparsebox.a" "$INCLUDEDIR/sparsebox.h" "$P/bin/sbx"; do
  if [ -e "$f" ]; then ok; else bad "$f is not installed"; fi
done
if ls "$LIBDIR"/libsparsebox.so.[0-9]* >/dev/null 2>&1; then ok; else bad "no soname link libsparsebox.so.N in $LIBDIR"; fi
for h in core sparse io conv random op; do
  if [ -f "$INCLUDEDIR/sparsebox/$h.h" ]; then ok; else bad "$INCLUDEDIR/sparsebox/$h.h is not installed"; fi
  if grep -q "^#include [\"<]sparsebox/$h.h[\">]" "$INCLUDEDIR/sparsebox.h" 2>/dev/null; then ok; else
    bad "$INCLUDEDIR/sparsebox.h does not include sparsebox/$h.h"
  fi
done

# --- sbx from the prefix --------------------------------------------------------------------------
if env -u LD_LIBRARY_PATH "$P/bin/sbx" --help >"$T/out" 2>&1 && grep -q "usage: sbx" "$T/out"; then ok; else
  bad "$P/bin/sbx --help (no LD_LIBRARY_PATH) failed: $(cat "$T/out")"
fi
if command -v ldd >/dev/null 2>&1; then
  lib=$(env -u LD_LIBRARY_PATH ldd "$P/bin/sbx" 2>/dev/null | awk '/libsparsebox/ {print $3}')
  if [ -n "$lib" ] && [ "$lib" != "not" ] && inside "$lib"; then ok; else
    bad "$P/bin/sbx loads libsparsebox from '${lib:-nowhere}', not from $LIBDIR: $(ldd "$P/bin/sbx" 2>&1 | grep sparsebox)"
  fi
fi

# --- a program built with nothing but pkg-config's flags ------------------------------------------
cat >"$T/tiny.c" <<'EOF'
/* Through the umbrella header alone: a CSR -> CSC conversion, and a graph y = Relu(-2 x) compiled and
 * called (op.h). Prints "tiny: ok" and exits 0 when every value is right. */
#include <stdio.h>
#include <string.h>

#include <sparsebox.h>

static int fail(const char *what) {
    fprintf(stderr, "tiny: %s: %s\n", what, sbx_last_error());
    return 1;
}

int main(void) {
    sbx_sparse *a, *b;
    if (sbx_sparse_create(SBX_CSR, SBX_FLOAT64, 2, 3, 2, &a) != SBX_OK) return fail("sbx_sparse_create");
    const int64_t indptr[3] = {0, 1, 2}, indices[2] = {2, 0};
    const double values[2] = {5, 7};
    memcpy(a->indptr, indptr, sizeof indptr);
    memcpy(a->indices, indices, sizeof indices);
    memcpy(a->data, values, sizeof values);
    if (sbx_sparse_convert(a, SBX_CSC, &b) != SBX_OK) return fail("sbx_sparse_convert");
    int right = b->nnz == 2 && b->indptr[1] == 1 && b->indices[0] == 1 && ((double *)b->data)[0] == 7;
    sbx_sparse_free(a);
    sbx_sparse_free(b);

    sbx_graph *g;
    sbx_var *x, *h, *y;
    sbx_function *f;
    const int64_t shape[1] = {4};
    const sbx_type t = sbx_type_dense(SBX_FLOAT64, 1, shape);
    const sbx_scale_props minus_two = {-2};
    if (sbx_graph_create(&g) != SBX_OK || sbx_graph_input(g, "x", &t, &x) != SBX_OK ||
        sbx_apply(g, &sbx_op_scale, &minus_two, 1, &x, &h) != SBX_OK ||
        sbx_apply(g, &sbx_op_relu, NULL, 1, &h, &y) != SBX_OK ||
        sbx_function_compile(g, 1, &x, 1, &y, 0, NULL, 0, &f) != SBX_OK)
        return fail("building the graph");
    sbx_value in = {NULL, NULL}, out;
    if (sbx_array_create(SBX_FLOAT64, 1, shape, &in.dense) != SBX_OK) return fail("sbx_array_create");
    const double xs[4] = {-1.5, 0, 2, -0.25}, want[4] = {3, 0, 0, 0.5};
    memcpy(in.dense->data, xs, sizeof xs);
    if (sbx_function_call(f, &in, &out) != SBX_OK) return fail("sbx_function_call");
    for (int i = 0; i < 4; i++) right &= ((const double *)out.dense->data)[i] == want[i];
    sbx_value_clear(&in);
    sbx_function_free(f);
    sbx_graph_free(g);
    printf("tiny: %s\n", right ? "ok" : "WRONG VALUES");
    return right ? 0 : 1;
}
EOF
# shellcheck disable=SC2086 # pkg-config's flags are words
check "cc tiny.c \$(pkg-config --cflags --libs sparsebox)" -- "$CC" -std=c11 -o "$T/tiny" "$T/tiny.c" $CFLAGS_PC $LIBS_PC
# The program has no run path: the loader finds a library in a prefix of one's own by LD_LIBRARY_PATH.
if [ -x "$T/tiny" ]; then check "tiny runs" -- env LD_LIBRARY_PATH="$LIBDIR" "$T/tiny"; fi

# --- the installed example sources ----------------------------------------------------------------
TOUR=$(find "$P" -path '*/examples/tour.c' | head -n 1)
if [ -n "$TOUR" ]; then
  ok
  # shellcheck disable=SC2086
  check "cc tour.c \$(pkg-config --cflags --libs sparsebox)" -- \
    "$CC" -std=c11 -o "$T/tour" "$TOUR" $CFLAGS_PC $LIBS_PC
  mkdir -p "$T/tour-out"
  if [ -x "$T/tour" ]; then check "tour runs" -- env LD_LIBRARY_PATH="$LIBDIR" "$T/tour" 16 "$T/tour-out"; fi
  DEMO_DIR=$(find "$P" -type d -path '*/examples/demo' | head -n 1)
  if [ -n "$DEMO_DIR" ] && pkg-config --exists zlib libpng 2>/dev/null; then
    DEPS=$(pkg-config --cflags --libs zlib libpng)
    # shellcheck disable=SC2086
    check "cc examples/demo/*.c \$(pkg-config --cflags --libs sparsebox) + zlib, libpng" -- \
      "$CC" -std=c11 -o "$T/demo" "$DEMO_DIR"/*.c $CFLAGS_PC $LIBS_PC $DEPS -lm
  elif [ -n "$DEMO_DIR" ]; then
    note "the demo's sources are installed but zlib or libpng has no pkg-config file here: not compiled"
  fi
elif grep -q "examples" "$BUILD/cmake_install.cmake" 2>/dev/null; then
  bad "the install rules name examples, but no examples/tour.c was installed under $P"
else
  note "this build's install rules install no example sources (examples/): only the script's own program was built"
fi

finish
