#!/usr/bin/env bash
# Installs what wasmgate needs on a fresh machine, and nothing else. Safe to run again; does
# nothing when all is present.
#   scripts/setup.sh serve   what serving and the examples need: the two WASI targets the guest
#                            programs build for, curl (serve.sh waits on the HTTP example),
#                            and protoc (protobuf-compiler: the etcd client's build compiles
#                            etcd's gRPC definitions).
#   scripts/setup.sh         that, and what the tests and benches need (Debian): the OCI registry
#                            server, htpasswd and skopeo (a second tool that must be able to pull
#                            what wasmgate pushes) for the image tests, runc (the container
#                            capacity's runtime), tini (the init of initProcessEnabled
#                            containers) and busybox-static (the container tests' image),
#                            containernetworking-plugins and iptables (container tasks' own
#                            networks: awsvpc and bridge through the CNI plugins),
#                            iproute2 (the multi-host tests' network namespaces), node and
#                            npm (the CDK example's packages, installed by its test from the
#                            lockfile), chromium (the web console's browser test; Playwright
#                            drives it, no download), etcd-server (etcd 3.4: the state
#                            store tests and `--store etcd://` start it on loopback).
set -euo pipefail

case "${1:-all}" in
  serve) want=serve ;;
  all) want=all ;;
  *) echo "usage: scripts/setup.sh [serve]" >&2; exit 2 ;;
esac

if ! rustup target list --installed | grep -qx wasm32-wasip1 ||
   ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "== installing the wasm32-wasip1 and wasm32-wasip2 targets"
  rustup target add wasm32-wasip1 wasm32-wasip2
fi

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
if [ "$want" = all ]; then
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v htpasswd >/dev/null || missing+=(apache2-utils)
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v runc >/dev/null || missing+=(runc)
  # (static: bind-mounted into containers as their pid 1 when initProcessEnabled)
  [ -x /usr/bin/tini-static ] || missing+=(tini)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  # (static: the tests copy it into an image that has no libc)
  { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
  command -v ip >/dev/null || missing+=(iproute2)
  # (the CDK example's test synthesizes it with the CDK CLI from npm)
  command -v npm >/dev/null || missing+=(nodejs npm)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v etcd >/dev/null || missing+=(etcd-server)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian)"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi
