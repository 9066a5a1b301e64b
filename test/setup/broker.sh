#!/usr/bin/env bash
# Runs the setup script of the test broker FASTMON_TEST_BROKER selects: artemis (default, the testbed's
# broker: test/setup/artemis.sh) or classic (test/setup/activemq.sh). Arguments pass through
# (start | stop | restart | status).
set -euo pipefail
dir=$(dirname "${BASH_SOURCE[0]}")
case ${FASTMON_TEST_BROKER:-artemis} in
  artemis) exec bash "$dir/artemis.sh" "$@" ;;
  classic) exec bash "$dir/activemq.sh" "$@" ;;
  *) printf 'broker.sh: ERROR: FASTMON_TEST_BROKER=%s: expected artemis or classic\n' "$FASTMON_TEST_BROKER" >&2; exit 2 ;;
esac
