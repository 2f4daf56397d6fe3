#!/usr/bin/env bash
# One short GPU session: CUDA and bf16 sampling, torchrun with NCCL, full-preset training speed.
#
#   bash benchmarks/gpu_check.sh FSDD_DIR MNIST_DIR [STEPS]
#
# Prints a summary table at the end. Meant for a freshly lent GPU machine whose python3 has torch;
# wheels of the pure-Python dependencies it lacks can be put in .gpu_wheels/.
set -u
FSDD=${1:?FSDD recordings folder}
MNIST=${2:?MNIST folder}
STEPS=${3:-300}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD MPLBACKEND=Agg MULTIDIFF_CACHE=/tmp/multidiff-cache
[ -d .gpu_wheels ] && python3 -m pip install --no-deps --no-index -q .gpu_wheels/*.whl 2>&1 | tail -1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

echo "== CUDA sampling (fp32 state, bf16 network) against the CPU"
python3 - <<'EOF'
import torch, multidiff
from multidiff.analytic import GaussianMixture
from multidiff.nn.unet import UNet
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())
gm = GaussianMixture([0.3, 0.7], [[-1.0] * 4, [1.0] * 4], [0.2, 0.3])
noise = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
worst = 0.0
for name in multidiff.samplers.names():
    outs = []
    for dev in ["cpu", "cuda"]:
        model = gm.model("eps", multidiff.schedules.get("linear"))
        outs.append(multidiff.sample(model, noise.shape, schedule="linear", sampler=name, steps=20,
                                     noise=noise.to(dev), generator=torch.Generator().manual_seed(1)).cpu())
    worst = max(worst, (outs[0] - outs[1]).abs().max().item())
print(f"max |cuda - cpu| over {len(multidiff.samplers.names())} samplers: {worst:.2e}")
net = UNet(2, 3, channels=64, channel_mult=(1, 2, 2), attn_levels=(1,), num_classes=10).cuda()
with torch.autocast("cuda", dtype=torch.bfloat16):
    x = multidiff.sample(net, (16, 3, 32, 32), schedule="cosine", prediction="v", steps=20,
                         cond=torch.arange(16, device="cuda") % 10, guidance_scale=3.0)
print("bf16 UNet sample:", x.dtype, tuple(x.shape), "finite:", bool(torch.isfinite(x).all()))
EOF

echo "== torchrun, NCCL, bf16 (toy2d)"
timeout 120 torchrun --standalone --nproc-per-node 1 -m multidiff train toy2d --preset quick \
  --set train.steps=200 --set 'train.precision="bf16"' --out "$OUT/toy2d-nccl" 2>&1 | grep -v "it/s" | tail -3

echo "== full presets, $STEPS steps each"
run() {  # recipe data-path
  timeout 150 python3 -m multidiff train "$1" --preset full --data "$2" --set train.steps=$STEPS \
    --set train.sample_every=0 --set train.ckpt_every=100000 --out "$OUT/$1" 2>&1 | grep -v "it/s" | tail -2
}
run spoken_digits "$FSDD"
run mnist "$MNIST"
run primitives ""
python3 - "$OUT" <<'EOF'
import json, sys, pathlib
print("| recipe | steps | steps/s | peak GPU MiB | processes |")
print("| --- | --- | --- | --- | --- |")
for s in sorted(pathlib.Path(sys.argv[1]).glob("*/summary.json")):
    d = json.loads(s.read_text())
    print(f"| {s.parent.name} | {d.get('steps')} | {d.get('steps_per_s', 0):.2f} | {d.get('peak_cuda_mib', '-')} | {d.get('processes', '-')} |")
EOF
