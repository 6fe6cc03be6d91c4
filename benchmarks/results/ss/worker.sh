#!/bin/bash
# pulls runs from /work/ss/queue.txt until empty. arg: job name
cd /work/run-ss
export PYTHONPATH=/work/run-ss OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 SEGPL_DATA=/work/shared/data
PY=/work/main/.venv/bin/python
mkdir -p benchmarks/results/ss
while true; do
  i=$(flock /work/ss/next.lock bash -c 'i=$(cat /work/ss/next); echo $((i+1)) > /work/ss/next; echo $i')
  line=$(sed -n "$((i+1))p" /work/ss/queue.txt)
  [ -z "$line" ] && break
  read d k s r m <<< "$line"
  echo "$(date -u +%H:%M:%S) start $i $line" >> /work/ss/log.txt
  SEGPL_SAVE_PRED=benchmarks/results/issue23-preds-ss-$r $PY -m benchmarks accuracy --datasets $d --methods $m \
     --seeds $s --labelled $k --recipe $r --threads 1 --out benchmarks/results/ss/$r-$1.json \
     > /work/ss/run-$i.log 2>&1
  echo "$(date -u +%H:%M:%S) end $i rc=$? $line" >> /work/ss/log.txt
done
