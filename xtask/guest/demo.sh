# The README's main job, run inside the test VM by `cargo xtask demo`:
# sipp UAC over SCTP -> sipsctpd -> sipp UAS over UDP, then what sipsctpd exposes.
# $SIPSCTPD (the binary), $CONFIG (its configuration) and $CALLS come from xtask.
set -u
cd /tmp
fail() { echo "demo: $*" >&2; [ -f /tmp/sipsctpd.log ] && tail -20 /tmp/sipsctpd.log >&2; exit 1; }
command -v sipp >/dev/null || fail "sipp is missing (cargo xtask setup installs sip-tester)"
echo "== sipp UAS on udp:127.0.0.1:5080 (the SIP server behind the relay)"
sipp -sn uas -i 127.0.0.1 -p 5080 -t u1 -nostdin >/tmp/uas.out 2>&1 &
UAS=$!
echo "== sipsctpd --config $CONFIG"
"$SIPSCTPD" --config "$CONFIG" 2>/tmp/sipsctpd.log &
DAEMON=$!
up=0
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:9460/health >/dev/null 2>&1 && { up=1; break; }
  sleep 0.1
done
[ $up = 1 ] || fail "sipsctpd did not come up"
# In mode auto the probes attach in the background (seconds under emulation): wait for them,
# so that the kernel metrics below cover every call.
for _ in $(seq 1 600); do
  curl -s http://127.0.0.1:9460/health | grep -q '"kernel":"loading' || break
  sleep 0.1
done
curl -s http://127.0.0.1:9460/health; echo
echo "== sipp UAC over SCTP (one association per call, -t sn): $CALLS INVITE/ACK/BYE calls"
# -t sn: a socket per call; -l caps concurrent calls below -max_socket.
ulimit -n 4096 2>/dev/null
sipp -sn uac -i 127.0.0.1 -p 5070 -t sn -max_socket 200 -l 60 127.0.0.1:5060 \
  -m "$CALLS" -r 50 -timeout 60 -timeout_error -nostdin >/tmp/uac.out 2>&1
rc=$?
grep -E "Successful call|Failed call" /tmp/uac.out
[ $rc = 0 ] || { grep -v "^\s*$" /tmp/uac.out | tail -15 >&2; fail "sipp UAC failed (exit $rc)"; }
echo "== GET /sctp/info"
curl -s http://127.0.0.1:9460/sctp/info; echo
echo "== GET /metrics (non-zero sipsctp_ series)"
curl -s http://127.0.0.1:9460/metrics | grep '^sipsctp_' | grep -v ' 0$' | grep -v '_bucket'
echo "== SIGTERM"
kill -TERM $DAEMON
wait $DAEMON
drc=$?
tail -3 /tmp/sipsctpd.log
echo "sipsctpd exited $drc"
kill $UAS 2>/dev/null
[ $drc = 0 ] || fail "sipsctpd exit code $drc"
