#!/bin/sh
# The CLI rows of the bad-input table (cli.tsv): each row's command must exit with its code, print its
# fragment on stderr, print no sanitizer report, and leave no output behind: the row's path does not
# exist afterwards, and no temporary file (NAME.XXXXXX) is left in the row's folder.
# usage: run_cli.sh TABLE SBX DRIVER DEMO SCRATCH_DIR
# Row: EXIT <TAB> STDERR FRAGMENT <TAB> PATH THAT MUST NOT EXIST (- for none) <TAB> SETUP (- for none)
#      <TAB> COMMAND. SETUP and COMMAND are shell text run in a fresh folder $T, with $SBX, $DEMO and
#      `mk SPEC FILE` (a file from a spec of files.h, made by the C driver) at hand.
table=$1 SBX=$2 driver=$3 DEMO=$4 scratch=$5
rm -rf "$scratch" && mkdir -p "$scratch" || exit 1
mk() { "$driver" --make "$1" "$2"; }
# A small well-formed Fashion-MNIST layout in folder $1 (uncompressed: the demo's gzread reads both).
idx_set() {
    mkdir -p "$1" &&
        mk idx:2051,4,28,28:3136 "$1/train-images-idx3-ubyte.gz" && mk idx:2049,4:4 "$1/train-labels-idx1-ubyte.gz" &&
        mk idx:2051,2,28,28:1568 "$1/t10k-images-idx3-ubyte.gz" && mk idx:2049,2:2 "$1/t10k-labels-idx1-ubyte.gz"
}
passed=0 failed=0 lineno=0
tab=$(printf '\t')
while IFS= read -r row; do
    lineno=$((lineno + 1))
    case $row in '#'* | '') continue ;; esac
    IFS=$tab read -r want fragment absent setup command <<ROW
$row
ROW
    T=$scratch/row-$lineno
    mkdir -p "$T"
    why=
    if [ -z "$fragment" ] || [ -z "$command" ]; then
        why="the row needs an exit code, a fragment, a path, a setup and a command"
    elif [ "$setup" != - ] && ! (cd "$T" && eval "$setup") >"$T/setup.out" 2>&1; then
        why="its setup failed: $(cat "$T/setup.out")"
    else
        (cd "$T" && eval "$command") >"$T/stdout" 2>"$T/stderr"
        got=$?
        [ -n "$BAD_INPUT_VERBOSE" ] && echo "line $lineno: exit $got: $(cat "$T/stderr")" >&2
        absent_path=$(cd "$T" && eval "printf '%s' \"$absent\"")
        case $absent_path in /*) ;; *) absent_path=$T/$absent_path ;; esac
        if grep -q "Sanitizer\|runtime error" "$T/stderr"; then
            why="a sanitizer report: $(cat "$T/stderr")"
        elif [ "$got" != "$want" ]; then
            why="exit code $got, expected $want; stderr: $(cat "$T/stderr")"
        elif ! grep -qF -- "$fragment" "$T/stderr"; then
            why="stderr lacks '$fragment': $(cat "$T/stderr")"
        elif [ "$absent" != - ] && [ -e "$absent_path" ]; then
            why="$absent exists after the failure"
        elif [ -n "$(find "$T" -name '*.??????')" ]; then
            why="a temporary file is left behind: $(find "$T" -name '*.??????')"
        fi
    fi
    if [ -n "$why" ]; then
        echo "FAIL line $lineno: $command: $why"
        failed=$((failed + 1))
    else
        passed=$((passed + 1))
    fi
done <"$table"
echo "bad_input_cli: $passed of $((passed + failed)) rows passed"
[ "$failed" -eq 0 ]
