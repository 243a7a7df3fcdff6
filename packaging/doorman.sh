#!/bin/sh
# /usr/bin/doorman: Doorman's command on the Node.js runtime packaged with it
# in /usr/lib/doorman/bin/node (Debian 12's nodejs is 18; Doorman needs
# 20.19 or newer). The node flags and MALLOC_TRIM_THRESHOLD_ are the
# daemon's own (src/cli/node-flags.ts says why); the library directory is
# found beside this file, so an unpacked package runs where it lies.
lib=$(readlink -f "$(dirname "$(readlink -f "$0")")/../lib/doorman")
MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-134217728}
export MALLOC_TRIM_THRESHOLD_
exec "$lib/bin/node" --max-semi-space-size=2 "$lib/dist/src/cli/main.js" "$@"
