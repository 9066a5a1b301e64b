#!/usr/bin/env bash
# Provide the ActiveMQ Classic broker the tests run against: Debian's `activemq` package, instance
# `main`, STOMP on 127.0.0.1:61613 (plus STOMP over TLS on 127.0.0.1:61614). Started without systemd.
#
#   bash test/setup/activemq.sh [start]   install + configure + start (a quick no-op when STOMP answers)
#   bash test/setup/activemq.sh stop      stop the broker
#   bash test/setup/activemq.sh restart   stop, reconfigure, start
#   bash test/setup/activemq.sh status    print whether STOMP answers and the broker's pid
#
# Needs root for everything but `status` and the already-running case. Idempotent.
set -euo pipefail

STOMP_HOST=127.0.0.1
STOMP_PORT=61613
STOMP_TLS_PORT=61614
INSTANCE=main
AVAIL=/etc/activemq/instances-available/$INSTANCE
ENABLED=/etc/activemq/instances-enabled/$INSTANCE
XML=$AVAIL/activemq.xml
BASE=/var/lib/activemq/$INSTANCE
LOG_DIR=/var/log/activemq
LOG=$LOG_DIR/$INSTANCE.log
AMQ_HOME=/usr/share/activemq
RUN_USER=activemq
WAIT_SECONDS=${FASTMON_ACTIVEMQ_WAIT_SECONDS:-90}
GRACE_SECONDS=20
LOCK_NAME=activemq
LOCK_SECONDS=180
BROKER=ActiveMQ
BROKER_LOGS=("$LOG")
# Test-only TLS material (self-signed CA + broker certificate for CN=localhost, IP 127.0.0.1).
TLS_PASS=fastmon-test
TLS_CA_PEM=$AVAIL/fastmon-test-ca.pem
TLS_CA_P12=$AVAIL/fastmon-test-ca.p12
TLS_KEYSTORE=$AVAIL/fastmon-test-broker.p12
TLS_TRUSTSTORE=$AVAIL/fastmon-test-truststore.p12
LOG4J=$AVAIL/fastmon-test-log4j.properties
MARK_BEGIN='<!-- fastmon-test: begin (added by swf-fastmon test/setup/activemq.sh) -->'
MARK_END='<!-- fastmon-test: end -->'

# shellcheck source=test/setup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# PIDs of JVMs running this instance (whoever started them: this script or /etc/init.d/activemq).
broker_pids() { pids_with_args activemq.jar " -Dactivemq.base=$BASE "; }

pkg_installed() { [[ $(dpkg-query -W -f='${Status}' activemq 2>/dev/null) == 'install ok installed' ]]; }

find_java() {
  local j
  for j in /usr/lib/jvm/default-java/bin/java /usr/lib/jvm/java-17-openjdk-*/bin/java; do
    [[ -x $j ]] && { echo "$j"; return; }
  done
  command -v java || die 'no java found (the activemq package depends on default-jre-headless)'
}

install_package() {
  pkg_installed && return
  say 'installing the Debian package activemq ...'
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold activemq
}

# Self-signed CA + broker key pair (PKCS#12, password $TLS_PASS), generated once.
ensure_tls_material() {
  [[ -s $TLS_KEYSTORE && -s $TLS_TRUSTSTORE && -s $TLS_CA_PEM ]] && return 0
  local tmp
  tmp=$(mktemp -d)
  if ! make_test_certificates "$tmp" 'swf-fastmon test CA'; then
    rm -rf "$tmp"
    say 'keytool not found: STOMP+TLS connector skipped'
    return 0
  fi
  install -m 0600 -o root -g root "$tmp/ca.p12" "$TLS_CA_P12"
  install -m 0640 -o root -g "$(id -gn "$RUN_USER")" "$tmp/broker.p12" "$TLS_KEYSTORE"
  install -m 0640 -o root -g "$(id -gn "$RUN_USER")" "$tmp/truststore.p12" "$TLS_TRUSTSTORE"
  install -m 0644 -o root -g root "$tmp/ca.pem" "$TLS_CA_PEM"
  rm -rf "$tmp"
  say "test CA certificate written to $TLS_CA_PEM:"
  cat "$TLS_CA_PEM"
  CHANGED=1
}

# (Re)writes the fastmon-test blocks of activemq.xml when they differ from what they should be.
configure_xml() {
  [[ -f $XML ]] || die "$XML is missing (reinstall: apt-get install --reinstall activemq)"
  # tcpNoDelay: ActiveMQ Classic leaves Nagle's algorithm on (Artemis does not); with the
  # receiver's delayed ACKs it holds small frames back by 40 ms (BENCHMARKS.md, "Latency").
  local hb='transport.hbGracePeriodMultiplier=1.5&amp;transport.tcpNoDelay=true' tls=0 desired
  [[ -s $TLS_KEYSTORE && -s $TLS_TRUSTSTORE ]] && tls=1
  export FM_SSL="        $MARK_BEGIN
        <sslContext>
            <sslContext keyStore=\"file:$TLS_KEYSTORE\" keyStorePassword=\"$TLS_PASS\" keyStoreType=\"pkcs12\"
                        trustStore=\"file:$TLS_TRUSTSTORE\" trustStorePassword=\"$TLS_PASS\" trustStoreType=\"pkcs12\"/>
        </sslContext>
        $MARK_END"
  FM_CONN="            $MARK_BEGIN
            <transportConnector name=\"stomp\" uri=\"stomp://$STOMP_HOST:$STOMP_PORT?$hb\"/>"
  ((tls)) && FM_CONN+="
            <transportConnector name=\"stomp+ssl\" uri=\"stomp+ssl://$STOMP_HOST:$STOMP_TLS_PORT?$hb\"/>"
  FM_CONN+="
            $MARK_END"
  export FM_CONN FM_TLS=$tls FM_BEGIN=$MARK_BEGIN FM_END=$MARK_END
  desired=$(awk '
    index($0, ENVIRON["FM_BEGIN"]) { skip = 1; next }
    skip && index($0, ENVIRON["FM_END"]) { skip = 0; next }
    skip { next }
    /<transportConnectors>/ { if (ENVIRON["FM_TLS"] == 1) print ENVIRON["FM_SSL"]; print; print ENVIRON["FM_CONN"]; next }
    { print }' "$XML")
  [[ $desired == *"stomp://$STOMP_HOST:$STOMP_PORT"* ]] || die "no <transportConnectors> element found in $XML"
  [[ $desired == "$(cat "$XML")" ]] && return 0
  [[ -f $XML.fastmon-orig ]] || cp -p "$XML" "$XML.fastmon-orig"
  printf '%s\n' "$desired" >"$XML.fastmon-tmp"
  chmod --reference="$XML" "$XML.fastmon-tmp"
  mv "$XML.fastmon-tmp" "$XML"
  say "added the STOMP connector(s) to $XML (original kept as $XML.fastmon-orig)"
  CHANGED=1
}

# The package, the TLS material, activemq.xml, logging, the enabled instance (see broker_main in lib.sh).
configure_broker() {
  install_package
  JAVA=$(find_java)
  ensure_tls_material
  configure_xml
  if [[ ! -f $LOG4J ]]; then
    cat >"$LOG4J" <<'EOF'
# Broker logging for the swf-fastmon test broker: everything goes to stdout, which
# test/setup/activemq.sh appends to /var/log/activemq/main.log.
log4j.rootLogger=INFO, stdout
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
log4j.logger.org.apache.activemq.spring=WARN
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d | %-5p | %m | %c | %t%n
EOF
  fi
  if [[ ! -e $ENABLED ]]; then
    ln -s "$AVAIL" "$ENABLED"
    say "enabled the instance: $ENABLED -> $AVAIL"
  fi
}

start_broker() {
  mkdir -p "$BASE/data" "$LOG_DIR"
  chown -R "$RUN_USER:" "$BASE"
  [[ -f $LOG && $(stat -c %s "$LOG") -gt 10000000 ]] && mv -f "$LOG" "$LOG.1"
  printf '===== %s: starting ActiveMQ (instance %s) =====\n' "$(date -Is)" "$INSTANCE" >>"$LOG"
  local -a jvm=(
    -Xms128m -Xmx512m -Djava.awt.headless=true
    --add-reads=java.xml=java.logging
    --add-opens java.base/java.security=ALL-UNNAMED --add-opens java.base/java.net=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED --add-opens java.base/java.util=ALL-UNNAMED
    --add-opens java.naming/javax.naming.spi=ALL-UNNAMED --add-opens java.base/java.util.concurrent=ALL-UNNAMED
    "-Dlog4j.configuration=file:$LOG4J"
    "-Dactivemq.classpath=$ENABLED" "-Dactivemq.home=$AMQ_HOME" "-Dactivemq.base=$BASE"
    "-Dactivemq.conf=$ENABLED" "-Dactivemq.data=$BASE/data"
    -jar "$AMQ_HOME/bin/activemq.jar" start "xbean:file:$ENABLED/activemq.xml"
  )
  launch "$BASE" "$LOG" setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups "$JAVA" "${jvm[@]}"
  say "started the broker (pid $LAUNCHER, user $RUN_USER, log $LOG); waiting for STOMP on $STOMP_HOST:$STOMP_PORT ..."
}

broker_ready() {
  [[ -s $TLS_CA_PEM ]] && grep -q "stomp+ssl://$STOMP_HOST:$STOMP_TLS_PORT" "$XML" &&
    say "STOMP+TLS connector on $STOMP_HOST:$STOMP_TLS_PORT, CA certificate: $TLS_CA_PEM"
  return 0
}

broker_status() { :; }

broker_main "$@"
