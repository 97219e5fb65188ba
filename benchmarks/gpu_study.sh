#!/usr/bin/env bash
# The paper-profile study end to end on one GPU, stage by stage, with each stage's wall time and the total
# against the issue-14 target (under 10 minutes on one H100: 20 patients, 3 modalities x 2 labels x 5 folds,
# cohort to report).
#
# Usage: benchmarks/gpu_study.sh [RESULTS_DIR] [JOBS]
#   RESULTS_DIR  where the study is written (default: results/gpu_paper; removed first)
#   JOBS         runs sharing the GPU at once (default: 4)
# Environment: PYTHON (default: .venv/bin/python, else python3), PROFILE (default: paper).
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-results/gpu_paper}
JOBS=${2:-4}
PROFILE=${PROFILE:-paper}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
CPUS=$(nproc)
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
TIMES="$RESULTS/stage_seconds.tsv"
printf 'stage\tseconds\n' > "$TIMES"

stage() {  # stage NAME COMMAND...: run it, log it, record its wall time
    local name=$1; shift
    local t0 t1
    t0=$(date +%s%N)
    "$@" > "$RESULTS/$name.log" 2>&1 || { echo "stage $name failed: see $RESULTS/$name.log" >&2; tail -20 "$RESULTS/$name.log" >&2; exit 1; }
    t1=$(date +%s%N)
    local tenths=$(( (t1 - t0) / 100000000 ))
    printf '%s\t%d.%d\n' "$name" $((tenths / 10)) $((tenths % 10)) | tee -a "$TIMES"
}

# the profile's own cohort settings, generated where `prepare` looks for it (so prepare reuses it)
read -r PATIENTS SEED SCALE READERS < <("$PYTHON" -c "
from studylib.plans.profiles import load_profile
c = load_profile('$PROFILE').cohort
print(c.patients, c.seed, c.scale, c.reader_count)")
"$PYTHON" -c "import torch; print('device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu (no CUDA)')"
stage cohort "$PYTHON" -m studylib synth --out "$RESULTS/cohort" --patients "$PATIENTS" --seed "$SEED" --scale "$SCALE" --reader-count "$READERS" --jobs "$CPUS"
stage prepare "$PYTHON" -m studylib prepare --profile "$PROFILE" --out "$RESULTS" --jobs "$CPUS"
stage runs "$PYTHON" -m studylib run --results "$RESULTS" --jobs "$JOBS"
stage aggregate "$PYTHON" -m studylib aggregate --results "$RESULTS"
stage report "$PYTHON" -m studylib report --results "$RESULTS"

"$PYTHON" - "$TIMES" "$RESULTS" <<'EOF'
import json, sys
from pathlib import Path
rows = [line.split("\t") for line in Path(sys.argv[1]).read_text().splitlines()[1:]]
total = sum(float(s) for _, s in rows)
print(f"total\t{total:.1f} s  (target 600 s on one H100: ratio {total / 600:.2f})")
runs = [json.loads(p.read_text()) for p in Path(sys.argv[2]).glob("runs/*/summary.json")]
if runs:
    per_run = sorted(r["wall_seconds"] for r in runs)
    shared = {r.get("execution", {}).get("runs_per_gpu") for r in runs}
    print(f"{len(runs)} runs, {per_run[len(per_run) // 2]:.0f} s median each, runs per GPU {sorted(shared)}; "
          f"converged {sum(bool(r.get('converged')) for r in runs)} of {len(runs)}")
EOF
