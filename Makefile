# Developer and operator entry points. `make test` and `make demo` install what they
# need first, so either works as the very first command on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install constraints dist mwaa ops bootstrap preflight test test-fast lint fmt demo airflow capacity plan apply registry lock images push tf-check tools pool bench-map bench-preprocess bench-idle bench-stitch bench-drain bench-cost bench-detectors bench-triage eval clean

install: $(STAMP)

# System tools the product and its tests use (Debian packages), installed when missing:
# ffmpeg (media), redis-server (the shared Gemini budget store), espeak-ng (speech in test
# media), postgresql (Airflow's production metadata database), chromium (browser tests),
# flite (a second TTS engine for the eval sets' voices), buildah + crun + mmdebstrap (the
# images built and run for real, on a local Debian base), docker-registry (pushed to).
APT_TOOLS := ffmpeg:ffmpeg redis-server:redis-server espeak-ng:espeak-ng \
	pg_ctlcluster:postgresql chromium:chromium flite:flite \
	buildah:buildah crun:crun mmdebstrap:mmdebstrap docker-registry:docker-registry

$(STAMP): pyproject.toml containers/pyproject.toml constraints-dev.txt
	@missing=""; for pair in $(APT_TOOLS); do command -v $${pair%%:*} >/dev/null 2>&1 \
		|| missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip uninstall -q -y assessment-analysis-pipeline 2>/dev/null || true  # the old single distribution
	$(BIN)/pip install -q -c constraints-dev.txt -e ".[dev]" -e containers
	@# Build metadata left in the tree would be found on sys.path (the repo root) as a
	@# second copy of each distribution: Airflow would then load the plugin twice.
	rm -rf *.egg-info containers/*.egg-info
	@touch $(STAMP)

# Every exact development pin, regenerated from the installed virtualenv after a change.
constraints: install
	{ sed -n '/^#/p' constraints-dev.txt; $(BIN)/pip freeze --exclude-editable; } > constraints-dev.txt.new
	mv constraints-dev.txt.new constraints-dev.txt

# The Airflow-side wheel (DAGs, plugin, listeners; no devtools, tests or containers):
# dist/analysis_pipeline_airflow-<version>-py3-none-any.whl. Python alone builds it.
dist:
	rm -rf build dist/*.whl
	$(PYTHON) -m pip wheel -q --no-deps -w dist .
	rm -rf build *.egg-info

# Amazon MWAA: dist/mwaa/{requirements.txt, plugins.zip (the wheel), dags/} to upload to the
# environment's S3 bucket (docs/DEPLOY.md). MWAA_AIRFLOW_VERSION: the environment's Airflow.
MWAA_AIRFLOW_VERSION ?= 3.3.2
MWAA_PYTHON_VERSION ?= 3.12
mwaa: dist
	$(PYTHON) devtools/mwaa.py --wheel-dir dist --out dist/mwaa --airflow-version $(MWAA_AIRFLOW_VERSION) --python-version $(MWAA_PYTHON_VERSION)

# `tools` too: the checkov test of terraform/ then runs in CI instead of skipping.
# TEST_WORKERS parallel pytest processes (pytest-xdist): much of the suite's time is spent
# waiting on subprocesses (Airflow, containers, ffmpeg, terraform), so more workers than
# cores still shortens it. loadfile: one module, one worker, so that a module's expensive
# fixtures (an `airflow standalone`, the Airflow virtualenvs, the image builds) start once.
# The `timing` tests (wall-clock figures) run after the rest, by themselves.
TEST_WORKERS ?= 4
test: install tools
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not timing" --durations=25
	$(BIN)/pytest -q -n 2 --dist loadfile -m timing --durations=5

test-fast: install
	$(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Infra tools (checkov) live in their own venv: their pins conflict with Airflow's.
TOOLS_VENV := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed
CHECKOV_VERSION := 3.3.30

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP):
	@test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install -q --upgrade pip
	$(TOOLS_VENV)/bin/pip install -q "checkov==$(CHECKOV_VERSION)"
	@touch $(TOOLS_STAMP)

# Capacity: plan the levers, then apply them together (terraform/README.md).
#   make capacity SUBMISSIONS=350 CONCURRENCY=12 MINUTES_PER_ANALYSIS=35
#   make plan TFVARS=path/to/env.tfvars && make apply
# TFVARS defaults to terraform/terraform.tfvars, else the decision-record example; the
# planner reads the same file `plan` applies, so the two never disagree.
TFVARS ?= $(wildcard terraform/terraform.tfvars)
# The placeholder example: `make capacity` plans with it when no tfvars exist; `make plan`
# and `make registry` use it only when it is named (TFVARS=terraform/examples/...).
EXAMPLE_TFVARS := terraform/examples/decision-record.tfvars
TFVARS_NEEDED = @test -n "$(TFVARS)" || { echo "no tfvars: write terraform/terraform.tfvars or name one (make $@ TFVARS=path; the placeholder example only by name)"; exit 1; }
# Operator commands need Python and Terraform only: a small virtualenv with boto3, no root,
# no apt (the development install is `make install`).
OPS_VENV := .venv-ops
OPS_STAMP := $(OPS_VENV)/.installed
OPS_PY := $(OPS_VENV)/bin/python
TERRAFORM ?= terraform
TF_PLAN_FILE := analysis-pipeline.tfplan
# The AWS provider from a local plugin directory when one is installed (offline machines,
# CI): the directory above registry.terraform.io/. Unset where none is found: a normal
# `terraform init` downloads the provider the lock file pins. The tests read it too.
ifndef TF_PLUGIN_DIR
TF_PLUGIN_DIR := $(shell d=$$(find $$HOME/.terraform.d/plugins /opt /usr/local/share/terraform /usr/share/terraform \
	-maxdepth 7 -path '*/registry.terraform.io/hashicorp/aws/*' -name 'terraform-provider-aws*' \
	-not -path '*/.terraform/*' -print -quit 2>/dev/null); [ -n "$$d" ] && echo "$${d%%/registry.terraform.io/*}")
endif
export TF_PLUGIN_DIR
TF_INIT_OFFLINE = $(TERRAFORM) init -input=false -backend=false -lockfile=readonly $(if $(TF_PLUGIN_DIR),-plugin-dir=$(TF_PLUGIN_DIR))
TF_NEEDED = @command -v $(TERRAFORM) >/dev/null || { echo "terraform not found on PATH (need >= 1.10)"; exit 1; }
CAPACITY_FLAGS = $(if $(SUBMISSIONS),--submissions $(SUBMISSIONS)) \
	$(if $(CONCURRENCY),--concurrency $(CONCURRENCY)) \
	$(if $(MINUTES_PER_ANALYSIS),--minutes-per-analysis $(MINUTES_PER_ANALYSIS)) \
	$(if $(WORKLOAD),--workload $(WORKLOAD)) \
	$(if $(VCPU_QUOTA),--vcpu-quota $(VCPU_QUOTA)) \
	$(if $(VCPU_QUOTA_APPLIED),--vcpu-quota-applied $(VCPU_QUOTA_APPLIED)) \
	$(if $(VCPU_PER_TASK),--vcpu-per-task $(VCPU_PER_TASK)) \
	$(if $(GEMINI_RPM),--rpm $(GEMINI_RPM)) \
	$(if $(GEMINI_TPM),--tpm $(GEMINI_TPM)) \
	$(if $(RECORDING_MINUTES),--recording-minutes $(RECORDING_MINUTES)) \
	$(if $(TOKENS_PER_SECOND),--tokens-per-second $(TOKENS_PER_SECOND)) \
	$(if $(IDLE_FRACTION),--idle-fraction $(IDLE_FRACTION)) \
	$(if $(SEGMENT_SECONDS),--segment-seconds $(SEGMENT_SECONDS)) \
	$(if $(MAP_CONCURRENCY),--map-concurrency $(MAP_CONCURRENCY)) \
	$(if $(PNG),--png $(PNG))

# The planner evaluates terraform/modules/capacity itself (no provider, ~1 s).
capacity: ops
	$(TF_NEEDED)
	$(OPS_PY) -m devtools.capacity --tfvars $(or $(TFVARS),$(EXAMPLE_TFVARS)) $(CAPACITY_FLAGS)

ops: $(OPS_STAMP)

$(OPS_STAMP): constraints-dev.txt
	@test -x $(OPS_PY) || $(PYTHON) -m venv $(OPS_VENV)
	$(OPS_PY) -m pip install -q -c constraints-dev.txt boto3
	@touch $(OPS_STAMP)

# A new account's very first step: the Terraform state bucket (versioned, encrypted,
# TLS-only, S3-native locking) and terraform/backend.hcl naming it.
#   make bootstrap STATE_BUCKET=acme-analysis-pipeline-tfstate AWS_REGION=eu-west-1
bootstrap: ops
	@test -n "$(STATE_BUCKET)" -a -n "$(AWS_REGION)" || { echo "STATE_BUCKET=... and AWS_REGION=... are required"; exit 1; }
	$(OPS_PY) -m devtools.bootstrap --bucket $(STATE_BUCKET) --region $(AWS_REGION) \
		$(if $(STATE_KMS_KEY_ID),--kms-key-id $(STATE_KMS_KEY_ID))

# State: the S3 backend with S3-native locking, configured in terraform/backend.hcl.
plan: ops
	$(TF_NEEDED)
	$(TFVARS_NEEDED)
	@test -f terraform/backend.hcl || { echo "terraform/backend.hcl missing: make bootstrap STATE_BUCKET=... AWS_REGION=... (or copy terraform/backend.hcl.example)"; exit 1; }
	$(OPS_PY) -m devtools.capacity --tfvars $(TFVARS)
	cd terraform && $(TERRAFORM) init -input=false -backend-config=backend.hcl $(if $(TF_PLUGIN_DIR),-plugin-dir=$(TF_PLUGIN_DIR))
	cd terraform && $(TERRAFORM) plan -input=false -var-file=$(abspath $(TFVARS)) -out=$(TF_PLAN_FILE)

# A new account's first step: only the ECR repositories (and the KMS key they use), so that
# `make push` has somewhere to push before the full plan checks that the images are there.
registry:
	$(TF_NEEDED)
	$(TFVARS_NEEDED)
	@test -f terraform/backend.hcl || { echo "terraform/backend.hcl missing: copy terraform/backend.hcl.example and name your state bucket"; exit 1; }
	cd terraform && $(TERRAFORM) init -input=false -backend-config=backend.hcl $(if $(TF_PLUGIN_DIR),-plugin-dir=$(TF_PLUGIN_DIR))
	cd terraform && $(TERRAFORM) apply -input=false -var-file=$(abspath $(TFVARS)) \
		-target=aws_ecr_repository.this -target=aws_ecr_lifecycle_policy.this

# Images (devtools/images.py; needs only python3 and a builder: docker buildx when a daemon
# answers, else buildah). Both for linux/amd64, the task definitions' platform, on the
# digest-pinned base (BASE=local: one made from Debian packages), installing the hash-pinned
# lock. Push BEFORE the apply that references the tag: the plan refuses an image not in ECR.
#   make lock                    after editing containers/**/requirements.in
#   make images TAG=2026.07.01   tags analysis-pipeline/<container>:TAG locally (buildah:
#                                WHEELS=local installs the lock's wheels downloaded here,
#                                for a network whose TLS proxy only this host trusts)
#   make push TAG=2026.07.01     to REGISTRY (default: terraform output ecr_repository_urls);
#                                prints each digest, which the tfvars may take instead
lock: install
	$(BIN)/python -m devtools.images lock

images:
	@test -n "$(TAG)" || { echo "TAG=... is required (ECR tags are immutable: one per build)"; exit 1; }
	$(PYTHON) -m devtools.images build --tag $(TAG) $(if $(BASE),--base $(BASE)) \
		$(if $(filter local,$(WHEELS)),--local-wheels)

push:
	@test -n "$(TAG)" || { echo "TAG=... is required: the tag 'make images' built"; exit 1; }
	$(PYTHON) -m devtools.images push --tag $(TAG) $(if $(REGISTRY),--registry $(REGISTRY))

apply:
	$(TF_NEEDED)
	@test -f terraform/$(TF_PLAN_FILE) || { echo "no saved plan: run 'make plan TFVARS=...' first"; exit 1; }
	cd terraform && $(TERRAFORM) apply -input=false $(TF_PLAN_FILE)
	rm -f terraform/$(TF_PLAN_FILE)

# Offline checks, as AWS would check it: fmt; init against the provider (the local plugin
# directory when present), validate and the mocked-provider apply tests of the root
# module; the capacity module's tests; checkov; the Python wiring tests.
tf-check: install tools
	$(TF_NEEDED)
	$(TERRAFORM) fmt -check -recursive terraform
	cd terraform && $(TF_INIT_OFFLINE) >/dev/null && $(TERRAFORM) validate && $(TERRAFORM) test
	cd terraform && for f in examples/*.tfvars; do $(TERRAFORM) test -test-directory=tests/examples -var-file=$$f || exit 1; done
	cd terraform/modules/capacity && $(TERRAFORM) init -backend=false -input=false >/dev/null && $(TERRAFORM) test
	cd terraform && BC_SKIP_MAPPING=TRUE ../$(TOOLS_VENV)/bin/checkov -d . --framework terraform --quiet --compact
	$(BIN)/pytest -q tests/test_terraform.py tests/test_capacity.py

# Preprocessing benchmarks (60-minute 720p screenshare, cached in $BENCH_CACHE or
# /tmp/analysis-bench-cache; results appended to bench/RESULTS.md under "Preprocessing").
bench-preprocess: install
	$(BIN)/python bench/bench_preprocess.py --append

bench-idle: install
	$(BIN)/python bench/bench_idle.py --append

# MAP concurrency: a 60-minute recording at MAP_CONCURRENCY=8 vs 1 against the fake Gemini
# with a fixed per-call latency (results appended to bench/RESULTS.md).
bench-map: install
	$(BIN)/python bench/bench_map.py --append

# Drain: a fleet of real containers through ONE Gemini project quota (fake Gemini enforcing
# it, a real redis-server as the shared budget store, TLS + ACL + cluster mode): the decision
# record's setting, today's defaults and the shared budget on one workload, the shared budget
# against the service's own 429s, token spread and a store restart, a mixed quota-bound
# drain, real-size recordings (~90 min; time scaled, see the script).
# Writes bench/results/drain-full.{json,png} and appends to bench/RESULTS.md. Quick check
# (< 3 min, shared budget only): $(BIN)/python bench/bench_drain.py --quick
bench-drain: install
	$(BIN)/python bench/bench_drain.py --append

# Proctor video: 30-minute 600-chunk stitch on one core + a whole container run (session
# cached in $BENCH_CACHE or /tmp/bench-cache; results appended to bench/RESULTS.md).
bench-stitch: install
	$(BIN)/python bench/bench_stitch.py --append

# Cost: one 60-minute task analysis at each media resolution (tokens and estimated USD from
# result.json usage; fake Gemini; results appended to bench/RESULTS.md).
bench-cost: install
	$(BIN)/python bench/bench_cost.py --append

# The proctor's own detectors (Silero VAD, OpenCV's face cascade) against the ffmpeg filters
# alone, on a labelled set (SET=heldout | dev), each side on one core; and triage's model
# tokens per webcam minute and model-event recall, on vs off (fake Gemini answering from the
# labels). Both print Markdown for bench/RESULTS.md and write bench/results/*-$(SET).json.
SET ?= heldout
bench-detectors: install
	$(BIN)/python bench/bench_detectors.py --set $(SET)

bench-triage: install
	$(BIN)/python bench/bench_triage.py --set $(SET)

# Detection quality (evals/README.md): the working tree with CONFIG against BASELINE (a git
# ref, or a lever file) on the dev and held-out sets, reported apart; exits 1 when anything
# is worse. Model metrics: live with GEMINI_API_KEY, else replayed from evals/recordings/.
# EVAL_ARGS passes more, e.g. EVAL_ARGS="--set heldout --model fake".
CONFIG ?= evals/configs/default.json
BASELINE ?= main
EVAL_ARGS ?=
eval: install
	$(BIN)/python -m evals --config $(CONFIG) --baseline $(BASELINE) $(EVAL_ARGS)

# Both DAGs end to end on local stand-ins (moto S3, fake Gemini unless GEMINI_API_KEY is
# set), through `airflow dags test` in local launcher mode; outputs land in .demo/results/.
demo: install
	$(BIN)/python -m devtools.demo

# `airflow standalone` in local launcher mode, with moto S3 + sample recordings + fake
# Gemini, so a person can trigger runs from the UI form (AIRFLOW_PORT, default 8080).
# DB=postgres keeps Airflow's metadata in a throwaway PostgreSQL, as production does.
airflow: install
	$(BIN)/python -m devtools.demo --standalone $(if $(filter postgres,$(DB)),--postgres)

# The vCPU pool every launch takes pool_slots from, counting deferred tasks, sized from
# FARGATE_VCPU_POOL_SLOTS (the settings Variable). The scheduler keeps it so by itself when a
# run starts; this is the same by hand (idempotent).
pool: ops
	$(OPS_PY) -m devtools.airflow_env pool

# What Airflow sees against Terraform's outputs and the pool; exit 1 on any difference.
# From an operator's machine: the SSM parameter and Airflow's REST API
#   make preflight AIRFLOW_API_URL=https://airflow.example.com AIRFLOW_API_TOKEN=...
# On an Airflow host (its secrets backends and database): make preflight POOL=db SOURCE=airflow
POOL ?= api
preflight: ops
	$(TF_NEEDED)
	mkdir -p .cache
	cd terraform && $(TERRAFORM) output -json > ../.cache/terraform-output.json
	PYTHONPATH=plugins $(if $(filter airflow,$(SOURCE)),python3,$(OPS_PY)) -m analysis_pipeline.preflight \
		--terraform-output .cache/terraform-output.json --pool $(POOL) $(if $(SOURCE),--source $(SOURCE))

clean:
	rm -rf $(VENV) $(TOOLS_VENV) $(OPS_VENV) .cache .pytest_cache build *.egg-info
