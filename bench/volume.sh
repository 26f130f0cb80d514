#!/usr/bin/env bash
# Volume engine benchmark: fio inside (1) an encrypted ferry volume, (2) the
# same FUSE/loop/ext4 stack over a plain image, (3) a plain directory on the
# same disk, (4) gocryptfs; then the time of each step of a 20 GiB volume's life.
# Prints a markdown report. Run as root from the repository root:
#   cargo build --release -p ferry && bench/volume.sh | tee bench/results-volume.md
# FERRY_BASELINE=/path/to/old/ferry adds the old binary's step times next to
# the new ones (interleaved, same run); BENCH_STEPS_ONLY=1 skips fio.
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY=${FERRY_BIN:-$PWD/target/release/ferry}
[ -x "$FERRY" ] || { echo "build first: cargo build --release -p ferry" >&2; exit 1; }
for t in fio gocryptfs python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
SIZE=${BENCH_SIZE:-512m}     # fio file size
RUNTIME=${BENCH_RUNTIME:-5}  # seconds per random job
REPS=${BENCH_REPS:-3}        # runs per job and setup (median reported)

W=$(mktemp -d /var/tmp/ferry-volbench-XXXXXX)
cleanup() {
  for m in "$W"/enc "$W"/plain; do mountpoint -q "$m" && "$FERRY" volume unmount "$m" || true; done
  mountpoint -q "$W/gc" && fusermount3 -u "$W/gc" || true
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W"/{enc,plain,dir,gc,gc.cipher}
head -c 64 /dev/urandom > "$W/key"

if [ -z "${BENCH_STEPS_ONLY:-}" ]; then
"$FERRY" volume format "$W/enc.img" --size 20GiB --key-file "$W/key"
"$FERRY" volume mount "$W/enc.img" "$W/enc" --key-file "$W/key"
"$FERRY" volume format "$W/plain.img" --size 20GiB --plain
"$FERRY" volume mount "$W/plain.img" "$W/plain" --plain
head -c 32 /dev/urandom | base64 > "$W/gc.pass"
gocryptfs -q -init -scryptn 10 -passfile "$W/gc.pass" "$W/gc.cipher" >/dev/null
gocryptfs -q -passfile "$W/gc.pass" "$W/gc.cipher" "$W/gc"

# name rw bs iodepth extra...
JOBS=(
  "seqwrite write 1M 8 --size=$SIZE"
  "seqread read 1M 8 --size=$SIZE"
  "randread randread 4k 16 --size=$SIZE --time_based --runtime=$RUNTIME"
  "randwrite randwrite 4k 16 --size=$SIZE --time_based --runtime=$RUNTIME"
)
HZ=$(getconf CLK_TCK)
# CPU time (utime+stime, all threads) of the volume server serving setup $1, in ticks.
server_ticks() {
  local p; p=$(pgrep -f "volume serve --image $W/$1.img" | head -1 || true)
  [ -n "$p" ] && awk '{print $14+$15}' "/proc/$p/stat" || echo 0
}
run_fio() { # setup name rw bs depth extra... -> MB/s IOPS server-CPU-us-per-IO
  local t=$1 name=$2 rw=$3 bs=$4 depth=$5; shift 5
  local s0 s1 out
  s0=$(server_ticks "$t")
  out=$(fio --name="$name" --directory="$W/$t" --filename=fio.dat --rw="$rw" --bs="$bs" \
      --iodepth="$depth" --ioengine=libaio --direct=1 --numjobs=1 --group_reporting \
      --output-format=json "$@" 2>/dev/null)
  s1=$(server_ticks "$t")
  python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; s=j["read"] if j["read"]["io_bytes"] else j["write"]
print(s["bw_bytes"]/1e6, s["iops"], (int(sys.argv[2])-int(sys.argv[1]))/int(sys.argv[3])/max(s["total_ios"],1)*1e6)' \
    "$s0" "$s1" "$HZ" <<<"$out"
}
# Other work shares this machine's CPUs and disk, so each job runs REPS
# times, round-robin across the four setups, and the median is reported.
declare -A BW IOPS CPU
for rep in $(seq "$REPS"); do
  for j in "${JOBS[@]}"; do
    set -- $j
    for t in enc plain dir gc; do
      read -r b i c < <(run_fio "$t" "$@")
      BW[$t.$1]+="$b "; IOPS[$t.$1]+="$i "; CPU[$t.$1]+="$c "
    done
  done
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for k in "${!BW[@]}"; do
  BW[$k]=$(median "${BW[$k]}"); IOPS[$k]=$(median "${IOPS[$k]}"); CPU[$k]=$(median "${CPU[$k]}")
done
for t in enc plain dir gc; do rm -f "$W/$t/fio.dat"; done

echo "## Volume engine benchmark"
echo
echo "$(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) CPUs shared with other jobs, fio libaio direct=1, file $SIZE, random jobs ${RUNTIME}s, median of $REPS round-robin runs."
echo "gocryptfs opens its backing files without O_DIRECT, so its reads can be served from the host page cache. The disk is a shared virtual disk: single numbers swing by 2x between runs."
echo
echo "Server CPU: CPU time of the volume server process (all threads) per fio I/O, median; the loop device's kernel worker and fio's own CPU are not in it."
echo
echo "| job | encrypted (MB/s / IOPS) | plain same stack | plain dir | gocryptfs | enc / plain stack | enc / plain dir | enc / gocryptfs | server CPU us/IO enc / plain |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for j in "${JOBS[@]}"; do
  set -- $j; n=$1
  python3 - "$n" "${BW[enc.$n]}" "${IOPS[enc.$n]}" "${BW[plain.$n]}" "${IOPS[plain.$n]}" \
      "${BW[dir.$n]}" "${IOPS[dir.$n]}" "${BW[gc.$n]}" "${IOPS[gc.$n]}" "${CPU[enc.$n]}" "${CPU[plain.$n]}" <<'PY'
import sys
n, *v = sys.argv[1:]
e, ei, p, pi, d, di, g, gi, ec, pc = map(float, v)
c = lambda b, i: f"{b:.0f} / {i:.0f}"
r = lambda a, b: f"{a / b:.2f}" if b else "n/a"
print(f"| {n} | {c(e, ei)} | {c(p, pi)} | {c(d, di)} | {c(g, gi)} | {r(e, p)} | {r(e, d)} | {r(e, g)} | {ec:.1f} / {pc:.1f} |")
PY
done

"$FERRY" volume unmount "$W/enc"
"$FERRY" volume unmount "$W/plain"
rm -f "$W/enc.img" "$W/plain.img"
fi

# Life of a 20 GiB volume, each step timed (median of STEP_REPS), with the
# baseline binary's runs interleaved when FERRY_BASELINE is set.
STEP_REPS=${BENCH_STEP_REPS:-9}
ms() { local s=$(date +%s%N); "$@"; echo $(( ($(date +%s%N) - s) / 1000000 )); }
declare -A F M U S T
BINS=(new)
[ -n "${FERRY_BASELINE:-}" ] && BINS=(old new)
for i in $(seq "$STEP_REPS"); do
  for b in "${BINS[@]}"; do
    bin=$FERRY; [ "$b" = old ] && bin=$FERRY_BASELINE
    f=$(ms "$bin" volume format "$W/t.img" --size 20GiB --key-file "$W/key")
    m=$(ms "$bin" volume mount "$W/t.img" "$W/enc" --key-file "$W/key")
    F[$b]+="$f "; M[$b]+="$m "; T[$b]+="$((f + m)) "
    U[$b]+="$(ms "$bin" volume unmount "$W/enc") "
    S[$b]+="$(ms "$bin" volume shred "$W/t.img") "
  done
done
med() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
row() { # label array
  local -n a=$2; local line="| $1 |"
  for b in "${BINS[@]}"; do line+=" $(med "${a[$b]}") |"; done
  echo "$line"
}
echo
echo "Volume steps, median of $STEP_REPS runs${FERRY_BASELINE:+ (baseline and this build interleaved)}:"
echo
if [ ${#BINS[@]} -eq 2 ]; then
  echo "| 20 GiB volume step | baseline ms | this build ms |"
  echo "|---|---:|---:|"
else
  echo "| 20 GiB volume step | ms |"
  echo "|---|---:|"
fi
row "format (create LUKS2, sparse)" F
row "mount (unlock, FUSE, loop, mkfs.ext4, mount)" M
row "create + mount" T
row "unmount (ext4, loop, server)" U
row "shred (wipe header+keyslots, delete)" S
