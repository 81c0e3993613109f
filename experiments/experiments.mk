# The paper's artefacts (included by the main Makefile). Each target re-renders its table/figure from the
# recorded runs in experiments/results/ and launches only the runs whose outputs are missing (make's own
# file rules: delete an output, or use `make -B <target>`, to run it again). Every run is recorded by
# `python -m mdrn.reproduce record OUT -- CMD` (command, machine, UTC date, duration in OUT.run.json).
#
#   make table1        Table 1 (Set5 here; Set14/B100/Urban100 with DATASETS=folder that has them)
#   make table2        Table 2: MDRN on medical images, x2/x3/x4, PSNR at the image's own bit depth
#   make fig8          Fig. 8: single-scale vs multi-scale (small CPU scale)
#   make shipped       the shipped default model mdrn_small (v2): training, scores, model cards
#   make figs10_14     Figs. 10-14: LR / low frequency / high frequency / SR / HR panels, zoomed crops
#   make figs15_16     Figs. 15-16: Bicubic, SRCNN, EDSR, MDRN at x4 on the medical images
#   make claims        parameter counts, x4-from-x2 convergence, MDRN vs SRCNN time per image
#   make peers         mdrn's models beside bicubic and the public lightweight models (CARN-M, IMDN, RLFN),
#                      natural and medical sets, one protocol (PEERS_DIR=folder: its model files as rows too;
#                      PEERS_EXTRA="name ...": more weights names or files)
#   make checks        the artefact, protocol, official-model, train/test content-overlap and peer-model checks
#                      (scripts/check_*.py), their reports recorded; then every recorded output whose
#                      weights (SHA-256 in its .run.json) have changed since it was made
#   make notebooks     execute notebooks/*.ipynb (as CI does)
#   make reproduce     all of the above

PY ?= python
SHARED ?= ../shared
DATASETS ?= $(SHARED)/datasets
MEDICAL ?= data/medical
R := experiments/results
# the medical test images, one set per bit-depth class (8 bit; 10 to 16 bit)
MEDICAL_SETS := Medical_8bit,Medical_10to16bit
REC = $(PY) -m mdrn.reproduce record $@ --
EVAL = $(PY) -m mdrn.evaluate 'eval.scales=[2,3,4]' eval.output=$@
# at the scales the network serves (single-scale models)
EVAL_OWN = $(PY) -m mdrn.evaluate eval.output=$@

.PHONY: shipped table1 table2 fig8 figs10_14 figs15_16 claims peers checks notebooks reproduce
# recorded outputs are results, never make's intermediate files
.PRECIOUS: $(R)/models/%.safetensors $(R)/table1/%.csv $(R)/table2/%.csv $(R)/fig8/%.csv

# ------------------------------------------------------------------------------- trained presets
# experiments/results/models/<preset>.safetensors <- python -m mdrn.train experiment=<preset>
$(R)/models/%.safetensors:
	$(PY) -m mdrn.reproduce train $*

# the x4-from-x2 run starts from the fig8 x2 model; SRCNN x3 and x4 start from SRCNN x2
$(R)/models/claim_x4_from_x2.safetensors: | $(R)/models/fig8_x2.safetensors
$(R)/models/srcnn_cpu_x3.safetensors $(R)/models/srcnn_cpu_x4.safetensors: | $(R)/models/srcnn_cpu_x2.safetensors

# the shipped default model mdrn_small (v2): recorded training (conf/experiment/mdrn_small_v2.yaml, about
# 4 h on 2 cores), copied into the package, scored beside bicubic (Set5, medical images, sample test sets),
# model card; mdrn_small_v1 (conf/experiment/mdrn_small.yaml, the recorded run mdrn_small) keeps its card
SHIPPED := mdrn/pretrained/mdrn_small.safetensors
$(SHIPPED): | $(R)/models/mdrn_small_v2.safetensors $(MEDICAL)/images.json
	$(PY) experiments/scripts/model_card.py mdrn_small --install
shipped: $(SHIPPED)  ## the shipped models' cards (scores what is missing; delete the model to retrain)
	$(PY) experiments/scripts/model_card.py mdrn_small
	$(PY) experiments/scripts/model_card.py mdrn_small_v1

# ---------------------------------------------------------------------------------------- Table 1
# SRCNN: one network per scale (srcnn_cpu_x2, _x3, _x4), each scored at its own scale
SRCNN_MODELS := srcnn_cpu_x2 srcnn_cpu_x3 srcnn_cpu_x4
TABLE1_RUNS := $(R)/table1/bicubic_Set5.csv $(R)/table1/uint8y/bicubic_Set5.csv $(R)/table1/vdsr_Set5.csv \
	$(foreach m,$(SRCNN_MODELS),$(R)/table1/$(m)_Set5.csv) $(R)/table1/mdrn_cpu_Set5.csv

table1: $(TABLE1_RUNS)  ## Table 1: ours beside the published values (A+ from results/aplus/)
	$(PY) -m mdrn.reproduce table1

$(R)/table1/bicubic_Set5.csv:
	$(REC) $(EVAL) model=bicubic eval.root=$(DATASETS) 'eval.sets=[Set5]'
$(R)/table1/uint8y/bicubic_Set5.csv:
	$(REC) $(PY) experiments/scripts/bicubic_uint8_y.py --root $(DATASETS) --sets Set5 --out $@
$(R)/table1/vdsr_Set5.csv:
	$(REC) $(EVAL) weights=$(SHARED)/reference/vdsr/VDSR_Official.mat eval.root=$(DATASETS) 'eval.sets=[Set5]'
$(R)/table1/srcnn_cpu_x%_Set5.csv: $(R)/models/srcnn_cpu_x%.safetensors
	$(REC) $(EVAL_OWN) weights=$< eval.root=$(DATASETS) 'eval.sets=[Set5]'
$(R)/table1/%_Set5.csv: $(R)/models/%.safetensors
	$(REC) $(EVAL) weights=$< eval.root=$(DATASETS) 'eval.sets=[Set5]'

# ---------------------------------------------------------------------------------------- Table 2
$(MEDICAL)/images.json:
	$(PY) experiments/scripts/medical_images.py --out $(MEDICAL)

$(R)/table2/bicubic.csv: | $(MEDICAL)/images.json
	mkdir -p $(R)/table2 && cp $(MEDICAL)/images.json $(R)/table2/images.json
	$(REC) $(EVAL) model=bicubic eval.root=$(MEDICAL) 'eval.sets=[$(MEDICAL_SETS)]'
# EDSR and SRCNN x4 are single-scale (x4 only)
$(R)/table2/edsr_cpu.csv $(R)/table2/srcnn_cpu_x4.csv: $(R)/table2/%.csv: $(R)/models/%.safetensors | $(MEDICAL)/images.json
	$(REC) $(EVAL_OWN) weights=$< eval.root=$(MEDICAL) 'eval.sets=[$(MEDICAL_SETS)]'
$(R)/table2/%.csv: $(R)/models/%.safetensors | $(MEDICAL)/images.json
	$(REC) $(EVAL) weights=$< eval.root=$(MEDICAL) 'eval.sets=[$(MEDICAL_SETS)]'

table2: $(R)/table2/bicubic.csv $(R)/table2/mdrn_cpu.csv  ## Table 2: medical images
	$(PY) -m mdrn.reproduce table2

# ----------------------------------------------------------------------------------------- Fig. 8
FIG8_MODELS := mdrn_cpu fig8_x2 fig8_x3 fig8_x4
$(MEDICAL)/Set5:
	mkdir -p $(MEDICAL) && ln -sfn $(abspath $(DATASETS))/Set5 $@
# the weights are order-only: a clone writes results/fig8/ before results/models/, so their times say
# nothing (changed weights: python -m mdrn.reproduce inputs, by SHA-256)
$(R)/fig8/%.csv: | $(R)/models/%.safetensors $(MEDICAL)/images.json $(MEDICAL)/Set5
	$(REC) $(EVAL_OWN) weights=$(R)/models/$*.safetensors eval.root=$(MEDICAL) 'eval.sets=[Set5,$(MEDICAL_SETS)]'

fig8: $(foreach m,$(FIG8_MODELS),$(R)/fig8/$(m).csv)  ## Fig. 8: single- vs multi-scale
	$(PY) -m mdrn.reproduce fig8

# ------------------------------------------------------------------------------------ Figs. 10-14
# the shipped default model (its own low-frequency and high-frequency images); order-only as in Fig. 8: a
# clone writes experiments/ before mdrn/pretrained/ (changed weights: python -m mdrn.reproduce inputs)
$(R)/figs10_14/panels.csv: | $(SHIPPED) $(MEDICAL)/images.json
	$(REC) $(PY) experiments/scripts/panels.py --weights $(SHIPPED) --name mdrn_small --images $(MEDICAL)/Medical_8bit $(MEDICAL)/Medical_10to16bit $(DATASETS)/Set5/butterfly.png \
		--out $(R)/figs10_14

figs10_14: $(R)/figs10_14/panels.csv  ## Figs. 10-14: LR / bicubic / residual / SR / HR panels
	$(PY) -m mdrn.reproduce figs10_14

# ------------------------------------------------------------------------------------ Figs. 15-16
FIGS15_16_RUNS := $(foreach m,bicubic srcnn_cpu_x4 edsr_cpu mdrn_cpu,$(R)/table2/$(m).csv)
figs15_16: $(FIGS15_16_RUNS)  ## Figs. 15-16: Bicubic, SRCNN, EDSR, MDRN at x4, medical images
	$(PY) -m mdrn.reproduce figs15_16

# ----------------------------------------------------------------------------------------- claims
$(R)/claims/timing.csv:
	$(REC) $(PY) experiments/scripts/time_models.py --out $@

claims: $(R)/models/claim_x4_from_x2.safetensors $(R)/models/fig8_x4.safetensors $(R)/claims/timing.csv  ## claims
	$(PY) -m mdrn.reproduce params
	$(PY) -m mdrn.reproduce claims

# ----------------------------------------------------------------------------------------- peers
# every model load_model reads, scored in one protocol (python -m mdrn.reproduce peers: each score a recorded
# python -m mdrn.evaluate run in results/peers/, reused while its command and weights are unchanged)
PEERS_DIR ?=
PEERS_EXTRA ?=
peers: | $(MEDICAL)/images.json  ## the peers table: mdrn_small, bicubic, CARN-M, IMDN, RLFN (+ PEERS_DIR files)
	$(PY) -m mdrn.reproduce peers --peer-files $(SHARED)/peers --natural $(DATASETS) data/benchmark \
		--medical $(MEDICAL) $(if $(PEERS_DIR),--dir $(PEERS_DIR)) $(if $(PEERS_EXTRA),--models $(PEERS_EXTRA))

# ----------------------------------------------------------------------------------------- notebooks
notebooks:  ## execute the notebooks (reads experiments/results/)
	$(PY) -m pytest -q tests/test_notebooks.py

# ----------------------------------------------------------------------------------------- checks
# scripts/check_<name>.py's report (exit 1 on a failed check: the record keeps the exit code)
$(R)/checks/%.txt:
	$(REC) bash -o pipefail -c '$(PY) scripts/$*.py | tee $@'

# the artefact check names its models, so that its record carries their SHA-256 (python -m mdrn.reproduce inputs)
$(R)/checks/check_artefacts.txt:
	$(REC) bash -o pipefail -c '$(PY) scripts/check_artefacts.py --models mdrn_small_v1 mdrn_small | tee $@'

checks: $(R)/checks/check_artefacts.txt $(R)/checks/check_protocol.txt $(R)/checks/check_official.txt $(R)/checks/check_overlap.txt $(R)/checks/check_peers.txt  ## artefact, protocol, official, train/test overlap and peer-model checks; recorded outputs whose weights changed
	$(PY) -m mdrn.reproduce inputs

reproduce: shipped table1 table2 fig8 figs10_14 figs15_16 claims peers checks notebooks  ## every artefact
