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

say() { printf 'artemis.sh: %s\n' "$*"; }
# Closes every descriptor above stderr in the current (sub)shell.
close_inherited_fds() {
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
}

die() { printf 'artemis.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# True when host:port answers a STOMP 1.1/1.2 CONNECT with CONNECTED (bash /dev/tcp + coreutils only).
stomp_ok() {
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "CONNECT\naccept-version:1.1,1.2\nhost:/\nlogin:$3\npasscode:$4\nheart-beat:0,0\n\n\0" >&3
    while IFS= read -r -t 4 line <&3; do
      line=${line//[[:space:]]/}
      [[ -n $line ]] && break
    done
    [[ $line == CONNECTED ]] || exit 1
    printf "DISCONNECT\n\n\0" >&3
  ' _ "$1" "$2" "$USER_NAME" "$USER_PASS" 2>/dev/null
}

port_open() { timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

# PIDs of JVMs running this instance.
broker_pids() {
  local f cmd
  local -a argv
  for f in /proc/[0-9]*/cmdline; do
    mapfile -d '' -t argv 2>/dev/null <"$f" || continue
    cmd=" ${argv[*]} "
    [[ $cmd == *" -Dartemis.instance=$INSTANCE "* ]] || continue
    f=${f#/proc/}
    echo "${f%/cmdline}"
  done
  return 0
}

find_java() {
  local j
  for j in /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/default-java/bin/java; do
    [[ -x $j ]] && { echo "$j"; return; }
  done
  command -v java || die 'no java found: apt-get install -y openjdk-17-jre-headless'
}

need_root() {
  [[ $(id -u) == 0 ]] && return
  die "$1 needs root. Run: sudo bash $0 ${2:-}"
}

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
  JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$JAVA")")") "$HOME_DIR/bin/artemis" create "$INSTANCE" \
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
  local kt tmp
  kt="$(dirname "$(readlink -f "$JAVA")")/keytool"
  [[ -x $kt ]] || kt=$(command -v keytool) || { say 'keytool not found: STOMP+TLS acceptor skipped'; return 0; }
  say 'generating the test CA and broker certificate (keytool) ...'
  tmp=$(mktemp -d)
  k() { "$kt" "$1" -storetype PKCS12 -storepass "$TLS_PASS" "${@:2}" 2>"$tmp/err" || die "keytool $1: $(cat "$tmp/err")"; }
  k -genkeypair -keystore "$tmp/ca.p12" -alias ca -keyalg RSA -keysize 2048 -validity 3650 \
    -keypass "$TLS_PASS" -dname 'CN=swf-fastmon Artemis test CA' -ext bc:c=ca:true -ext ku:c=keyCertSign,cRLSign
  k -exportcert -keystore "$tmp/ca.p12" -alias ca -rfc -file "$tmp/ca.pem"
  k -genkeypair -keystore "$tmp/broker.p12" -alias broker -keyalg RSA -keysize 2048 -validity 3650 \
    -keypass "$TLS_PASS" -dname 'CN=localhost'
  k -certreq -keystore "$tmp/broker.p12" -alias broker -file "$tmp/broker.csr"
  k -gencert -keystore "$tmp/ca.p12" -alias ca -infile "$tmp/broker.csr" -outfile "$tmp/broker.pem" -rfc \
    -validity 3650 -ext san=dns:localhost,ip:127.0.0.1 -ext ku:c=digitalSignature,keyEncipherment -ext eku=serverAuth
  k -importcert -keystore "$tmp/broker.p12" -alias ca -file "$tmp/ca.pem" -noprompt
  k -importcert -keystore "$tmp/broker.p12" -alias broker -file "$tmp/broker.pem"
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

start_broker() {
  mkdir -p "$INSTANCE/log"
  [[ -f $CONSOLE_LOG && $(stat -c %s "$CONSOLE_LOG") -gt 10000000 ]] && mv -f "$CONSOLE_LOG" "$CONSOLE_LOG.1"
  printf '===== %s: starting ActiveMQ Artemis (instance %s) =====\n' "$(date -Is)" "$INSTANCE" >>"$CONSOLE_LOG"
  # setsid + nohup: own session, no controlling terminal, survives this script and the CI step.
  # No inherited descriptor but stdio: the broker must not hold this script's lock (fd 9), nor the
  # lock of whoever ran this script (`flock /tmp/fastmon-suite.lock npm test` passes its lock on to
  # pretest's children: a broker started there held the suite lock for as long as it ran).
  (cd "$INSTANCE" && close_inherited_fds && JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$JAVA")")") exec setsid nohup \
    "$INSTANCE/bin/artemis" run </dev/null >>"$CONSOLE_LOG" 2>&1) &
  LAUNCHER=$!
  say "started the broker (pid $!, log $LOG); waiting for STOMP on $STOMP_HOST:$STOMP_PORT ..."
}

wait_for_stomp() {
  local t0=$SECONDS
  while ((SECONDS - t0 < WAIT_SECONDS)); do
    if stomp_ok "$STOMP_HOST" "$STOMP_PORT"; then
      say "Artemis STOMP answers on $STOMP_HOST:$STOMP_PORT after $((SECONDS - t0)) s" \
        "(prefix-stripping acceptor $STOMP_PREFIX_PORT, core $CORE_PORT)"
      [[ -s $TLS_CA_PEM ]] && say "STOMP+TLS acceptor on $STOMP_HOST:$STOMP_TLS_PORT, CA certificate: $TLS_CA_PEM"
      return 0
    fi
    # bin/artemis is a shell script that execs java: until then only the launcher's pid exists.
    [[ -n $(broker_pids) ]] || kill -0 "$LAUNCHER" 2>/dev/null || { say 'the broker process exited'; break; }
    sleep 0.5
  done
  printf 'artemis.sh: ERROR: no STOMP CONNECTED on %s:%s within %s s. Last lines of %s and %s:\n' \
    "$STOMP_HOST" "$STOMP_PORT" "$WAIT_SECONDS" "$CONSOLE_LOG" "$LOG" >&2
  tail -n 30 "$CONSOLE_LOG" >&2 || true
  tail -n 30 "$LOG" >&2 || true
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
  exec 9>"$dir/fastmon-artemis.lock"
  flock -w 240 9 || die 'another artemis.sh is still running'
}

cmd=${1:-start}
case $cmd in
  status)
    if stomp_ok "$STOMP_HOST" "$STOMP_PORT"; then say "STOMP answers on $STOMP_HOST:$STOMP_PORT"; else say 'STOMP does not answer'; fi
    if stomp_ok "$STOMP_HOST" "$STOMP_PREFIX_PORT"; then
      say "STOMP (prefix stripping) answers on $STOMP_HOST:$STOMP_PREFIX_PORT"
    else say "STOMP (prefix stripping) does not answer on $STOMP_HOST:$STOMP_PREFIX_PORT"; fi
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
      say "Artemis STOMP already answers on $STOMP_HOST:$STOMP_PORT"
      exit 0
    fi
    need_root 'installing, configuring and starting Artemis' "$cmd"
    lock
    if [[ $cmd == start ]] && stomp_ok "$STOMP_HOST" "$STOMP_PORT"; then # started meanwhile
      say "Artemis STOMP already answers on $STOMP_HOST:$STOMP_PORT"
      exit 0
    fi
    JAVA=$(find_java)
    CHANGED=0
    install_distribution
    create_instance
    ensure_tls_material
    ensure_test_user
    configure_xml
    if [[ -n $(broker_pids) ]]; then
      if [[ $cmd == start && $CHANGED == 0 ]]; then
        say 'broker process running but STOMP does not answer yet: giving it 30 s'
        t0=$SECONDS
        while ((SECONDS - t0 < 30)); do
          stomp_ok "$STOMP_HOST" "$STOMP_PORT" && { say "Artemis STOMP answers on $STOMP_HOST:$STOMP_PORT"; exit 0; }
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
