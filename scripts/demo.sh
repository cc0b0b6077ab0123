#!/usr/bin/env bash
# Runs a small agent tool in a toolcell sandbox and prints its audit record.
# Installs what it needs (libseccomp-dev, gcc) via scripts/deps.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/deps.sh" --demo
export PATH=$PATH:/usr/local/go/bin
cd "$root"
go run ./examples/demo
