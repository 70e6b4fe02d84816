#!/usr/bin/env bash
# The first GPU run: a few hundred steps of the base model in bf16 (tokens/s, model TFLOP/s and MFU), the same with
# compile=true, a resume after SIGTERM, and a beam-search decode; one summary table at the end. Under 8 minutes on
# one H100/H200-class GPU. Run from the repository root with the environment active:
#     bash benchmarks/gpu_check.sh                    # on the GPU machine
#     HARDWARE=cpu MODEL=tiny STEPS=20 bash benchmarks/gpu_check.sh   # a dry run of the script itself on a CPU
# hardware=fsdp runs on one device here (sharding over one rank: the code path, its speed and its checkpoints).
set -euo pipefail
HARDWARE=${HARDWARE:-gpu}
MODEL=${MODEL:-base}
STEPS=${STEPS:-300}
OUT=${OUT:-$(mktemp -d -t gpu-check-XXXX)}
PY=${PY:-python}
COMMON=(task=translation "model=$MODEL" "hardware=$HARDWARE" "trainer.max_steps=$STEPS" trainer.max_epochs=-1
  trainer.log_every_n_steps=10 trainer.num_sanity_val_steps=0 +trainer.limit_val_batches=2
  +trainer.limit_test_batches=0 batching.max_tokens=16384 logger=csv "~callbacks.progress_bar"
  "paths.cache_dir=$OUT/cache" dataset.max_examples=50000)
mkdir -p "$OUT"
echo "gpu_check: $MODEL, $STEPS steps, hardware=$HARDWARE, output in $OUT"
$PY -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"

run() {  # name, extra overrides...: one training run, its wall time in $OUT/<name>.seconds
  local name=$1; shift
  local start=$SECONDS
  $PY scripts/train.py "${COMMON[@]/#hardware=*/hardware=${RUN_HARDWARE:-$HARDWARE}}" "hydra.run.dir=$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 || echo "exit $?" >> "$OUT/$name.status"
  echo $((SECONDS - start)) > "$OUT/$name.seconds"
}

$PY scripts/prepare_data.py task=translation dataset.max_examples=50000 "paths.cache_dir=$OUT/cache" > "$OUT/prepare.log" 2>&1
run eager
run compiled compile=true
FSDP_ARGS=(trainer.devices=1)
[ "$HARDWARE" = cpu ] && FSDP_ARGS+=(trainer.accelerator=cpu)
RUN_HARDWARE=fsdp run fsdp "${FSDP_ARGS[@]}"

# resume after SIGTERM: stop the run once it has saved a step checkpoint, relaunch the same command
RESUME=("${COMMON[@]}" "hydra.run.dir=$OUT/resume" run_name=resume checkpoint.every_n_steps=$((STEPS / 3)))
start=$SECONDS
$PY scripts/train.py "${RESUME[@]}" > "$OUT/resume-1.log" 2>&1 & pid=$!
until ls "$OUT"/resume/checkpoints/step*.ckpt > /dev/null 2>&1 || ! kill -0 $pid 2> /dev/null; do sleep 1; done
kill -TERM $pid 2> /dev/null || true
set +e; wait $pid; echo $? > "$OUT/resume.first_exit"; set -e
$PY scripts/train.py "${RESUME[@]}" > "$OUT/resume-2.log" 2>&1 || echo "exit $?" >> "$OUT/resume.status"
echo $((SECONDS - start)) > "$OUT/resume.seconds"

start=$SECONDS
$PY scripts/evaluate.py "ckpt=$OUT/eager/checkpoints/last.ckpt" split=test decoding.beam_size=5 \
  "paths.cache_dir=$OUT/cache" "output_dir=$OUT/beam" > "$OUT/beam.log" 2>&1 || echo "exit $?" >> "$OUT/beam.status"
echo $((SECONDS - start)) > "$OUT/beam.seconds"

$PY - "$OUT" "$STEPS" <<'EOF'
import csv, json, statistics, sys
from pathlib import Path

out, steps = Path(sys.argv[1]), int(sys.argv[2])


def train_row(name):
    metrics = out / name / "csv" / "metrics.csv"
    status = (out / f"{name}.status").read_text().strip() if (out / f"{name}.status").exists() else "ok"
    if not metrics.exists():
        return [name, status, "-", "-", "-", (out / f"{name}.seconds").read_text().strip() + " s"]
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("train/tokens_per_sec")]
    later = rows[len(rows) // 3 :] or rows  # leave out the first third: warm-up, compilation
    median = lambda key: statistics.median(float(r[key]) for r in later if r.get(key))  # noqa: E731
    mfu = f"{100 * median('train/mfu'):.1f}%" if any(r.get("train/mfu") for r in later) else "n/a"
    return [name, status, f"{median('train/tokens_per_sec'):,.0f}", f"{median('train/model_tflops'):.3g}", mfu,
            (out / f"{name}.seconds").read_text().strip() + " s"]


table = [["check", "status", "tokens/s", "model TFLOP/s", "MFU", "wall"], train_row("eager"), train_row("compiled"),
         train_row("fsdp")]
first = (out / "resume.first_exit").read_text().strip()
resumed = json.loads((out / "resume" / "metrics.json").read_text()) if (out / "resume" / "metrics.json").exists() else {}
ok = first == "75" and resumed.get("global_step") == steps and "resuming from" in (out / "resume-2.log").read_text()
table.append(["resume after SIGTERM", f"{'ok' if ok else 'FAILED'} (exit {first}, step {resumed.get('global_step')})",
              "-", "-", "-", (out / "resume.seconds").read_text().strip() + " s"])
beam = out / "beam" / "metrics_test.json"
bleu = json.loads(beam.read_text()).get("test/bleu") if beam.exists() else None
table.append(["beam 5 decode (test)", "ok" if bleu is not None else "FAILED", "-", "-",
              f"BLEU {bleu:.1f}" if bleu is not None else "-", (out / "beam.seconds").read_text().strip() + " s"])
widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
for i, row in enumerate(table):
    print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    if i == 0:
        print("| " + " | ".join("-" * w for w in widths) + " |")
EOF
