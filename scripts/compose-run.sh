#!/bin/sh
# `casi run "$@"`, with --resume when a trial of the run already has a checkpoint: the command of
# the compose orchestrator, so that `docker compose up` after a stop (or a lost learner) goes on
# from the checkpoint instead of being refused. The run folder is <--out>/<name>: the config's
# top-level `name`, else the file's stem (casi run's own rule); --out defaults to runs.
set -eu
config=$1
out=runs
prev=
for arg in "$@"; do
    case $arg in --out=*) out=${arg#--out=} ;; esac
    if [ "$prev" = --out ]; then out=$arg; fi
    prev=$arg
done
name=$(python -c 'import pathlib, sys, tomllib
path = pathlib.Path(sys.argv[1])
print(tomllib.loads(path.read_text()).get("name") or path.stem)' "$config" 2>/dev/null) \
    || name=$(basename "$config" .toml)  # casi run then says what is wrong with the file
for saved in "$out/$name"/trial-*/checkpoint "$out/$name"/trial-*/checkpoint.old; do
    if [ -e "$saved" ]; then
        echo "compose-run: $saved exists: casi run --resume" >&2
        exec casi run "$@" --resume
    fi
done
exec casi run "$@"
