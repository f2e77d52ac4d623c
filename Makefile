# The two commands of README.md: `make book` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
BIN := .venv/bin
export LMBOOK_MODE ?= quick
export PYTHON

.PHONY: book test setup sync student grade clean book-gpt

book:            ## build the whole book (every chapter executed in quick mode) into _build/html
	tools/setup.sh
	$(BIN)/python tools/build_book.py

test:            ## run every test (network cut, tools/offline.sh): lmlib units, chapters, book build, browser checks
	tools/setup.sh --browser
	tools/offline.sh $(BIN)/python -m pytest

setup:
	tools/setup.sh

sync:            ## regenerate chapters/*.ipynb from their text sources chapters/*.md
	tools/setup.sh
	$(BIN)/python tools/notebooks.py sync

student:         ## student notebooks (solutions replaced by stubs) into student/
	tools/setup.sh
	$(BIN)/python -m lmlib.exercises student chapters --out student

grade:           ## grade a folder of completed student notebooks: make grade SUBMISSIONS=dir
	tools/setup.sh
	$(BIN)/python -m lmlib.exercises grade $(SUBMISSIONS) --out grades.csv

book-gpt:        ## retrain the book's GPT (about 25 min on 2 cores) into lmlib/assets/book_gpt.safetensors
	tools/setup.sh
	$(BIN)/python recipes/book_gpt.py

clean:
	rm -rf _build student grades.csv
