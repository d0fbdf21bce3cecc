#!/usr/bin/env bash
# The kernel tests built for aarch64 and run under qemu-user, so that the NEON kernels
# (crates/huarizo-kernels/src/neon.rs) are held to the scalar reference on an x86 machine.
# Needs Debian's qemu-user-static, gcc-aarch64-linux-gnu and libc6-dev-arm64-cross, and
# `rustup target add aarch64-unknown-linux-gnu`. Not part of CI (README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
exec cargo test --release --target aarch64-unknown-linux-gnu -p huarizo-kernels "$@"
