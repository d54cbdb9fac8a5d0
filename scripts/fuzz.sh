#!/usr/bin/env bash
# make fuzz: builds the libFuzzer targets of Fuzz/ (coverage + AddressSanitizer) into
# .build-fuzz/ and runs each for FUZZ_SECONDS seconds (default 60), one after the other.
#
#   scripts/fuzz.sh [target...]     targets: json engineioPacket engineioPayload socketioPacket chatPayloads client terminalKeys
#
# Inputs: the seed corpus Fuzz/Corpus/<target> and the kept crashes Fuzz/Regressions/<target>
# (read only); what the fuzzer finds goes to .build-fuzz/corpus/<target>, crashes and
# timeouts to .build-fuzz/crashes/<target>/. Build output goes to .build-fuzz/logs/build.log
# (the gold linker's "Cannot export local symbol '__asan_...'" warnings are harmless), the
# fuzzer's to .build-fuzz/logs/<target>.log. Exits non-zero when a target crashed, timed
# out or ran out of memory.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-60}
swiftc=${SWIFTC:-swiftc}
work="$root/.build-fuzz"
out="$work/out"
logs="$work/logs"
build_log="$logs/build.log"

all_targets=(json engineioPacket engineioPayload socketioPacket chatPayloads client terminalKeys)
if (($# > 0)); then targets=("$@"); else targets=("${all_targets[@]}"); fi
for target in "${targets[@]}"; do
    if [[ ! " ${all_targets[*]} " =~ " $target " ]]; then
        echo "fuzz: unknown target '$target' (targets: ${all_targets[*]})" >&2
        exit 2
    fi
done
[[ $seconds =~ ^[0-9]+$ ]] || { echo "fuzz: FUZZ_SECONDS must be a whole number of seconds" >&2; exit 2; }

command -v "$swiftc" >/dev/null || { echo "fuzz: $swiftc not found" >&2; exit 2; }
# The toolchain's other tools (swift-autolink-extract, llvm-symbolizer, swift-demangle).
toolchain_bin=$(dirname "$(readlink -f "$(command -v "$swiftc")")")
mkdir -p "$out" "$logs" "$work/corpus" "$work/crashes"
: >"$build_log"

# As Package.swift builds every Parley target, plus the fuzzer's instrumentation.
flags=(
    -parse-as-library -swift-version 6
    -enable-upcoming-feature ExistentialAny -enable-upcoming-feature InternalImportsByDefault
    -sanitize=fuzzer,address -O -g
)
toolchain=$("$swiftc" --version 2>&1)

# up_to_date NAME KEY: true when NAME was last built from exactly KEY.
up_to_date() { [[ -f "$out/$1.key" && $(<"$out/$1.key") == "$2" ]]; }

# run_build NAME COMMAND...: runs the compiler, output to the build log; on failure prints
# the errors only.
run_build() {
    local name=$1
    shift
    echo "== $name: $*" >>"$build_log"
    if ! "$@" >>"$build_log" 2>&1; then
        echo "fuzz: building $name failed:" >&2
        sed -n "/^== $name: /,\$p" "$build_log" | grep -E 'error:|undefined reference|fatal' | head -40 >&2 || true
        echo "fuzz: full output in ${build_log#"$root/"}" >&2
        exit 2
    fi
}

# build_module NAME SOURCE_DIR FLAGS [DEPENDENCY...]: a static library and its module, in
# $out, from every Swift file under SOURCE_DIR, compiled with the flags of the array named FLAGS.
build_module() {
    local name=$1 dir=$2
    local -n module_flags=$3
    shift 3
    local sources=()
    while IFS= read -r -d '' file; do sources+=("$file"); done < <(find "$dir" -name '*.swift' -print0 | sort -z)
    local deps_keys="" dep
    for dep in "$@"; do deps_keys+=$(<"$out/$dep.key"); done
    local key
    key=$({ echo "$toolchain ${module_flags[*]}"; echo "$deps_keys"; for f in "${sources[@]}"; do echo "$f"; cat "$f"; done; } | sha256sum | cut -c1-64)
    if ! up_to_date "$name" "$key"; then
        rm -f "$out/$name.key"
        run_build "$name" "$swiftc" -emit-library -static -emit-module -wmo -module-name "$name" "${module_flags[@]}" \
            -I "$out" "${sources[@]}" -emit-module-path "$out/$name.swiftmodule" -o "$out/lib$name.a"
        echo "$key" >"$out/$name.key"
    fi
}

# swift-collections' modules (the chat state keeps conversations in its Deque) come from
# SwiftPM's checkout, built with the settings its Package.swift gives, plus the fuzzer's
# instrumentation.
collections="$root/.build/checkouts/swift-collections"
[[ -d $collections/Sources ]] || (cd "$root" && swift package resolve >/dev/null)
collections_flags=(
    -parse-as-library -package-name swift_collections -swift-version 5 -sanitize=fuzzer,address -O -g
    -enable-upcoming-feature MemberImportVisibility -D COLLECTIONS_RANDOMIZED_TESTING
)
for feature in BuiltinModule Lifetimes InoutLifetimeDependence AddressableParameters AddressableTypes SuppressedAssociatedTypesWithDefaults; do
    collections_flags+=(-enable-experimental-feature "$feature")
done
while IFS= read -r macro; do collections_flags+=(-enable-experimental-feature "AvailabilityMacro=$macro"); done < <(
    grep -oE '"SwiftStdlib [0-9.]+": +"[^"]+"' "$collections/Package.swift" | sed -E 's/"(SwiftStdlib [0-9.]+)": +"([^"]+)"/\1: \2/'
)

# The dependency chain, bottom up.
build_module InternalCollectionsUtilities "$collections/Sources/InternalCollectionsUtilities" collections_flags
build_module ContainersPreview "$collections/Sources/ContainersPreview" collections_flags InternalCollectionsUtilities
build_module DequeModule "$collections/Sources/DequeModule" collections_flags ContainersPreview InternalCollectionsUtilities
build_module InertText "$root/Sources/InertText" flags
build_module JSON "$root/Sources/JSON" flags InertText
build_module EngineIOProtocol "$root/Sources/EngineIOProtocol" flags JSON
build_module SocketIOProtocol "$root/Sources/SocketIOProtocol" flags EngineIOProtocol JSON
build_module ChatSchema "$root/Sources/ChatSchema" flags JSON
build_module Chat "$root/Sources/Chat" flags ChatSchema JSON DequeModule
build_module TerminalKeys "$root/Sources/TerminalKeys" flags
build_module FuzzTargets "$root/Fuzz/Targets" flags InertText JSON EngineIOProtocol SocketIOProtocol ChatSchema Chat TerminalKeys

# Static libraries: dependents before their dependencies.
modules=(FuzzTargets TerminalKeys Chat DequeModule ContainersPreview InternalCollectionsUtilities ChatSchema SocketIOProtocol EngineIOProtocol JSON InertText)
libs=()
lib_keys=""
archives=()
for module in "${modules[@]}"; do
    libs+=("-l$module")
    archives+=("$out/lib$module.a")
    lib_keys+=$(<"$out/$module.key")
done
# What the modules import from the toolchain (Foundation, for EngineIOPayload's base64):
# swiftc links that by itself only for object files, not for static libraries.
autolink=()
while IFS= read -r flag; do autolink+=("$flag"); done < <(
    "$toolchain_bin/swift-autolink-extract" "${archives[@]}" -o - | sort -u
)
for target in "${targets[@]}"; do
    entry="$root/Fuzz/Entry/$target.swift"
    key=$({ echo "$toolchain ${flags[*]}"; echo "$lib_keys"; cat "$entry"; } | sha256sum | cut -c1-64)
    if ! up_to_date "fuzz-$target" "$key"; then
        rm -f "$out/fuzz-$target.key"
        run_build "fuzz-$target" "$swiftc" "${flags[@]}" -module-name FuzzEntry "$entry" \
            -I "$out" -L "$out" "${libs[@]}" "${autolink[@]}" -o "$out/fuzz-$target"
        echo "$key" >"$out/fuzz-$target.key"
    fi
done

# Crashes are libFuzzer's to handle: it writes the input and the stack trace. (The Swift
# runtime's own backtracer would take the signal first, and can hang.)
export SWIFT_BACKTRACE=enable=no
# Symbolized stack traces in the logs, when the toolchain has a symbolizer.
if [[ -x $toolchain_bin/llvm-symbolizer ]]; then export ASAN_SYMBOLIZER_PATH="$toolchain_bin/llvm-symbolizer"; fi

# final_stat NAME LOG: the value of libFuzzer's final "stat::NAME:" line.
final_stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

failed=0
printf '%-16s %12s %9s %8s %8s\n' target executions exec/s corpus crashes
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    crashes="$work/crashes/$target"
    log="$logs/$target.log"
    mkdir -p "$corpus" "$crashes"
    inputs=("$corpus")
    for dir in "$root/Fuzz/Corpus/$target" "$root/Fuzz/Regressions/$target"; do
        [[ -d $dir ]] && inputs+=("$dir")
    done
    marker="$work/.started-$target"
    touch "$marker"

    status=0
    "$out/fuzz-$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "${inputs[@]}" >"$log" 2>&1 || status=$?

    artifacts=()
    while IFS= read -r file; do artifacts+=("$file"); done < <(
        find "$crashes" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) -newer "$marker" | sort
    )
    rm -f "$marker"
    corpus_size=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
    printf '%-16s %12s %9s %8s %8s\n' "$target" "$(final_stat number_of_executed_units "$log")" \
        "$(final_stat average_exec_per_sec "$log")" "${corpus_size:-?}" "${#artifacts[@]}"
    if ((status != 0 || ${#artifacts[@]} > 0)); then
        failed=1
        # Readable Swift names in the stack trace.
        if [[ -x $toolchain_bin/swift-demangle ]] && "$toolchain_bin/swift-demangle" --simplified <"$log" >"$log.demangled"; then
            mv "$log.demangled" "$log"
        fi
        echo "  FAILED (exit status $status), log: ${log#"$root/"}"
        grep -m1 -E 'ERROR: libFuzzer|ERROR: AddressSanitizer|Fatal error|fuzz invariant violated' "$log" | cut -c1-300 | sed 's/^/  /' || true
        for file in "${artifacts[@]}"; do echo "  input: ${file#"$root/"}"; done
    fi
done
exit $failed
