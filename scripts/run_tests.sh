#!/usr/bin/env bash
# Installs sparsetrain with its test needs (pinned: CPU torch 2.13.0) and runs the whole
# test suite: the C++ kernel tests (ctest) and the Python tests (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

# The hf extra too: tests/test_hf.py runs the Hugging Face models (skipped without it).
python3 -m pip install --quiet -c constraints.txt ".[test,hf]"

if [ ! -f /usr/include/gtest/gtest.h ]; then
  # GoogleTest for the C++ tests, from Debian's packages.
  (apt-get update -qq && apt-get install -y -qq libgtest-dev) >/dev/null
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build/cpp "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DSPARSETRAIN_BUILD_PYTHON=OFF -DSPARSETRAIN_BUILD_TESTS=ON -DSPARSETRAIN_BUILD_BENCH=ON >/dev/null
cmake --build build/cpp --parallel
ctest --test-dir build/cpp --output-on-failure

# The same C++ tests under AddressSanitizer + UndefinedBehaviorSanitizer (Debug, -O1; ~1 min
# to build on 2 cores). Every report is fatal (-fno-sanitize-recover=all, halt_on_error), so
# any finding fails the run.
cmake -S . -B build/asan "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug -DSPARSETRAIN_SANITIZE=ON \
  -DSPARSETRAIN_BUILD_PYTHON=OFF -DSPARSETRAIN_BUILD_TESTS=ON -DSPARSETRAIN_BUILD_BENCH=ON >/dev/null
cmake --build build/asan --parallel
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/asan --output-on-failure

# `import sparsetrain` resolves to the installed package (the source lives under python/).
python3 -m pytest tests "$@"
