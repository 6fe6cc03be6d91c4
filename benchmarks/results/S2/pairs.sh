#!/bin/bash
# one pair at a time: before and after side by side, seeds from 6 up; none starts after 19:10 UTC
OUT=/work/main/benchmarks/results/S2
for seed in $(seq 6 40); do
  now=$(date -u +%H%M)
  if [ "$now" -ge 1910 ] || [ -e /work/s2/stop ]; then echo "stop before seed $seed at $(date -u)" >> /work/s2/log.txt; break; fi
  echo "seed $seed start $(date -u)" >> /work/s2/log.txt
  (cd /work/s2/before && OMP_NUM_THREADS=1 PYTHONPATH=/work/s2/before /work/main/.venv/bin/python -m benchmarks time_to_mask --cases ct --seeds $seed --threads 1 --out $OUT/before-e299404.json > /work/s2/before-$seed.log 2>&1) &
  (cd /work/s2/after && OMP_NUM_THREADS=1 PYTHONPATH=/work/s2/after /work/main/.venv/bin/python -m benchmarks time_to_mask --cases ct --seeds $seed --threads 1 --out $OUT/after-7750a71.json > /work/s2/after-$seed.log 2>&1) &
  wait
  echo "seed $seed end $(date -u)" >> /work/s2/log.txt
done
