#!/usr/bin/env bash
# scripts/setup.sh: install what Postern needs on Debian 12, build it, then run either the
# demo or every test.
#
#   scripts/setup.sh demo    install, build, run the demo (mail over enforced, verified TLS)
#   scripts/setup.sh test    install, build (plain, ASan/UBSan, fuzz targets), run all tests
#   scripts/setup.sh build   install and build only
set -euo pipefail

mode=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_packages() {
    local packages=(
        cmake g++ make pkg-config clang libclang-rt-14-dev
        libboost1.81-dev libssl-dev zlib1g-dev librocksdb-dev libunbound-dev libevent-dev nettle-dev libtomlplusplus-dev
        libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev libgtest-dev libgmock-dev googletest libsystemd-dev
        openssl python3 swaks libnet-ssleay-perl strace postfix sslscan testssl.sh unbound iproute2 procps util-linux
        prometheus dpkg-dev lintian groff-base libldap-dev slapd ldap-utils nsd ldnsutils
    )
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "Installing: ${missing[*]}"
        # Postfix is a test peer only: no system-wide configuration, never started.
        echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
        # prometheus (for promtool), unbound, slapd and nsd are test tools too: their services must not
        # start on install. policy-rc.d (101 = action forbidden) stops invoke-rc.d for the
        # length of the install, unless the machine already has a policy of its own.
        local own_policy=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
            as_root chmod 755 /usr/sbin/policy-rc.d
            own_policy=1
        fi
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
        [ "$own_policy" -eq 1 ] && as_root rm -f /usr/sbin/policy-rc.d
    fi
}

build() {
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j"$jobs"
}

build_sanitized() {
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPOSTERN_SANITIZE=ON >/dev/null
    cmake --build build-asan -j"$jobs"
}

build_and_run_fuzzers() {
    CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DPOSTERN_FUZZ=ON -DPOSTERN_TESTS=OFF >/dev/null
    local targets
    targets=$(ls tests/fuzz/fuzz_*.cpp 2>/dev/null | xargs -rn1 basename | sed 's/\.cpp$//')
    [ -n "$targets" ] || return 0
    # shellcheck disable=SC2086
    cmake --build build-fuzz -j"$jobs" --target $targets
    for t in $targets; do
        echo "fuzz: $t (20 s)"
        mkdir -p "build-fuzz/corpus-$t"
        seeds=()
        [ -d "tests/fuzz/seeds/$t" ] && seeds=("tests/fuzz/seeds/$t")
        "build-fuzz/tests/fuzz/$t" -max_total_time=20 -print_final_stats=0 "build-fuzz/corpus-$t" "${seeds[@]}" 2>&1 | tail -n 2
    done
}

install_packages
case "$mode" in
    build) build ;;
    demo)
        build
        exec scripts/demo.sh
        ;;
    test)
        build
        build_sanitized
        build_and_run_fuzzers
        echo "== unit and integration tests =="
        ctest --test-dir build --output-on-failure -j"$jobs"
        echo "== unit tests under AddressSanitizer and UndefinedBehaviorSanitizer =="
        ctest --test-dir build-asan --output-on-failure -L unit -j"$jobs"
        ;;
    package)
        build
        rm -rf build/packages
        (cd build && cpack >/dev/null)
        ls build/packages/postern_*.deb | xargs -n1 realpath
        ;;
    *) echo "usage: $0 demo|test|build|package" >&2; exit 2 ;;
esac
