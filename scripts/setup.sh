#!/usr/bin/env bash
# Installs what wasmgate's build, tests and examples need on a fresh machine, and nothing else:
# the two WASI targets for the guest programs, and (for the image tests) Debian's OCI registry
# server, htpasswd, and skopeo (a second tool that must be able to pull what wasmgate pushes),
# runc (the container capacity's runtime) and busybox-static (the container tests' image).
# Safe to run again; does nothing when all is present.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-wasip1 ||
   ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "== installing the wasm32-wasip1 and wasm32-wasip2 targets"
  rustup target add wasm32-wasip1 wasm32-wasip2
fi

missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
command -v skopeo >/dev/null || missing+=(skopeo)
# The container capacity's runtime, and the busybox its tests build an image from.
command -v runc >/dev/null || missing+=(runc)
# (static: the tests copy it into an image that has no libc)
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
command -v ip >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian)"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi
