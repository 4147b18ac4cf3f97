PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP_SERVE := $(VENV)/.serve-installed
STAMP_DEV := $(VENV)/.dev-installed
STAMP_BENCH := $(VENV)/.bench-installed

.PHONY: run train-env test lint bench clean labels predictor predictor-lite0 predictor-distill

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) (set PY=...)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP_SERVE): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[serve]"
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	# mtcnn-face labeler: facenet-pytorch pins torch<2.3, so it goes in without its dependencies
	$(BIN)/pip install -q --no-deps "facenet-pytorch==2.6.0" requests
	touch $@ $(STAMP_SERVE)

$(STAMP_BENCH): pyproject.toml $(STAMP_DEV)
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $@

# make run PORT=9000 HOST=127.0.0.1 MODELS=path/to/models (each optional; else UTILITY_* or the defaults)
run: $(STAMP_SERVE)
	$(BIN)/image-utility serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT)) $(if $(MODELS),--models-dir $(MODELS))

# The training CLI (label, train, export, evaluate): the environment `make test` uses, every extra in.
train-env: $(STAMP_DEV)
	@echo "ready: $(BIN)/image-utility label|train|export|evaluate (or: source $(BIN)/activate)"

test: $(STAMP_DEV)
	$(BIN)/ruff check app training tests bench
	$(BIN)/python -m pytest

lint: $(STAMP_DEV)
	$(BIN)/ruff check app training tests bench
	$(BIN)/ruff format --check app training tests bench

bench: $(STAMP_BENCH)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The predictor's labels (docs/training.md, "Reproduce"): every classification collection in
# ../shared/data, JPEG at the 9 levels + near-pristine qualities + the pristine photo, Lite0/1/2;
# and blur, noise and downscale at levels 2,4,6,8 of the ImageNet sample (other/, the same photos
# and splits: one collection with the JPEG rows), and its JPEG levels re-saved at q75-95
# (reencode/: the header then hides the damage). Two shards per run at one thread each (faster
# than one process at two threads). Resumable: run it again after a kill.
LABELS ?= /work/state/labels
DATA ?= ../shared/data
CLS_COLLECTIONS := imagenet-sample imagen pixabay/imagenet-class imagenet-val
LABEL := $(BIN)/image-utility label --ground-truth imagenet-wnid --threads 1
labels: $(STAMP_DEV)
	@set -e; label2() { pids=""; for i in 0 1; do $(LABEL) --shard $$i/2 "$$@" & pids="$$pids $$!"; done; \
	  for p in $$pids; do wait $$p; done; }; \
	for c in $(CLS_COLLECTIONS); do \
	  label2 $(DATA)/$$c --distortions jpeg,jpeg-hq,pristine --out $(LABELS)/$$(echo $$c | tr / -); \
	done; \
	label2 $(DATA)/imagenet-sample --distortions blur,noise,downscale --levels 2,4,6,8 --out $(LABELS)/other/imagenet-sample; \
	label2 $(DATA)/imagenet-sample --distortions jpeg-reencode --levels 3,5,6,7,8,9 --out $(LABELS)/reencode/imagenet-sample

# The bundled classification predictor (docs/training.md, "Reproduce"): trained on three collections,
# imagenet-val kept out entirely for the cross-collection figure. Every step resumes after a kill.
RUNS ?= /work/state/runs
MODELS_OUT ?= /work/state/models
TRAIN_SETS := $(LABELS)/imagenet-sample $(LABELS)/other/imagenet-sample $(LABELS)/imagen $(LABELS)/pixabay-imagenet-class
# scored, not trained on: training on re-encoded rows cost more on honest files than it bought (docs/training.md)
SCORE_SETS := $(TRAIN_SETS) $(LABELS)/reencode/imagenet-sample
# bf16 autocast only where the CPU has it natively: emulated (AVX2 only) it is 15-25x slower than fp32
BF16 ?= $(shell grep -qsE 'avx512_bf16|amx_bf16' /proc/cpuinfo && echo --bf16)
predictor: $(STAMP_DEV)
	$(BIN)/image-utility train $(TRAIN_SETS) --output-dir $(RUNS)/predictor --native-crop --quality-map --size 128 \
	  --optimizer adamw --lr 1e-3 --weight-decay 0.05 --epochs 7 --epoch-size 10000 --batch-size 32 $(BF16) \
	  --no-test-each-epoch \
	  --select-metric auroc --resume auto
	$(BIN)/image-utility export $(RUNS)/predictor --name utility-classification --int8 --models-dir $(MODELS_OUT) \
	  --threshold 0.5
	$(BIN)/python -m training.evaluate.scorecard $(SCORE_SETS) --unseen $(LABELS)/imagenet-val \
	  --model $(MODELS_OUT)/utility-classification --out $(RUNS)/predictor/scorecard

# The teacher-backed variant beside it (docs/training.md, "The teacher-backed variant"): EfficientNet-Lite0,
# frozen, read by a trained head; trained on Lite0 + Lite1's labels only, so that it is measured on
# Lite2's, a network it never saw (the scorecard's first table), as well as on the combined labels.
LITE0 := --backbone efficientnet-lite0 --size 224 --quality-map --label-column efficientnet-lite0.u+efficientnet-lite1.u \
  --epochs 30 --optimizer adamw --lr 1e-3 --weight-decay 0.05 --select-metric auroc
predictor-lite0: $(STAMP_DEV)
	$(BIN)/image-utility train $(TRAIN_SETS) --output-dir $(RUNS)/lite0 $(LITE0)
	$(BIN)/image-utility export $(RUNS)/lite0 --name utility-classification-lite0 --models-dir $(MODELS_OUT)
	$(BIN)/python -m training.evaluate.scorecard $(SCORE_SETS) --unseen $(LABELS)/imagenet-val \
	  --model $(MODELS_OUT)/utility-classification-lite0 --label-column efficientnet-lite2.u --label-column label \
	  --out $(RUNS)/lite0/scorecard

# Distillation of the teacher-backed variant into the ResNet-18 (docs/training.md, "Distillation"):
# fresh views of the train splits of the classification collections and of the detection sets' photos
# (never imagenet-val), the bundled variant as teacher. 300 of the classification train photos are held
# out and labelled (jpeg + near-pristine + pristine, blur/noise/downscale at 4 and 6): the checkpoint is
# chosen on those labels, with the weights' moving average, and its logit stacked with the header's log
# quality on them. Long: it checkpoints every 100 steps; run it
# again to continue (--resume auto); a larger DISTILL_STEPS extends it.
DISTILL_STEPS ?= 20000
DISTILL_CLS := $(DATA)/imagenet-sample $(DATA)/imagen $(DATA)/pixabay/imagenet-class
DISTILL_VAL := $(LABELS)/distill-val $(LABELS)/other/distill-val
predictor-distill: $(STAMP_DEV)
	$(BIN)/image-utility distill $(DISTILL_CLS) --val-photos 300 --link-val-photos $(RUNS)/distill-val-photos
	$(LABEL) $(RUNS)/distill-val-photos --distortions jpeg,jpeg-hq,pristine --out $(LABELS)/distill-val
	$(LABEL) $(RUNS)/distill-val-photos --distortions blur,noise,downscale --levels 4,6 --out $(LABELS)/other/distill-val
	$(BIN)/image-utility distill $(DISTILL_CLS) $(DATA)/coco128/images $(DATA)/pixabay/coco/images \
	  $(foreach m,$(DISTILL_VAL),--val-labels $(m)) --ema 0.998 \
	  --teacher models/utility-classification-lite0 --output-dir $(RUNS)/distill --steps $(DISTILL_STEPS) \
	  --eval-every 100 --resume auto $(if $(DISTILL_MAX),--max-steps $(DISTILL_MAX))
	$(BIN)/image-utility export $(RUNS)/distill --manifest $(LABELS)/distill-val --stack-quality \
	  --name utility-classification --int8 --models-dir $(MODELS_OUT)
	$(BIN)/python -m training.evaluate.scorecard --unseen $(LABELS)/imagenet-val \
	  --model $(MODELS_OUT)/utility-classification --out $(RUNS)/distill/scorecard
