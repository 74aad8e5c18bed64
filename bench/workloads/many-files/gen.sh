#!/bin/sh
# gen.sh DIR: 100 dirs x 200 files x 5 KiB of /dev/urandom, then DIR/big.bin (100 MiB). Two writers (2 cores).
set -e
D="$1"; mkdir -p "$D"
gen() {
  i=$1
  while [ $i -lt 100 ]; do
    mkdir "$D/d$i"; j=0
    while [ $j -lt 200 ]; do head -c 5120 /dev/urandom > "$D/d$i/f$j"; j=$((j+1)); done
    i=$((i+2))
  done
}
gen 0 & a=$!
gen 1 & b=$!
wait $a; wait $b
head -c 104857600 /dev/urandom > "$D/big.bin"
