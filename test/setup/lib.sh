# Sourced by the set-up scripts of this folder (activemq.sh, artemis.sh, postgres.sh): messages, root and
# lock checks, starting a service detached from whoever ran the script, STOMP probes, test certificates,
# and broker_main, the start | stop | restart | status of a test broker. Needs bash, coreutils, util-linux.

SCRIPT=${0##*/}

say() { printf '%s: %s\n' "$SCRIPT" "$*"; }
die() { printf '%s: ERROR: %s\n' "$SCRIPT" "$*" >&2; exit 1; }

need_root() {
  [[ $(id -u) == 0 ]] && return
  die "$1 needs root. Run: sudo bash $0 ${2:-}"
}

# Serialises runs of one script (fd 9) for at most $2 seconds: take_lock NAME SECONDS.
take_lock() {
  local dir=/run
  [[ -d $dir && -w $dir ]] || dir=/tmp
  exec 9>"$dir/fastmon-$1.lock"
  flock -w "$2" 9 || die "another $SCRIPT is still running"
}

# Closes every descriptor above stderr in the current (sub)shell.
close_inherited_fds() {
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
}

# Runs `COMMAND...` in the background in DIR with its output appended to LOG: `launch DIR LOG COMMAND...`;
# LAUNCHER is its pid. setsid + nohup: own session, no controlling terminal, survives this script and the CI
# step. No inherited descriptor but stdio: the service must not hold this script's lock (fd 9), nor the
# lock of whoever ran this script (`flock /tmp/fastmon-suite.lock npm test` passes its lock on to
# pretest's children: a broker started there held the suite lock for as long as it ran).
launch() {
  local dir=$1 log=$2
  shift 2
  (cd "$dir" && close_inherited_fds && exec setsid nohup "$@" </dev/null >>"$log" 2>&1) &
  LAUNCHER=$!
}

# True when host:port answers a STOMP 1.1/1.2 CONNECT with CONNECTED (bash /dev/tcp + coreutils only).
# The test brokers' account is admin/admin.
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

# PIDs of the processes whose command line (arguments joined by spaces, with a space before and after)
# contains every one of the given strings.
pids_with_args() {
  local f cmd s
  local -a argv
  for f in /proc/[0-9]*/cmdline; do
    mapfile -d '' -t argv 2>/dev/null <"$f" || continue
    cmd=" ${argv[*]} "
    for s; do [[ $cmd == *"$s"* ]] || continue 2; done
    f=${f#/proc/}
    echo "${f%/cmdline}"
  done
  return 0
}

# A self-signed test CA (common name $2) and a key pair for CN=localhost, IP 127.0.0.1, signed by it, written
# into directory $1 as PKCS#12 files with password $TLS_PASS: ca.p12, ca.pem, broker.p12 (the key, its
# certificate and the CA) and truststore.p12 (the CA). Returns 1 when there is no keytool beside $JAVA or on PATH.
make_test_certificates() {
  local dir=$1 ca_name=$2 kt
  kt="$(dirname "$(readlink -f "$JAVA")")/keytool"
  [[ -x $kt ]] || kt=$(command -v keytool) || return 1
  say 'generating the test CA and broker certificate (keytool) ...'
  k() { "$kt" "$1" -storetype PKCS12 -storepass "$TLS_PASS" "${@:2}" 2>"$dir/err" || die "keytool $1: $(cat "$dir/err")"; }
  k -genkeypair -keystore "$dir/ca.p12" -alias ca -keyalg RSA -keysize 2048 -validity 3650 \
    -keypass "$TLS_PASS" -dname "CN=$ca_name" -ext bc:c=ca:true -ext ku:c=keyCertSign,cRLSign
  k -exportcert -keystore "$dir/ca.p12" -alias ca -rfc -file "$dir/ca.pem"
  k -genkeypair -keystore "$dir/broker.p12" -alias broker -keyalg RSA -keysize 2048 -validity 3650 \
    -keypass "$TLS_PASS" -dname 'CN=localhost'
  k -certreq -keystore "$dir/broker.p12" -alias broker -file "$dir/broker.csr"
  k -gencert -keystore "$dir/ca.p12" -alias ca -infile "$dir/broker.csr" -outfile "$dir/broker.pem" -rfc \
    -validity 3650 -ext san=dns:localhost,ip:127.0.0.1 -ext ku:c=digitalSignature,keyEncipherment -ext eku=serverAuth
  k -importcert -keystore "$dir/broker.p12" -alias ca -file "$dir/ca.pem" -noprompt
  k -importcert -keystore "$dir/broker.p12" -alias broker -file "$dir/broker.pem"
  k -importcert -keystore "$dir/truststore.p12" -alias ca -file "$dir/ca.pem" -noprompt
}

# ---------------------------------------------------------------------------------------------------------
# A test broker's commands. The script sets BROKER (its name in messages), STOMP_HOST, STOMP_PORT, LOG,
# BROKER_LOGS (an array: what to show when it does not start), WAIT_SECONDS (for STOMP after a start),
# GRACE_SECONDS (for a running broker that does not answer yet), LOCK_SECONDS, and defines:
#   broker_pids       the pids of the broker's JVM
#   configure_broker  install and configure; sets CHANGED=1 when a running broker has not loaded the change
#   start_broker      start it in the background (through `launch`)
#   broker_ready      extra lines once STOMP answers (TLS, other acceptors)
#   broker_status     extra lines of `status`

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

wait_for_stomp() {
  local t0=$SECONDS log
  while ((SECONDS - t0 < WAIT_SECONDS)); do
    if stomp_ok "$STOMP_HOST" "$STOMP_PORT"; then
      say "$BROKER STOMP answers on $STOMP_HOST:$STOMP_PORT after $((SECONDS - t0)) s"
      broker_ready
      return 0
    fi
    # A launcher script (Artemis's bin/artemis) execs java: until then only the launcher's pid exists.
    [[ -n $(broker_pids) ]] || kill -0 "$LAUNCHER" 2>/dev/null || { say 'the broker process exited'; break; }
    sleep 0.5
  done
  printf '%s: ERROR: no STOMP CONNECTED on %s:%s within %s s. Last lines of %s:\n' \
    "$SCRIPT" "$STOMP_HOST" "$STOMP_PORT" "$WAIT_SECONDS" "${BROKER_LOGS[*]}" >&2
  for log in "${BROKER_LOGS[@]}"; do tail -n $((60 / ${#BROKER_LOGS[@]})) "$log" >&2 || true; done
  exit 1
}

# Answers STOMP already: with `say`, for the start paths.
already_answers() {
  stomp_ok "$STOMP_HOST" "$STOMP_PORT" || return 1
  say "$BROKER STOMP already answers on $STOMP_HOST:$STOMP_PORT"
}

# broker_main [start|stop|restart|status]: `start` is a quick no-op when STOMP answers. Idempotent.
broker_main() {
  local cmd=${1:-start} pids t0
  case $cmd in
    status)
      if stomp_ok "$STOMP_HOST" "$STOMP_PORT"; then say "STOMP answers on $STOMP_HOST:$STOMP_PORT"; else say 'STOMP does not answer'; fi
      broker_status
      pids=$(broker_pids)
      say "broker pid(s): ${pids:-none}; log: $LOG" # the chaos tests read the pid from this line
      [[ -n $pids ]]
      ;;
    stop)
      need_root 'stopping the broker' stop
      take_lock "$LOCK_NAME" "$LOCK_SECONDS"
      stop_broker
      ;;
    start | restart)
      [[ $cmd == start ]] && already_answers && exit 0
      need_root "installing, configuring and starting $BROKER" "$cmd"
      take_lock "$LOCK_NAME" "$LOCK_SECONDS"
      [[ $cmd == start ]] && already_answers && exit 0 # started meanwhile
      CHANGED=0
      configure_broker
      if [[ -n $(broker_pids) ]]; then
        if [[ $cmd == start && $CHANGED == 0 ]]; then
          say "broker process running but STOMP does not answer yet: giving it $GRACE_SECONDS s"
          t0=$SECONDS
          while ((SECONDS - t0 < GRACE_SECONDS)); do
            stomp_ok "$STOMP_HOST" "$STOMP_PORT" && { say "$BROKER STOMP answers on $STOMP_HOST:$STOMP_PORT"; exit 0; }
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
}
