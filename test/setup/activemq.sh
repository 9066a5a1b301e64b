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
# Test-only TLS material (self-signed CA + broker certificate for CN=localhost, IP 127.0.0.1).
TLS_PASS=fastmon-test
TLS_CA_PEM=$AVAIL/fastmon-test-ca.pem
TLS_CA_P12=$AVAIL/fastmon-test-ca.p12
TLS_KEYSTORE=$AVAIL/fastmon-test-broker.p12
TLS_TRUSTSTORE=$AVAIL/fastmon-test-truststore.p12
LOG4J=$AVAIL/fastmon-test-log4j.properties
MARK_BEGIN='<!-- fastmon-test: begin (added by swf-fastmon test/setup/activemq.sh) -->'
MARK_END='<!-- fastmon-test: end -->'

say() { printf 'activemq.sh: %s\n' "$*"; }
# Closes every descriptor above stderr in the current (sub)shell.
close_inherited_fds() {
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
}

die() { printf 'activemq.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# True when host:port answers a STOMP 1.1/1.2 CONNECT with CONNECTED (bash /dev/tcp + coreutils only).
stomp_ok() {
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "CONNECT\naccept-version:1.1,1.2\nhost:/\nlogin:admin\npasscode:admin\nheart-beat:0,0\n\n\0" >&3
    while IFS= read -r -t 4 line <&3; do
      line=${line//[[:space:]]/}
      [[ -n $line ]] && break
    done
    [[ $line == CONNECTED ]] || exit 1
    printf "DISCONNECT\n\n\0" >&3
  ' _ "$1" "$2" 2>/dev/null
}

port_open() { timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

# PIDs of JVMs running this instance (whoever started them: this script or /etc/init.d/activemq).
broker_pids() {
  local f cmd
  local -a argv
  for f in /proc/[0-9]*/cmdline; do
    mapfile -d '' -t argv 2>/dev/null <"$f" || continue
    cmd=" ${argv[*]} "
    [[ $cmd == *activemq.jar* && $cmd == *" -Dactivemq.base=$BASE "* ]] || continue
    f=${f#/proc/}
    echo "${f%/cmdline}"
  done
  return 0
}

pkg_installed() { [[ $(dpkg-query -W -f='${Status}' activemq 2>/dev/null) == 'install ok installed' ]]; }

find_java() {
  local j
  for j in /usr/lib/jvm/default-java/bin/java /usr/lib/jvm/java-17-openjdk-*/bin/java; do
    [[ -x $j ]] && { echo "$j"; return; }
  done
  command -v java || die 'no java found (the activemq package depends on default-jre-headless)'
}

need_root() {
  [[ $(id -u) == 0 ]] && return
  die "$1 needs root. Run: sudo bash $0 ${2:-}"
}

install_package() {
  pkg_installed && return
  if [[ $(id -u) != 0 ]]; then
    printf 'activemq.sh: the Debian package `activemq` is not installed. Run:\n' >&2
    printf '  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y activemq\n' >&2
    printf '  sudo bash %s\n' "$0" >&2
    exit 1
  fi
  say 'installing the Debian package activemq ...'
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold activemq
}

# Self-signed CA + broker key pair (PKCS#12, password $TLS_PASS), generated once.
ensure_tls_material() {
  [[ -s $TLS_KEYSTORE && -s $TLS_TRUSTSTORE && -s $TLS_CA_PEM ]] && return 0
  local kt tmp
  kt="$(dirname "$(readlink -f "$JAVA")")/keytool"
  [[ -x $kt ]] || kt=$(command -v keytool) || { say 'keytool not found: STOMP+TLS connector skipped'; return 0; }
  say 'generating the test CA and broker certificate (keytool) ...'
  tmp=$(mktemp -d)
  k() { "$kt" "$1" -storetype PKCS12 -storepass "$TLS_PASS" "${@:2}" 2>"$tmp/err" || die "keytool $1: $(cat "$tmp/err")"; }
  k -genkeypair -keystore "$tmp/ca.p12" -alias ca -keyalg RSA -keysize 2048 -validity 3650 \
    -keypass "$TLS_PASS" -dname 'CN=swf-fastmon test CA' -ext bc:c=ca:true -ext ku:c=keyCertSign,cRLSign
  k -exportcert -keystore "$tmp/ca.p12" -alias ca -rfc -file "$tmp/ca.pem"
  k -genkeypair -keystore "$tmp/broker.p12" -alias broker -keyalg RSA -keysize 2048 -validity 3650 \
    -keypass "$TLS_PASS" -dname 'CN=localhost'
  k -certreq -keystore "$tmp/broker.p12" -alias broker -file "$tmp/broker.csr"
  k -gencert -keystore "$tmp/ca.p12" -alias ca -infile "$tmp/broker.csr" -outfile "$tmp/broker.pem" -rfc \
    -validity 3650 -ext san=dns:localhost,ip:127.0.0.1 -ext ku:c=digitalSignature,keyEncipherment -ext eku=serverAuth
  k -importcert -keystore "$tmp/broker.p12" -alias ca -file "$tmp/ca.pem" -noprompt
  k -importcert -keystore "$tmp/broker.p12" -alias broker -file "$tmp/broker.pem"
  k -importcert -keystore "$tmp/truststore.p12" -alias ca -file "$tmp/ca.pem" -noprompt
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

# Sets CHANGED=1 when something changed that a running broker has not loaded yet.
configure() {
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
  # setsid + nohup: own session, no controlling terminal, survives this script and the CI step.
  # No inherited descriptor but stdio: the broker must not hold this script's lock (fd 9), nor the
  # lock of whoever ran this script (`flock /tmp/fastmon-suite.lock npm test` passes its lock on to
  # pretest's children: a broker started there held the suite lock for as long as it ran).
  (cd "$BASE" && close_inherited_fds && exec setsid nohup setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups \
    "$JAVA" "${jvm[@]}" </dev/null >>"$LOG" 2>&1) &
  say "started the broker (pid $!, user $RUN_USER, log $LOG); waiting for STOMP on $STOMP_HOST:$STOMP_PORT ..."
}

wait_for_stomp() {
  local t0=$SECONDS
  while ((SECONDS - t0 < WAIT_SECONDS)); do
    if stomp_ok "$STOMP_HOST" "$STOMP_PORT"; then
      say "ActiveMQ STOMP answers on $STOMP_HOST:$STOMP_PORT after $((SECONDS - t0)) s"
      [[ -s $TLS_CA_PEM ]] && grep -q "stomp+ssl://$STOMP_HOST:$STOMP_TLS_PORT" "$XML" &&
        say "STOMP+TLS connector on $STOMP_HOST:$STOMP_TLS_PORT, CA certificate: $TLS_CA_PEM"
      return 0
    fi
    [[ -n $(broker_pids) ]] || { say 'the broker process exited'; break; }
    sleep 0.5
  done
  printf 'activemq.sh: ERROR: no STOMP CONNECTED on %s:%s within %s s. Last lines of %s:\n' \
    "$STOMP_HOST" "$STOMP_PORT" "$WAIT_SECONDS" "$LOG" >&2
  tail -n 60 "$LOG" >&2 || true
  exit 1
}

stop_broker() {
  local pids i
  pids=$(broker_pids)
  [[ -n $pids ]] || { say 'broker not running'; return 0; }
  say "stopping the broker (pid $(echo $pids)) ..."
  kill -TERM $pids 2>/dev/null || true
  kill -CONT $pids 2>/dev/null || true # in case it was stopped (SIGSTOP)
  for ((i = 0; i < 60; i++)); do
    [[ -z $(broker_pids) ]] && { say 'stopped'; return 0; }
    sleep 0.5
  done
  kill -KILL $(broker_pids) 2>/dev/null || true
  say 'killed (did not stop within 30 s)'
}

lock() {
  local dir=/run
  [[ -d $dir && -w $dir ]] || dir=/tmp
  exec 9>"$dir/fastmon-activemq.lock"
  flock -w 180 9 || die 'another activemq.sh is still running'
}

cmd=${1:-start}
case $cmd in
  status)
    if stomp_ok "$STOMP_HOST" "$STOMP_PORT"; then say "STOMP answers on $STOMP_HOST:$STOMP_PORT"; else say 'STOMP does not answer'; fi
    pids=$(broker_pids)
    say "broker pid(s): ${pids:-none}; log: $LOG"
    [[ -n $pids ]]
    ;;
  stop)
    need_root 'stopping the broker' stop
    lock
    stop_broker
    ;;
  start | restart)
    if [[ $cmd == start ]] && stomp_ok "$STOMP_HOST" "$STOMP_PORT"; then
      say "ActiveMQ STOMP already answers on $STOMP_HOST:$STOMP_PORT"
      exit 0
    fi
    install_package
    need_root 'configuring and starting ActiveMQ' "$cmd"
    lock
    if [[ $cmd == start ]] && stomp_ok "$STOMP_HOST" "$STOMP_PORT"; then # started meanwhile
      say "ActiveMQ STOMP already answers on $STOMP_HOST:$STOMP_PORT"
      exit 0
    fi
    JAVA=$(find_java)
    CHANGED=0
    configure
    if [[ -n $(broker_pids) ]]; then
      if [[ $cmd == start && $CHANGED == 0 ]]; then
        say 'broker process running but STOMP does not answer yet: giving it 20 s'
        t0=$SECONDS
        while ((SECONDS - t0 < 20)); do
          stomp_ok "$STOMP_HOST" "$STOMP_PORT" && { say "ActiveMQ STOMP answers on $STOMP_HOST:$STOMP_PORT"; exit 0; }
          sleep 0.5
        done
      fi
      stop_broker
    fi
    port_open "$STOMP_HOST" "$STOMP_PORT" &&
      die "something else listens on $STOMP_HOST:$STOMP_PORT but does not answer STOMP CONNECT"
    start_broker
    wait_for_stomp
    ;;
  *) die "usage: $0 [start|stop|restart|status]" ;;
esac
