#!/bin/sh
# Builds .benchenv: a venv that sees .venv's packages (torch is not reinstalled) plus the peers,
# installed with --no-deps so they run on this very torch. Idempotent.
set -e
VENV=${VENV:-.venv}
BENCH=${BENCHENV:-.benchenv}
if [ -f "$BENCH/.peers-stamp" ]; then exit 0; fi
test -x "$BENCH/bin/python" || python3 -m venv "$BENCH"
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
BSITE=$("$BENCH/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# addsitedir (not a bare path) so that .venv's own .pth files, softspike's editable install among them, load
echo "import site; site.addsitedir(\"$SITE\")" > "$BSITE/_softspike_venv.pth"
"$BENCH/bin/python" -m pip install -q --no-deps spikingjelly==2.0.0 snntorch==1.0.0 norse==1.1.0
"$BENCH/bin/python" -m pip install -q numpy loguru packaging tqdm nir==1.0.8
"$BENCH/bin/python" -m pip install -q --no-deps nirtorch==2.6
touch "$BENCH/.peers-stamp"
