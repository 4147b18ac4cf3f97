#!/bin/bash
# Label on a Slurm cluster: an array of SHARDS labelling tasks, then the merge once all of them succeeded.
#   PHOTOS=/data/imagenet/val LABELS=/shared/labels/imagenet-val SHARDS=8 docker/slurm/submit-label.sh [sbatch options]
# Extra arguments go to both sbatch calls (--partition, --account...). Prints the two job ids.
set -euo pipefail

: "${PHOTOS:?set PHOTOS to the folder of pristine photos}"
: "${LABELS:?set LABELS to the output folder, on a file system every node shares}"
SHARDS=${SHARDS:-8}
here=$(dirname "$0")
export PHOTOS LABELS SHARDS

array=$(sbatch --parsable "$@" --array="0-$((SHARDS - 1))" "$here/label-array.sbatch")
array=${array%%;*}   # --parsable prints "id" or "id;cluster"
merge=$(sbatch --parsable "$@" --dependency="afterok:$array" "$here/label-merge.sbatch")
echo "labelling: job $array (${SHARDS} array tasks); merge: job ${merge%%;*} into $LABELS/merged"
