# The README's main job, run inside the test VM by `cargo xtask demo`:
# 1. sipp UAC over SCTP -> sipsctpd -> sipp UAS over UDP, then what sipsctpd exposes.
# 2. Why was it slow: sipp UAC over UDP -> sipsctpd -> sipp UAS over SCTP ("carrier-a", in a
#    network namespace, 10 % loss on what the relay sends it), spans to a real OTLP receiver
#    (rotel): one slow INVITE's trace with the kernel's retransmission, and the exporter's
#    metrics.
# $SIPSCTPD (the binary), $CONFIG (its configuration), $CALLS, $ROTEL (rotel-agent) and $UAS_XML
# (a sipp UAS scenario that behaves like a user agent) come from xtask.
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

echo
echo "== part 2: why was it slow? sipp (UDP) -> sipsctpd -> carrier-a (SCTP, 10 % loss upstream)"
ip netns del carrier-a 2>/dev/null
ip netns add carrier-a && ip -n carrier-a link set lo up || fail "cannot create a network namespace"
ip link add sxdemo0 type veth peer name sxdemo1 netns carrier-a || fail "cannot create a veth"
ip addr add 10.79.0.1/24 dev sxdemo0 && ip link set sxdemo0 up
ip -n carrier-a addr add 10.79.0.2/24 dev sxdemo1 && ip -n carrier-a link set sxdemo1 up
tc qdisc add dev sxdemo0 root netem loss 10% || fail "tc netem is missing"
"$ROTEL" start --otlp-grpc-endpoint 127.0.0.1:4317 --otlp-http-endpoint 127.0.0.1:4318 \
  --exporter blackhole --debug-log traces --debug-log-verbosity detailed >/tmp/rotel.out 2>&1 &
ROTEL_PID=$!
ip netns exec carrier-a sipp -sf "$UAS_XML" -default_behaviors all,-abortunexp -t s1 \
  -i 10.79.0.2 -p 5060 -nostdin >/tmp/uas2.out 2>&1 &
UAS2=$!
cat >/tmp/trunk.toml <<'TOML'
[[listen]]
proto = "udp"
addresses = ["127.0.0.1"]
port = 5062

[[listen]]
proto = "sctp"
addresses = ["10.79.0.1"]
port = 5062

[[route]]
name = "carrier-a"
upstream = "sctp:10.79.0.2:5060"

[sctp]
sctp_srto_initial = 300
sctp_srto_min = 100
sctp_srto_max = 1000

[admin]
listen = "127.0.0.1:9461"

[ebpf]
mode = "on"

[otlp]
endpoint = "http://127.0.0.1:4318"
TOML
cat /tmp/trunk.toml | grep -v '^$' | sed 's/^/    /'
"$SIPSCTPD" --config /tmp/trunk.toml 2>/tmp/sipsctpd2.log &
DAEMON=$!
up=0
for _ in $(seq 1 600); do
  curl -sf http://127.0.0.1:9461/health >/dev/null 2>&1 && { up=1; break; }
  sleep 0.1
done
[ $up = 1 ] || { tail -20 /tmp/sipsctpd2.log >&2; fail "sipsctpd (part 2) did not come up"; }
for _ in $(seq 1 600); do
  curl -s http://127.0.0.1:9461/health | grep -q '"kernel":"loading' || break
  sleep 0.1
done
echo "== sipp UAC over UDP: 200 calls at 20/s through carrier-a"
sipp -sn uac -i 127.0.0.1 -p 5072 -t u1 127.0.0.1:5062 -m 200 -r 20 -timeout 90 \
  -timeout_error -default_behaviors all,-abortunexp -nostdin >/tmp/uac2.out 2>&1
rc=$?
grep -E "Successful call|Failed call" /tmp/uac2.out
[ $rc = 0 ] || { grep -v "^\s*$" /tmp/uac2.out | tail -15 >&2; fail "sipp UAC (part 2) failed (exit $rc)"; }
# Transactions are joined after a linger for late kernel events (at most 3 s).
for _ in $(seq 1 100); do
  curl -s http://127.0.0.1:9461/metrics | grep -q '^sipsctp_exporter_transactions_lingering 0$' && break
  sleep 0.1
done
sleep 2
echo "== the exporter's metrics (non-zero; histograms as _count and _sum)"
curl -s http://127.0.0.1:9461/metrics | grep -E \
  '^sipsctp_(sip_transaction_(duration|first_response)_seconds_(count|sum)|sip_transactions_kernel_affected_total|peer_|exporter_|otlp_spans_total|kernel_retransmissions_total)' \
  | grep -v ' 0$'
echo "== GET /transactions/recent?limit=1&kernel=1"
curl -s 'http://127.0.0.1:9461/transactions/recent?limit=1&kernel=1'; echo
echo "== one slow INVITE's trace, as the OTLP receiver (rotel) printed it"
python3 - /tmp/rotel.out <<'PY'
import sys
text = open(sys.argv[1], errors="replace").read()
spans = ["Span #" + b.split("\nResourceSpans #")[0] for b in text.split("\nSpan #")[1:]]
def field(s, k):
    for l in s.splitlines():
        if l.strip().startswith(k):
            return l.split(":", 1)[1].strip()
    return ""
slow = next((s for s in spans if field(s, "Name") == "INVITE" and "sctp.retransmission" in s), None)
if slow is None:
    sys.exit("no INVITE span with a kernel retransmission was received (no loss hit an INVITE?)")
trace = field(slow, "Trace ID")
print("\n".join(s.rstrip() for s in spans if field(s, "Trace ID") == trace and field(s, "Name") == "INVITE"))
PY
echo "== SIGTERM"
kill -TERM $DAEMON
wait $DAEMON
drc=$?
echo "sipsctpd exited $drc"
kill $UAS2 $ROTEL_PID 2>/dev/null
ip netns del carrier-a 2>/dev/null
[ $drc = 0 ] || fail "sipsctpd (part 2) exit code $drc"
