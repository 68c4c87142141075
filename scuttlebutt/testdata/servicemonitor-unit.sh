#!/bin/bash
# ServiceMonitor's systemd unit (shared/seeds/004_*, "Usage: Fleet"), one
# instance, with `scuttlebutt` in place of `docker run skippy/service_monitor`
# and a small HTTP server in place of Elasticsearch. The lines that matter
# are the unit's own, directive by directive. TestServiceMonitorSystemdExample
# runs three of these at once, each against its own agent.
#
# Environment: SB (the scuttlebutt binary), P and I (the unit's %p and %i),
# COREOS_PRIVATE_IPV4 (this "host": 127.0.0.N), SCUTTLEBUTT_ADDR (its agent),
# SERVICE (the command that runs the service; it writes its port to
# $PORT_FILE once it listens), WORK (a directory for what the test reads).
set -u
cd "$WORK"

## block startup process until we can acquire a lease.
## Fail and have SystemD retry if the lease cannot be acquired.
# ExecStartPre=
"$SB" acquire-lease --label=$P --service-id=$P-$I --host-ip=${COREOS_PRIVATE_IPV4} || exit 1
date +%s.%N > lease-acquired

## lets:
##  - get all running cluster hosts;
##  - startup elastic search, linking to cluster hosts, if any!
# ExecStart=
UNICAST_HOSTS=$("$SB" hosts \
		--label=$P \
		--host-ip=${COREOS_PRIVATE_IPV4} \
	| sed "s/$/:9300/" \
	| paste -s -d",")
if [ "$UNICAST_HOSTS" = "" ]; then
	echo "[$P] Initial cluster node"
else
	echo "[$P] Connecting to cluster hosts: $UNICAST_HOSTS"
fi
echo "$UNICAST_HOSTS" > unicast-hosts
PORT_FILE="$WORK/port" $SERVICE &
SERVICE_PID=$!
echo $SERVICE_PID > service.pid
for _ in $(seq 200); do [ -s port ] && break; sleep 0.05; done
PORT=$(cat port) || exit 1

## lets:
##  - after this node is started, remove the lock
##    so the next node can startup.
##  - keep a watch on the health of the instance
# ExecStartPost= (with a 200 ms check interval, for the test's sake)
"$SB" watch \
	--label="$P" \
	--service-id="$P-$I" \
	--host-ip=${COREOS_PRIVATE_IPV4} \
	--monitor-url="http://${COREOS_PRIVATE_IPV4}:$PORT" \
	--service-info="{\"http_port\": $PORT, \"transport_port\": 9300, \"name\": \"$P-$I\"}" \
	--interval=200ms &
echo $! > watch.pid

# The test stops the watch (SIGTERM, as ExecStop's docker stop), then the
# service.
wait
