#!/bin/bash
# Run a kernel over an emulated interconnect: jobs/interconnect.sh LINK -- KERNEL [flags]
#
# LINK is one of
#   shm                    2 ranks, MPICH's shared memory between two processes on this machine
#   tcp                    2 ranks, MPICH over TCP on loopback (libfabric's tcp provider)
#   veth:RATE[:DELAY_US]   2 ranks in two network namespaces joined by a veth pair, each end
#                          shaped to RATE (tc tbf, e.g. 1gbit, 100mbit); DELAY_US adds a one-way
#                          delay in microseconds with netem or, where the kernel has no netem,
#                          with iptables NFQUEUE and jobs/nfq_delay.py holding the packets
#   two-level:NODESxRANKS:RATE[:DELAY_US]
#                          NODES emulated nodes (namespaces) of RANKS ranks each: shared memory
#                          inside a node, and each node's link to a switch (a bridge in a
#                          namespace of its own) shaped to RATE in both directions; DELAY_US
#                          delays everything a node sends. MPI sees NODES hosts, so
#                          MPI_COMM_TYPE_SHARED splits the ranks by namespace
#   uneven:RATE[@DELAY_US],RATE[@DELAY_US],...
#                          one rank per namespace on the same switch, rank i's link shaped to
#                          the i-th RATE (and its sends delayed by the i-th DELAY_US), e.g.
#                          uneven:100mbit,10gbit,10gbit,10gbit
# The run is tagged LINK unless the kernel flags give --tag. The namespace links need root;
# the namespaces are created here, with unique names, and removed on exit, also when the
# kernel fails. Those links export HPCOPT_TOPOLOGY (JSON: nodes, their ranks, rates, delays),
# which every kernel records in its log's metadata (meta "topology").
# MPIEXEC_TIMEOUT (default 600 s) ends a job that hangs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

IFACE=hpc0
SUBNET=198.18.0 # RFC 2544 benchmarking range, used only inside the namespaces
JOBS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=""
CREATED=()
HOLDERS=()
WORKDIR=""
LAUNCHER_PID=""
PPN=1
NODE_RATES=()
NODE_DELAYS=()
NODE_NS=()

usage() {
    die "usage: ${0##*/} shm|tcp|veth:RATE[:DELAY_US]|two-level:NODESxRANKS:RATE[:DELAY_US]|uneven:RATE[@DELAY_US],... -- KERNEL [kernel flags]"
}

# With HPCOPT_LINK_BYTES=FILE: one line per node link, "NODE TX_BYTES RX_BYTES", as counted
# by the node's end of its link (IP packets with headers, the kernel's traffic and any other).
save_link_bytes() {
    local i stats
    [[ -n ${HPCOPT_LINK_BYTES:-} ]] || return 0
    for i in ${NODE_NS[@]+"${!NODE_NS[@]}"}; do
        stats=/sys/class/net/$IFACE/statistics
        ip netns exec "${NODE_NS[i]}" sh -c "echo $i \$(cat $stats/tx_bytes) \$(cat $stats/rx_bytes)" \
            >>"$HPCOPT_LINK_BYTES" 2>/dev/null || true
    done
}

# Remove what this run created: delay holders, namespaces (and so the links), temp folder.
cleanup() {
    local ns pid
    for pid in $LAUNCHER_PID ${HOLDERS[@]+"${HOLDERS[@]}"}; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    save_link_bytes
    for ns in ${CREATED[@]+"${CREATED[@]}"}; do
        ip netns del "$ns" 2>/dev/null || true
    done
    [[ -z $WORKDIR ]] || rm -rf "$WORKDIR"
}

# Run a launcher in the background and wait, so a signal to this script reaches cleanup now.
launch() {
    "$@" &
    LAUNCHER_PID=$!
    wait "$LAUNCHER_PID"
}

# Bits per second in a tc rate such as 1gbit, 2.5gbit or 100mbit (k, m, g, t are powers of 1000).
rate_bits() {
    [[ $1 =~ ^([0-9]+(\.[0-9]+)?)([kmgt]?)bit$ ]] ||
        die "bad rate '$1': use a number and kbit, mbit, gbit or tbit, e.g. 1gbit"
    local scale
    case ${BASH_REMATCH[3]} in
    k) scale=1e3 ;; m) scale=1e6 ;; g) scale=1e9 ;; t) scale=1e12 ;; *) scale=1 ;;
    esac
    awk -v n="${BASH_REMATCH[1]}" -v s="$scale" 'BEGIN { printf "%.0f", n * s }'
}

# Token bucket size in bytes: 2 ms at the rate, at least 64 KiB (one GSO packet).
burst_bytes() {
    awk -v b="$1" 'BEGIN { x = b / 8 * 0.002; printf "%.0f", (x < 65536 ? 65536 : x) }'
}

# Shape egress of the link end in namespace NS to RATE, under qdisc PARENT (root or parent 1:1).
shape() {
    local ns=$1 rate=$2 burst
    shift 2
    burst=$(burst_bytes "$(rate_bits "$rate")")
    tc -n "$ns" qdisc add dev "$IFACE" "$@" handle 2: tbf rate "$rate" burst "$burst" latency 50ms
}

# Delay egress in NS by DELAY_US with netem; fails where the kernel has no netem.
netem_delay() {
    tc -n "$1" qdisc add dev "$IFACE" root handle 1: netem delay "$2us" 2>/dev/null
}

# Delay egress in NS by DELAY_US: iptables queues the packets to nfq_delay.py, which holds them.
queue_delay() {
    local ns=$1 delay_us=$2 ready=$WORKDIR/ready-$1 i
    command -v iptables >/dev/null ||
        die "DELAY_US needs netem (CONFIG_NET_SCH_NETEM) or iptables for an NFQUEUE delay; install iptables"
    ip netns exec "$ns" "$PYTHON" "$JOBS/nfq_delay.py" --delay-us "$delay_us" --ready "$ready" &
    HOLDERS+=($!)
    for i in $(seq 50); do
        [[ -e $ready ]] || ! kill -0 "${HOLDERS[-1]}" 2>/dev/null && break
        sleep 0.1
    done
    [[ -e $ready ]] || die "the NFQUEUE delay holder in $ns did not start"
    ip netns exec "$ns" iptables -A OUTPUT -o "$IFACE" -j NFQUEUE --queue-num 0
}

# Shape NS's end to RATE and delay it by DELAY_US: netem first, else an NFQUEUE holder.
shape_and_delay() {
    local ns=$1 rate=$2 delay_us=$3
    if ((delay_us > 0)) && netem_delay "$ns" "$delay_us"; then
        shape "$ns" "$rate" parent 1:1
        return
    fi
    shape "$ns" "$rate" root
    ((delay_us == 0)) || queue_delay "$ns" "$delay_us"
}

# Wait until the link is up in every namespace given (a veth end is up once its peer is).
wait_up() {
    local i ns state want
    want=$(printf 'up%.0s' "$@")
    for i in $(seq 100); do
        state=""
        for ns in "$@"; do
            state+=$(ip netns exec "$ns" cat "/sys/class/net/$IFACE/operstate")
        done
        [[ $state == "$want" ]] && return 0
        sleep 0.1
    done
    die "the veth link did not come up within 10 s"
}

# Two namespaces NS_A and NS_B joined by a shaped veth pair named $IFACE in both.
make_link() {
    local ns_a=$1 ns_b=$2 rate=$3 delay_us=$4 ns host=1
    for ns in "$ns_a" "$ns_b"; do
        ip netns add "$ns" || die "cannot create network namespace $ns"
        CREATED+=("$ns")
    done
    ip link add "h$$a" netns "$ns_a" type veth peer name "h$$b" netns "$ns_b"
    ip -n "$ns_a" link set "h$$a" name "$IFACE"
    ip -n "$ns_b" link set "h$$b" name "$IFACE"
    for ns in "$ns_a" "$ns_b"; do
        ip -n "$ns" addr add "$SUBNET.$host/30" dev "$IFACE"
        ip -n "$ns" link set lo up
        # An interconnect keeps its speed between messages: no TCP slow start after idle.
        ip netns exec "$ns" sysctl -qw net.ipv4.tcp_slow_start_after_idle=0
        ip -n "$ns" link set "$IFACE" up
        shape_and_delay "$ns" "$rate" "$delay_us"
        host=$((host + 1))
    done
    wait_up "$ns_a" "$ns_b"
}

# A hydra launcher that starts a proxy for host $SUBNET.1 or .2 in NS_A or NS_B.
write_launcher() {
    local path=$1 ns_a=$2 ns_b=$3
    cat >"$path" <<SCRIPT
#!/bin/bash
# Called by hydra as: $path [ssh options] HOST COMMAND
set -euo pipefail
while [[ \$1 == -* ]]; do shift; done
case \$1 in
$SUBNET.1) ns=$ns_a ;;
$SUBNET.2) ns=$ns_b ;;
*) echo "\$0: unknown host \$1" >&2; exit 1 ;;
esac
shift
exec ip netns exec "\$ns" sh -c "\$*"
SCRIPT
    chmod +x "$path"
}

# Run PYTHON KERNEL ARGS on two ranks, one per namespace, over a veth link shaped by SPEC.
run_veth() {
    local spec=$1 mpiexec=$2
    shift 2
    [[ $EUID -eq 0 ]] || die "veth links need root (network namespaces, tc)"
    local rate delay_us ns_a ns_b
    IFS=: read -r rate delay_us <<<"$spec"
    delay_us=${delay_us:-0}
    [[ $delay_us =~ ^[0-9]+$ ]] || die "bad DELAY_US '$delay_us': microseconds as an integer"
    rate_bits "$rate" >/dev/null
    ns_a=hpcopt-$$-$RANDOM-a
    ns_b=${ns_a%-a}-b
    WORKDIR=$(mktemp -d)
    make_link "$ns_a" "$ns_b" "$rate" "$delay_us"
    NODE_NS=("$ns_a" "$ns_b")
    write_launcher "$WORKDIR/netns-exec" "$ns_a" "$ns_b"
    export FI_TCP_IFACE=$IFACE
    launch ip netns exec "$ns_a" "$mpiexec" -launcher ssh -launcher-exec "$WORKDIR/netns-exec" \
        -iface "$IFACE" -hosts "$SUBNET.1,$SUBNET.2" -ppn 1 -n 2 "$@"
}

# The topology as JSON for HPCOPT_TOPOLOGY: kind, spec, ranks per node and one entry per node.
topology_json() {
    local kind=$1 spec=$2 ppn=$3 i r nodes="" ranks
    for i in "${!NODE_RATES[@]}"; do
        ranks=""
        for ((r = i * ppn; r < (i + 1) * ppn; r++)); do ranks+="${ranks:+,}$r"; done
        nodes+="${nodes:+,}{\"node\":$i,\"namespace\":\"${NODE_NS[i]}\",\"address\":\"$SUBNET.$((i + 1))\","
        nodes+="\"ranks\":[$ranks],\"rate\":\"${NODE_RATES[i]}\",\"rate_bps\":$(rate_bits "${NODE_RATES[i]}"),"
        nodes+="\"delay_us\":${NODE_DELAYS[i]}}"
    done
    printf '{"kind":"%s","spec":"%s","ranks_per_node":%d,"shaping":"tc tbf on both ends of each node link to a bridge","nodes":[%s]}' \
        "$kind" "$spec" "$ppn" "$nodes"
}

# NODE_RATES/NODE_DELAYS and the ranks per node of two-level:NODESxRANKS:RATE[:DELAY_US].
parse_two_level() {
    local spec=$1 shape rate delay_us nodes i
    IFS=: read -r shape rate delay_us <<<"$spec"
    [[ $shape =~ ^([1-9][0-9]*)x([1-9][0-9]*)$ ]] ||
        die "bad two-level shape '$shape': NODESxRANKS, e.g. 2x2"
    nodes=${BASH_REMATCH[1]}
    PPN=${BASH_REMATCH[2]}
    ((nodes >= 2 && nodes <= 64)) || die "two-level needs 2 to 64 nodes, got $nodes"
    [[ -n $rate ]] || die "two-level needs a RATE: two-level:NODESxRANKS:RATE[:DELAY_US]"
    rate_bits "$rate" >/dev/null
    delay_us=${delay_us:-0}
    [[ $delay_us =~ ^[0-9]+$ ]] || die "bad DELAY_US '$delay_us': microseconds as an integer"
    for ((i = 0; i < nodes; i++)); do
        NODE_RATES+=("$rate")
        NODE_DELAYS+=("$delay_us")
    done
}

# NODE_RATES/NODE_DELAYS of uneven:RATE[@DELAY_US],... (one rank per node).
parse_uneven() {
    local item rate delay_us items
    PPN=1
    IFS=, read -ra items <<<"$1"
    ((${#items[@]} >= 2 && ${#items[@]} <= 64)) || die "uneven needs 2 to 64 rates, got '${1}'"
    for item in "${items[@]}"; do
        rate=${item%@*}
        delay_us=0
        [[ $item == *@* ]] && delay_us=${item#*@}
        rate_bits "$rate" >/dev/null
        [[ $delay_us =~ ^[0-9]+$ ]] || die "bad DELAY_US '$delay_us' in '$item': microseconds as an integer"
        NODE_RATES+=("$rate")
        NODE_DELAYS+=("$delay_us")
    done
}

# A switch namespace with a bridge, and one namespace per node whose $IFACE is linked to it.
make_star() {
    local base=$1 sw=$1-sw i ns
    ip netns add "$sw" || die "cannot create network namespace $sw"
    CREATED+=("$sw")
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
    for i in "${!NODE_RATES[@]}"; do
        ns=$base-n$i
        ip netns add "$ns" || die "cannot create network namespace $ns"
        CREATED+=("$ns")
        NODE_NS+=("$ns")
        ip link add "p$i" netns "$sw" type veth peer name "$IFACE" netns "$ns"
        ip -n "$sw" link set "p$i" master br0
        ip -n "$sw" link set "p$i" up
        ip -n "$ns" addr add "$SUBNET.$((i + 1))/24" dev "$IFACE"
        ip -n "$ns" link set lo up
        ip netns exec "$ns" sysctl -qw net.ipv4.tcp_slow_start_after_idle=0
        ip -n "$ns" link set "$IFACE" up
        tc -n "$sw" qdisc add dev "p$i" root handle 2: tbf rate "${NODE_RATES[i]}" \
            burst "$(burst_bytes "$(rate_bits "${NODE_RATES[i]}")")" latency 50ms
        shape_and_delay "$ns" "${NODE_RATES[i]}" "${NODE_DELAYS[i]}"
    done
    wait_up "${NODE_NS[@]}"
}

# A hydra launcher that starts the proxy for host $SUBNET.(i+1) in node i's namespace.
write_star_launcher() {
    local path=$1 i cases=""
    for i in "${!NODE_NS[@]}"; do cases+="$SUBNET.$((i + 1))) ns=${NODE_NS[i]} ;;"$'\n'; done
    cat >"$path" <<SCRIPT
#!/bin/bash
# Called by hydra as: $path [ssh options] HOST COMMAND
set -euo pipefail
while [[ \$1 == -* ]]; do shift; done
case \$1 in
$cases*) echo "\$0: unknown host \$1" >&2; exit 1 ;;
esac
shift
exec ip netns exec "\$ns" sh -c "\$*"
SCRIPT
    chmod +x "$path"
}

# Run PYTHON KERNEL ARGS on a star of namespaces: two-level:... or uneven:...
run_star() {
    local link=$1 mpiexec=$2 kind=${1%%:*} spec=${1#*:} base hosts="" i
    shift 2
    [[ $EUID -eq 0 ]] || die "$kind topologies need root (network namespaces, tc)"
    if [[ $kind == two-level ]]; then parse_two_level "$spec"; else parse_uneven "$spec"; fi
    base=hpcopt-$$-$RANDOM
    WORKDIR=$(mktemp -d)
    make_star "$base"
    write_star_launcher "$WORKDIR/netns-exec"
    for i in "${!NODE_NS[@]}"; do hosts+="${hosts:+,}$SUBNET.$((i + 1))"; done
    HPCOPT_TOPOLOGY=$(topology_json "$kind" "$link" "$PPN")
    export HPCOPT_TOPOLOGY FI_TCP_IFACE=$IFACE
    launch ip netns exec "${NODE_NS[0]}" "$mpiexec" -launcher ssh \
        -launcher-exec "$WORKDIR/netns-exec" -iface "$IFACE" -hosts "$hosts" -ppn "$PPN" \
        -n $((${#NODE_NS[@]} * PPN)) "$@"
}

main() {
    [[ $# -ge 2 ]] || usage
    local link=$1 root python mpiexec kernel
    shift
    [[ $1 == -- ]] && shift
    [[ $# -ge 1 ]] || usage
    [[ $link =~ ^(shm|tcp|veth:.+|two-level:.+|uneven:.+)$ ]] ||
        die "unknown link '$link': use shm, tcp, veth:RATE[:DELAY_US], two-level:NODESxRANKS:RATE[:DELAY_US] or uneven:RATE[@DELAY_US],..."
    root=$(hpcopt_root)
    python=$(find_python "$root")
    PYTHON=$python
    mpiexec=$(find_mpiexec "$python")
    kernel=$(kernel_file "$root" "$1")
    shift
    has_flag --tag "$@" || set -- "$@" --tag "$link"
    cd "$root"
    export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
    export MPIEXEC_TIMEOUT=${MPIEXEC_TIMEOUT:-600}
    case $link in
    shm) launch "$mpiexec" -n 2 "$python" -m mpi4py "$kernel" "$@" ;;
    tcp | veth:*)
        export MPIR_CVAR_NOLOCAL=1 MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp
        if [[ $link == tcp ]]; then
            launch "$mpiexec" -n 2 "$python" -m mpi4py "$kernel" "$@"
        else
            run_veth "${link#veth:}" "$mpiexec" "$python" -m mpi4py "$kernel" "$@"
        fi
        ;;
    two-level:* | uneven:*)
        # Hydra's hosts are the nodes: shared memory inside one, TCP on $IFACE between them.
        export MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp
        run_star "$link" "$mpiexec" "$python" -m mpi4py "$kernel" "$@"
        ;;
    esac
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
main "$@"
