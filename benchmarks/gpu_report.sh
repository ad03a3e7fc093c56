#!/usr/bin/env bash
# The GPU figures for the README, in one run on a machine with CUDA:
#   1. the GPU check of every notebook at the gpu preset (fails unless each ran on CUDA), timed per notebook;
#   2. chapter 4's quality at the gpu preset: validation loss against the exact floor (goal: within 3%);
#   3. tokens/s and model FLOPs utilisation of the training step (goal: ≥ 40% for GPT-2 small in bf16).
#
#   bash benchmarks/gpu_report.sh [OUTPUT_FOLDER]      # default: gpu-report/
#
# Everything it prints also lands in OUTPUT_FOLDER; copy the tables into the README's GPU section.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-report}
mkdir -p "$out"
python=${PYTHON:-.venv/bin/python}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
"$python" -m minilm env | tee "$out/env.txt"

export MINILM_PRESET=gpu HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1 MPLBACKEND=Agg
printf 'notebook\tresult\twall_s\n' > "$out/notebooks.tsv"
for notebook in notebooks/*.ipynb; do
    start=$(date +%s)
    if "$python" -m pytest --gpu -q -p no:cacheprovider "$notebook" > "$out/$(basename "$notebook" .ipynb).log" 2>&1; then
        result=passed
    else
        result=FAILED
    fi
    printf '%s\t%s\t%d\n' "$(basename "$notebook")" "$result" "$(( $(date +%s) - start ))" | tee -a "$out/notebooks.tsv"
done

"$python" benchmarks/train_quality.py --presets gpu 2>&1 | tee "$out/train_quality.txt"
"$python" benchmarks/train_speed.py 2>&1 | tee "$out/train_speed.txt"
