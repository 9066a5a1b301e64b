#!/usr/bin/env bash
# Provide the ActiveMQ Artemis 2.40.0 broker the tests run against (the testbed's broker), configured
# like the testbed's: login required (admin/admin), the testbed's addresses, STOMP on loopback.
# Started without systemd; can run beside the ActiveMQ Classic test broker (no shared port).
#
#   bash test/setup/artemis.sh [start]   install + create instance + start (a quick no-op when STOMP answers)
#   bash test/setup/artemis.sh stop      stop the broker
#   bash test/setup/artemis.sh restart   stop, reconfigure, start
#   bash test/setup/artemis.sh status    print whether STOMP answers and the broker's pid
#
# Ports (all on 127.0.0.1):
#   61713  STOMP, no prefix stripping (the `artemis create` default, as in the testbed's docker image):
#          `/topic/epictopic` is an address of that literal name
#   61714  STOMP over TLS (test CA below), no prefix stripping
#   61715  STOMP with anycastPrefix=/queue/;multicastPrefix=/topic/: `/topic/epictopic` is address `epictopic`
#   61716  the core `artemis` acceptor (CLI, all protocols); moved off 61616, which Classic's OpenWire uses
# Differences from a plain `artemis create`: a second, test-only account `fastmon-test` (password
# `admin-broker-password`, role amq) so that tests can look for a distinctive password in logs; the ports above, no AMQP/MQTT/HornetQ acceptors (Classic
# may use 5672/1883), no web console (saves memory; 8161 is Classic's console port too), NIO journal,
# heap 1 GB. Everything else is as `artemis create` writes it (max-delivery-attempts 10, DLQ,
# ExpiryQueue, auto-create of addresses and queues): the agent must work against a default broker.
#
# Needs root for everything but `status` and the already-running case. Idempotent.
set -euo pipefail

VERSION=2.40.0
STOMP_HOST=127.0.0.1
STOMP_PORT=61713
STOMP_TLS_PORT=61714
STOMP_PREFIX_PORT=61715
CORE_PORT=61716
HOME_DIR=/opt/apache-artemis-$VERSION
INSTANCE=/var/lib/artemis-fastmon
ETC=$INSTANCE/etc
XML=$ETC/broker.xml
LOG=$INSTANCE/log/artemis.log
CONSOLE_LOG=$INSTANCE/log/console.log
USER_NAME=admin
USER_PASS=admin
# The test-only account (see above): the tests log in with it to prove the password never shows.
TEST_USER=fastmon-test
TEST_PASS=admin-broker-password
WAIT_SECONDS=${FASTMON_ARTEMIS_WAIT_SECONDS:-120}
GRACE_SECONDS=30
LOCK_NAME=artemis
LOCK_SECONDS=240
BROKER=Artemis
BROKER_LOGS=("$CONSOLE_LOG" "$LOG")
# The testbed's addresses (its broker: `epicqueue` anycast, `epictopic` multicast, the PanDA ones),
# written when the instance is created: after a change, stop, delete $INSTANCE, start.
ADDRESSES=(epictopic:multicast epicqueue:anycast workflow_control:anycast panda.transformer.slices:anycast
  panda.transformer.slices.monitor:multicast panda.results:multicast panda.transformer:multicast
  tf.slices:multicast panda.harvester:multicast)
# Test-only TLS material (self-signed CA + broker certificate for CN=localhost, IP 127.0.0.1).
TLS_PASS=fastmon-test
TLS_CA_PEM=$ETC/fastmon-test-ca.pem
TLS_CA_P12=$ETC/fastmon-test-ca.p12
TLS_KEYSTORE=$ETC/fastmon-test-broker.p12
MARK_BEGIN='<!-- fastmon-test: begin (added by swf-fastmon test/setup/artemis.sh) -->'
MARK_END='<!-- fastmon-test: end -->'

# shellcheck source=test/setup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# PIDs of JVMs running this instance.
broker_pids() { pids_with_args " -Dartemis.instance=$INSTANCE "; }

find_java() {
  local j
  for j in /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/default-java/bin/java; do
    [[ -x $j ]] && { echo "$j"; return; }
  done
  command -v java || die 'no java found: apt-get install -y openjdk-17-jre-headless'
}

java_home() { dirname "$(dirname "$(readlink -f "$JAVA")")"; }

# The distribution from Maven Central (the only registry reachable from CI), unpacked under /opt.
install_distribution() {
  [[ -x $HOME_DIR/bin/artemis ]] && return
  command -v mvn >/dev/null || {
    say 'installing maven (to fetch Artemis from Maven Central) ...'
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven
  }
  local tmp
  tmp=$(mktemp -d)
  say "fetching org.apache.activemq:apache-artemis:$VERSION:tar.gz:bin from Maven Central ..."
  mvn -B -q dependency:copy "-Dartifact=org.apache.activemq:apache-artemis:$VERSION:tar.gz:bin" \
    "-DoutputDirectory=$tmp" </dev/null || die 'mvn dependency:copy failed'
  tar xzf "$tmp/apache-artemis-$VERSION-bin.tar.gz" -C "$tmp"
  rm -rf "$HOME_DIR"
  mv "$tmp/apache-artemis-$VERSION" "$HOME_DIR"
  rm -rf "$tmp"
  say "installed Artemis $VERSION in $HOME_DIR"
}

create_instance() {
  [[ -f $XML ]] && return
  say "creating the broker instance $INSTANCE ..."
  JAVA_HOME=$(java_home) "$HOME_DIR/bin/artemis" create "$INSTANCE" \
    --silent --user "$USER_NAME" --password "$USER_PASS" --require-login \
    --host "$STOMP_HOST" --default-port "$CORE_PORT" --nio --no-web --java-memory 1G \
    --no-amqp-acceptor --no-mqtt-acceptor --no-hornetq-acceptor --no-stomp-acceptor \
    --addresses "$(IFS=,; echo "${ADDRESSES[*]}")" </dev/null >"$INSTANCE.create.log" 2>&1 ||
    { cat "$INSTANCE.create.log" >&2; die 'artemis create failed'; }
  [[ -f $XML ]] || die "artemis create wrote no $XML"
  # A smaller initial heap than the 512 MB `artemis create` sets: the test machine runs many processes.
  sed -i 's/-Xms512M/-Xms128M/' "$ETC/artemis.profile"
  CHANGED=1
}

# Self-signed CA + broker key pair (PKCS#12, password $TLS_PASS), generated once.
ensure_tls_material() {
  [[ -s $TLS_KEYSTORE && -s $TLS_CA_PEM ]] && return 0
  local tmp
  tmp=$(mktemp -d)
  if ! make_test_certificates "$tmp" 'swf-fastmon Artemis test CA'; then
    rm -rf "$tmp"
    say 'keytool not found: STOMP+TLS acceptor skipped'
    return 0
  fi
  install -m 0600 "$tmp/ca.p12" "$TLS_CA_P12"
  install -m 0600 "$tmp/broker.p12" "$TLS_KEYSTORE"
  install -m 0644 "$tmp/ca.pem" "$TLS_CA_PEM"
  rm -rf "$tmp"
  say "test CA certificate written to $TLS_CA_PEM"
  CHANGED=1
}

# (Re)writes the fastmon-test block of broker.xml (the acceptors) when it differs. The addresses are
# written by `artemis create --addresses` (a script of an older version added them again here: removed).
configure_xml() {
  # The parameters of the STOMP acceptor `artemis create` writes, on loopback and our ports.
  local params='tcpSendBufferSize=1048576;tcpReceiveBufferSize=1048576;protocols=STOMP;useEpoll=true' tls=0 desired
  [[ -s $TLS_KEYSTORE ]] && tls=1
  FM_ACC="         $MARK_BEGIN
         <!-- STOMP as \`artemis create\` writes it (no prefix stripping: /topic/x is address \"/topic/x\") -->
         <acceptor name=\"stomp\">tcp://$STOMP_HOST:$STOMP_PORT?$params</acceptor>
         <!-- STOMP with prefix stripping: /topic/x is multicast address \"x\", /queue/x anycast \"x\" -->
         <acceptor name=\"stomp-prefixed\">tcp://$STOMP_HOST:$STOMP_PREFIX_PORT?$params;anycastPrefix=/queue/;multicastPrefix=/topic/</acceptor>"
  ((tls)) && FM_ACC+="
         <acceptor name=\"stomp-tls\">tcp://$STOMP_HOST:$STOMP_TLS_PORT?$params;sslEnabled=true;keyStorePath=$TLS_KEYSTORE;keyStorePassword=$TLS_PASS;keyStoreType=PKCS12</acceptor>"
  FM_ACC+="
         $MARK_END"
  export FM_ACC FM_BEGIN=$MARK_BEGIN FM_END=$MARK_END
  desired=$(awk '
    index($0, ENVIRON["FM_BEGIN"]) { skip = 1; next }
    skip && index($0, ENVIRON["FM_END"]) { skip = 0; next }
    skip { next }
    /<\/acceptors>/ { print ENVIRON["FM_ACC"]; print; next }
    { print }' "$XML")
  [[ $desired == *"tcp://$STOMP_HOST:$STOMP_PORT?"* ]] || die "no </acceptors> element found in $XML"
  [[ $desired == "$(cat "$XML")" ]] && return 0
  [[ -f $XML.fastmon-orig ]] || cp -p "$XML" "$XML.fastmon-orig"
  printf '%s\n' "$desired" >"$XML.fastmon-tmp"
  mv "$XML.fastmon-tmp" "$XML"
  say "wrote the STOMP acceptors into $XML (original kept as $XML.fastmon-orig)"
  CHANGED=1
}

# The test-only account, in the properties files `artemis create` wrote (plain-text passwords are allowed).
ensure_test_user() {
  local users=$ETC/artemis-users.properties roles=$ETC/artemis-roles.properties
  if ! grep -q "^$TEST_USER = " "$users"; then
    [[ -z $(tail -c 1 "$users") ]] || echo >>"$users" # `artemis create` ends the file without a newline
    printf '%s = %s\n' "$TEST_USER" "$TEST_PASS" >>"$users"
    CHANGED=1
  fi
  if ! grep -q "^amq = .*\b$TEST_USER\b" "$roles"; then
    sed -i "s/^amq = \(.*\)$/amq = \1,$TEST_USER/" "$roles"
    CHANGED=1
  fi
}

# The distribution, the instance, the TLS material, the test account, broker.xml (see broker_main in lib.sh).
configure_broker() {
  JAVA=$(find_java)
  install_distribution
  create_instance
  ensure_tls_material
  ensure_test_user
  configure_xml
}

start_broker() {
  mkdir -p "$INSTANCE/log"
  [[ -f $CONSOLE_LOG && $(stat -c %s "$CONSOLE_LOG") -gt 10000000 ]] && mv -f "$CONSOLE_LOG" "$CONSOLE_LOG.1"
  printf '===== %s: starting ActiveMQ Artemis (instance %s) =====\n' "$(date -Is)" "$INSTANCE" >>"$CONSOLE_LOG"
  launch "$INSTANCE" "$CONSOLE_LOG" env JAVA_HOME="$(java_home)" "$INSTANCE/bin/artemis" run
  say "started the broker (pid $LAUNCHER, log $LOG); waiting for STOMP on $STOMP_HOST:$STOMP_PORT ..."
}

broker_ready() {
  say "prefix-stripping STOMP acceptor on $STOMP_HOST:$STOMP_PREFIX_PORT, core acceptor on $CORE_PORT"
  [[ -s $TLS_CA_PEM ]] && say "STOMP+TLS acceptor on $STOMP_HOST:$STOMP_TLS_PORT, CA certificate: $TLS_CA_PEM"
  return 0
}

broker_status() {
  if stomp_ok "$STOMP_HOST" "$STOMP_PREFIX_PORT"; then
    say "STOMP (prefix stripping) answers on $STOMP_HOST:$STOMP_PREFIX_PORT"
  else say "STOMP (prefix stripping) does not answer on $STOMP_HOST:$STOMP_PREFIX_PORT"; fi
}

broker_main "$@"
