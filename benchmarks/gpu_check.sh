#!/usr/bin/env bash
# The GPU check in one short call (about 4-5 minutes on one H100/H200-class GPU): ours against Hugging Face at the
# issue's shapes (base seq2seq 256x128, BERT-base classifier 64x128, eager and compiled, tokens/s and MFU:
# benchmarks/gpu_versus_hf.py), a few hundred steps of the base model through the framework in bf16, eager and
# compile=true (tokens/s, model TFLOP/s, MFU), and, when the Multi30k files are under $DATA_ROOT, the de-en recipe
# (experiment=multi30k_de_en) timed to its test BLEU; one summary at the end. FULL=1 adds hardware=fsdp on one
# device, a resume after SIGTERM and a beam-search decode (a few minutes more).
# Run from the repository root, installed or not: a source checkout runs with PYTHONPATH (benchmarks/README.md
# says which wheels to bring to an offline GPU host):
#     PYTHONPATH=/tmp/site:$PWD bash benchmarks/gpu_check.sh          # on the GPU machine
#     HARDWARE=cpu MODEL=tiny STEPS=20 TINY=1 bash benchmarks/gpu_check.sh   # a dry run of the script on a CPU
set -euo pipefail
HARDWARE=${HARDWARE:-gpu}
MODEL=${MODEL:-base}
STEPS=${STEPS:-200}
TINY=${TINY:-0}  # 1: tiny dims in the HF comparison (a CPU dry run)
FULL=${FULL:-0}
MULTI30K=${MULTI30K:-auto}  # auto: the recipe runs on a GPU when its files are there; 1: always; 0: never
DATA_ROOT=${DATA_ROOT:-${TRANSFORMER_DATA_ROOT:-../shared/data}}
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

start=$SECONDS
VERSUS=()
[ "$TINY" = 1 ] && VERSUS+=(--tiny --warmup 1 --rounds 1 --chunk 1)
[ "$HARDWARE" = cpu ] && VERSUS+=(--device cpu)
$PY benchmarks/gpu_versus_hf.py "${VERSUS[@]}" > "$OUT/versus_hf.log" 2>&1 || echo "exit $?" >> "$OUT/versus_hf.status"
echo $((SECONDS - start)) > "$OUT/versus_hf.seconds"

$PY scripts/prepare_data.py task=translation dataset.max_examples=50000 "paths.cache_dir=$OUT/cache" > "$OUT/prepare.log" 2>&1
run eager
run compiled compile=true

if [ "$MULTI30K" = 1 ] || { [ "$MULTI30K" = auto ] && [ "$HARDWARE" != cpu ] && [ -d "$DATA_ROOT/multi30k" ]; }; then
  # the recipe as a user runs it, data preparation included
  start=$SECONDS
  $PY scripts/train.py experiment=multi30k_de_en "hardware=$HARDWARE" "paths.data_root=$DATA_ROOT" logger=csv \
    "~callbacks.progress_bar" "paths.cache_dir=$OUT/cache" "hydra.run.dir=$OUT/multi30k" > "$OUT/multi30k.log" 2>&1 \
    || echo "exit $?" >> "$OUT/multi30k.status"
  echo $((SECONDS - start)) > "$OUT/multi30k.seconds"
fi

if [ "$FULL" = 1 ]; then
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
fi

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


versus = (out / "versus_hf.log").read_text().splitlines()
print("\n".join(line for line in versus if line.startswith(("|", "device"))) or "versus HF: FAILED, see versus_hf.log")
print(f"(versus HF: {(out / 'versus_hf.seconds').read_text().strip()} s)\n")
full = (out / "fsdp.seconds").exists()
table = [["check", "status", "tokens/s", "model TFLOP/s", "MFU", "wall"], train_row("eager"), train_row("compiled")]
if (out / "multi30k.seconds").exists():
    done = out / "multi30k" / "metrics.json"
    result = json.loads(done.read_text()) if done.exists() else {}
    bleu, fit = result.get("test/bleu"), result.get("seconds")
    table.append(["multi30k de-en recipe", "ok" if bleu is not None else "FAILED", "-", "-",
                  f"test BLEU {bleu:.2f}" if bleu is not None else "-",
                  f"{(out / 'multi30k.seconds').read_text().strip()} s (train() {fit} s)"])
if full:
    table.append(train_row("fsdp"))
    first = (out / "resume.first_exit").read_text().strip()
    done = out / "resume" / "metrics.json"
    resumed = json.loads(done.read_text()) if done.exists() else {}
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
