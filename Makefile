# The README's two commands: `make demo` and `make test` (which also builds the docs site, strict).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch 2.14.1 / torchvision 0.29.1 are pinned here (not in pyproject) so that pip takes the
# local wheels on the development machines instead of downloading another build.
TORCH   = torch==2.14.1 torchvision==0.29.1
# third-party-style plugin packages, installed and tested like any user's plugin
CONTRIB = $(wildcard plugins_contrib/*)

.PHONY: demo test install bench docs clean

$(BIN)/genvae: pyproject.toml $(wildcard plugins_contrib/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/pip install -qq $(TORCH)
	$(BIN)/pip install -qq -e ".[dev]" $(TORCH)
	$(BIN)/pip install -qq --no-deps $(foreach p,$(CONTRIB),-e $(p))
	@touch $@

install: $(BIN)/genvae

# Soft-IntroVAE on 8 Gaussians with the paper's 2-D hyperparameters (Table 5), shortened schedule.
demo: install
	$(BIN)/genvae train --objective soft-intro --arch mlp --data 8gaussians --steps 6000 \
		--set optim.milestones=[4000,5000] --run-dir runs/demo-$$(date +%Y%m%d-%H%M%S)

test: install
	$(BIN)/pytest -q -n 2 tests $(CONTRIB)

# the documentation site (mkdocs.yml), warnings as errors, into site/
docs: install
	$(BIN)/mkdocs build --strict

bench: install
	$(BIN)/python benchmarks/toy2d_steps_per_second.py

clean:
	rm -rf runs .pytest_cache site
